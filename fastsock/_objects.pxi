# fastsock._core, part 3 of 3 (included by _core.pyx): accepted socket objects
# built in C, and the fastsock.socket methods that use them.

# ---- accept into socket objects ------------------------------------------------
#
# accept_socket() and accept_many_sockets() hand back socket objects, built
# here without running any Python-level __init__.  The object is made by the
# class's tp_new (the stdlib's sock_new) -- or, for fastsock.socket itself on
# the template path, allocated directly (_new_fs_socket: what sock_new does,
# without zeroing what the template overwrites, and untracked, see _untrack in
# _methods.pxi) -- then given its descriptor one of two ways, chosen once per
# process by _probe():
#
#   template  copy the C part of _socket.socket from a template object that
#             the stdlib's own constructor made (descriptor -1, timeout None),
#             then set descriptor, family, type and proto.  Only when the
#             probe finds the layout it expects, checked against the type's
#             member descriptors and basic size, what the stdlib's own
#             settimeout() writes, and a self-test object built this way that
#             passes fileno/family/type/proto/timeout and a send/recv; and only
#             while socket.getdefaulttimeout() is None.
#   init      _socket.socket.__init__(obj, family, type, proto, fd) through
#             the type's tp_init slot: the stdlib constructor itself (it also
#             checks the descriptor with getsockname(2) and applies the
#             default timeout).
#
# Either way the object ends up as the stdlib's accept() leaves it: family,
# type and proto of the listener, timeout = the default timeout, and with no
# default timeout a blocking descriptor (accept4 without SOCK_NONBLOCK gives
# one; fs_accept_cloexec makes sure elsewhere), so the stdlib's
# "getdefaulttimeout() is None and listener timeout -> setblocking(True)" has
# nothing left to do.  The audit event the constructor raises
# ("socket.__new__") is raised too.  Any other class (not a _socket.socket
# subclass with the stdlib's __new__) is called as cls(family, type, proto,
# fileno=fd), followed by that rule, as socket.socket.accept() does.

cdef enum:
    _PROBE_NOT_YET = 0
    _PROBE_TEMPLATE = 1
    _PROBE_INIT = 2
    _PAYLOAD_MAX = 64
    _SLOTS_MAX = 8
    _BUILD_CALL = 0         # cls(family, type, proto, fileno=fd) + the timeout rule
    _BUILD_INIT = 1         # tp_new, then _socket.socket.__init__ through tp_init
    _BUILD_TEMPLATE = 2     # tp_new, then the template

ctypedef long long _pytime_t    # PyTime_t / _PyTime_t: int64 nanoseconds (3.11+)

cdef struct _Listener:
    int fd
    int family
    int type
    int proto
    double timeout          # seconds; -1: none (a blocking descriptor)

cdef int _probe_state = _PROBE_NOT_YET
cdef object _probe_lock = _thread.allocate_lock()
cdef object _SockType = _socket.socket          # the type the probe examined
cdef object _sock_timeout = None                # its "timeout" getset descriptor
cdef fs_descrget _sock_timeout_get = NULL
cdef object _getdefaulttimeout = _socket.getdefaulttimeout
# socket.getdefaulttimeout() is a METH_NOARGS C function: called through its C
# pointer, asking costs a few instructions instead of a generic call
cdef PyCFunction _getdefaulttimeout_c = (
    PyCFunction_GetFunction(_getdefaulttimeout)
    if type(_getdefaulttimeout) is type(len) and PyCFunction_GetFlags(_getdefaulttimeout) == METH_NOARGS
    else NULL)


cdef inline bint _no_default_timeout() except -1:
    """socket.getdefaulttimeout() is None."""
    cdef PyObject *r
    if _getdefaulttimeout_c == NULL:
        return _getdefaulttimeout() is None
    r = _getdefaulttimeout_c(PyCFunction_GetSelf(_getdefaulttimeout), NULL)
    if r == NULL:
        _pending()
    Py_XDECREF(r)           # None or a float: only compared with None here
    return r == <PyObject *>None
cdef tuple _EMPTY = ()
cdef Py_ssize_t _off_family = -1, _off_type = -1, _off_proto = -1   # member offsets
cdef Py_ssize_t _off_fd = -1, _off_timeout = -1                     # template only
cdef Py_ssize_t _payload_len = 0
cdef char _payload[_PAYLOAD_MAX]

# the (cls, slots) pair last seen: the slots' instance offsets and values
# (borrowed from _slots_key, which the cache holds)
cdef object _slots_cls = None
cdef tuple _slots_key = None
cdef int _nslots = 0
cdef Py_ssize_t _slot_off[_SLOTS_MAX]
cdef PyObject *_slot_val[_SLOTS_MAX]


cdef int _pending() except -1:
    """Propagate the exception a C API call has just set."""
    return -1


cdef PyMemberDef *_member(object tp, str name, int kind) except? NULL:
    """The member definition behind ``tp``'s descriptor ``name``, or NULL."""
    for klass in tp.__mro__:
        d = klass.__dict__.get(name)
        if d is not None:
            if type(d) is not <object><PyObject *>&PyMemberDescr_Type:
                return NULL
            if (<PyMemberDescrObject *><PyObject *>d).d_member.type != kind:
                return NULL
            return (<PyMemberDescrObject *><PyObject *>d).d_member
    return NULL


cdef object _new_object(object cls):
    """cls.__new__(cls) through the type's tp_new slot."""
    cdef fs_type *tp = <fs_type *><PyObject *>cls
    cdef PyObject *p = tp.tp_new(tp, <PyObject *>_EMPTY, NULL)
    if p == NULL:
        _pending()
    obj = <object>p
    Py_DECREF(obj)      # <object> took its own reference
    return obj


cdef inline void _fill_from_template(object obj, int fd, int family, int type_,
                                     int proto) noexcept:
    memcpy(<char *><PyObject *>obj + _off_fd, _payload, _payload_len)
    _set_fields(obj, fd, family, type_, proto)


cdef inline void _set_fields(object obj, int fd, int family, int type_, int proto) noexcept:
    cdef char *p = <char *><PyObject *>obj
    (<int *>(p + _off_family))[0] = family
    (<int *>(p + _off_type))[0] = type_
    (<int *>(p + _off_proto))[0] = proto
    (<int *>(p + _off_fd))[0] = fd


cdef bint _template_works(object T) except -1:
    """Take the template from a socket the stdlib made, then check that an
    object built from it behaves as one the stdlib made."""
    global _payload_len, _off_fd, _off_timeout
    cdef Py_ssize_t base = sizeof(PyObject)
    cdef Py_ssize_t size = (<fs_type *><PyObject *>T).tp_basicsize - base
    cdef Py_ssize_t i = sizeof(int), v = sizeof(void *)
    cdef Py_ssize_t off_timeout = base + 4 * i + v
    cdef char *pa
    # sock_fd (an int on POSIX) opens the object, family/type/proto follow it,
    # then errorhandler and sock_timeout (and the module state, 3.12+).
    if not (_off_family == base + i and _off_type == _off_family + i
            and _off_proto == _off_type + i):
        return False
    if (size != 4 * i + 2 * v and size != 4 * i + 3 * v) or size > _PAYLOAD_MAX \
            or off_timeout % sizeof(_pytime_t) != 0:
        return False
    a, b = _socket.socketpair()
    try:
        pa = <char *><PyObject *>a
        if (<int *>(pa + base))[0] != a.fileno() or \
                (<int *>(pa + _off_family))[0] != a.family:
            return False
        for seconds, ns in ((2.5, 2500000000), (0.0, 0), (None, -1000000000)):
            a.settimeout(seconds)
            if (<_pytime_t *>(pa + off_timeout))[0] != ns:
                return False
        memcpy(_payload, pa + base, size)
        (<int *>_payload)[0] = -1
        _payload_len = size
        _off_fd = base
        _off_timeout = off_timeout
        obj = _new_object(T)
        fd = os.dup(b.fileno())
        _fill_from_template(obj, fd, b.family, b.type, b.proto)
        try:
            ok = (obj.fileno() == fd and obj.family == b.family and obj.type == b.type
                  and obj.proto == b.proto and obj.gettimeout() is None
                  and obj.getblocking())
            obj.sendall(b"fs")
            ok = ok and a.recv(2) == b"fs"
        finally:
            obj.close()
        return ok
    finally:
        a.close()
        b.close()


cdef int _probe() except -1:
    """Once per process: how accepted socket objects are built (see above)."""
    global _probe_state, _off_family, _off_type, _off_proto, _sock_timeout, _off_fd
    global _off_timeout, _sock_timeout_get
    cdef PyMemberDef *m
    cdef int state = _PROBE_INIT
    with _probe_lock:
        if fs_load_acquire(&_probe_state) != _PROBE_NOT_YET:
            return 0
        T = _SockType
        d = T.__dict__.get("timeout")
        if d is not None and type(d).__name__ == "getset_descriptor":
            _sock_timeout = d
            _sock_timeout_get = (<fs_type *><PyObject *>_sock_timeout.__class__).tp_descr_get
        m = _member(T, "family", T_INT)
        _off_family = m.offset if m != NULL else -1
        m = _member(T, "type", T_INT)
        _off_type = m.offset if m != NULL else -1
        m = _member(T, "proto", T_INT)
        _off_proto = m.offset if m != NULL else -1
        if not FS_GIL_DISABLED:
            try:
                if _template_works(T):
                    state = _PROBE_TEMPLATE
            except Exception:
                pass
        if state != _PROBE_TEMPLATE:
            _off_fd = _off_timeout = -1
        fs_store_release(&_probe_state, state)
    return 0


def accept_build():
    """How ``accept_socket`` builds socket objects in this process (probed on
    first use): ``"template"`` (copied from a template object the stdlib
    made, used while there is no default timeout) or ``"init"`` (the stdlib
    constructor through tp_init).  Availability: CPython.
    """
    if fs_load_acquire(&_probe_state) == _PROBE_NOT_YET:
        _probe()
    return "template" if _probe_state == _PROBE_TEMPLATE else "init"


cdef inline int _read_int(object obj, Py_ssize_t off, str name) except? -1:
    if off >= 0:
        return (<int *>(<char *><PyObject *>obj + off))[0]
    return getattr(obj, name)


cdef object _timeout_of(object sock):
    if _sock_timeout_get != NULL:
        return _sock_timeout_get(<PyObject *>_sock_timeout, <PyObject *>sock, NULL)
    return sock.gettimeout()


cdef int _read_listener(object sock, _Listener *L) except -1:
    """Descriptor, family, type, proto and timeout of the listening socket."""
    if fs_load_acquire(&_probe_state) == _PROBE_NOT_YET:
        _probe()
    if not PyType_IsSubtype(fs_type_of(sock), <fs_type *><PyObject *>_SockType):
        raise TypeError(f"a socket.socket is required, not {type(sock).__name__}")
    return _listener_fields(sock, L)


cdef int _listener_fields(object sock, _Listener *L) except -1:
    """_read_listener's reads, for a socket.socket already checked and probed."""
    cdef char *p = <char *><PyObject *>sock
    cdef _pytime_t ns
    if _probe_state == _PROBE_TEMPLATE:
        L.fd = (<int *>(p + _off_fd))[0]
        ns = (<_pytime_t *>(p + _off_timeout))[0]
        L.timeout = -1.0 if ns < 0 else ns / 1e9
    else:
        L.fd = sock.fileno()
        L.timeout = _timeout_value(_timeout_of(sock))
    L.family = _read_int(sock, _off_family, "family")
    L.type = _read_int(sock, _off_type, "type")
    L.proto = _read_int(sock, _off_proto, "proto")
    return 0


cdef inline int _plan(object cls, tuple slots) except -1:
    """How objects of ``cls`` are built now (_BUILD_*); primes the slot cache."""
    if (cls is _slots_cls and slots is _slots_key and _probe_state == _PROBE_TEMPLATE
            and (<fs_type *><PyObject *>cls).tp_new == (<fs_type *><PyObject *>_SockType).tp_new):
        return _BUILD_TEMPLATE if _no_default_timeout() else _BUILD_INIT
    return _plan_slow(cls, slots)


cdef int _plan_slow(object cls, tuple slots) except -1:
    """_plan for a class or slots the cache does not hold yet, or without the
    template: checks the class and (re)fills the cache."""
    global _slots_cls, _slots_key, _nslots
    cdef int i, n
    cdef PyMemberDef *m
    cdef Py_ssize_t offs[_SLOTS_MAX]
    if cls is _slots_cls and slots is _slots_key:
        # a socket.socket subclass when it was cached; __new__ may have changed
        if (<fs_type *><PyObject *>cls).tp_new != (<fs_type *><PyObject *>_SockType).tp_new:
            return _BUILD_CALL
    elif not (isinstance(cls, type)
            and PyType_IsSubtype(<fs_type *><PyObject *>cls, <fs_type *><PyObject *>_SockType)
            and (<fs_type *><PyObject *>cls).tp_new == (<fs_type *><PyObject *>_SockType).tp_new):
        return _BUILD_CALL
    if not FS_GIL_DISABLED and (cls is not _slots_cls or slots is not _slots_key):
        n = len(slots) if len(slots) <= _SLOTS_MAX else -1
        for i in range(n):
            m = _member(cls, slots[i][0], T_OBJECT_EX)
            if m == NULL:
                n = -1
                break
            offs[i] = m.offset
        if n >= 0:
            for i in range(n):
                _slot_off[i] = offs[i]
                _slot_val[i] = <PyObject *>slots[i][1]
            _slots_cls, _slots_key, _nslots = cls, slots, n
    if _probe_state == _PROBE_TEMPLATE and _no_default_timeout():
        return _BUILD_TEMPLATE
    return _BUILD_INIT


cdef object _build_call(object cls, int fd, const _Listener *L):
    try:
        obj = cls(L.family, L.type, L.proto, fileno=fd)
    except BaseException:
        close(fd)
        raise
    try:
        # the stdlib's rule (bpo-7995)
        if _no_default_timeout() and L.timeout > 0:
            obj.setblocking(True)
    except BaseException:
        obj.close()
        raise
    return obj


cdef object _build(object cls, tuple slots, int plan, int fd, const _Listener *L):
    """The socket object for the accepted ``fd`` (``plan`` from ``_plan``).  If
    it cannot be built, ``fd`` is closed (or the half-built object closes it)
    before the error propagates."""
    cdef fs_type *tp = <fs_type *><PyObject *>cls
    cdef PyObject *p
    cdef PyObject **slot
    cdef char *base
    cdef int i
    if plan == _BUILD_CALL:
        return _build_call(cls, fd, L)
    if _fs_template(cls, slots, plan):
        return _new_fs_socket(fd, L)
    p = tp.tp_new(tp, <PyObject *>_EMPTY, NULL)
    if p == NULL:
        close(fd)
        _pending()
    obj = <object>p
    Py_DECREF(obj)      # <object> took its own reference
    if cls is _slots_cls and slots is _slots_key:
        # what PyMember_SetOne does for T_OBJECT_EX; the new object's slots are empty
        base = <char *>p
        for i in range(_nslots):
            slot = <PyObject **>(base + _slot_off[i])
            fs_incref(_slot_val[i])
            slot[0] = _slot_val[i]
    else:
        try:
            for name, value in slots:
                setattr(obj, name, value)
        except BaseException:
            close(fd)
            raise
    if plan == _BUILD_TEMPLATE:
        if PySys_Audit("socket.__new__", "Oiii", p, L.family, L.type, L.proto) < 0:
            close(fd)
            _pending()
        _fill_from_template(obj, fd, L.family, L.type, L.proto)
    else:
        args = (L.family, L.type, L.proto, fd)
        try:
            (<fs_type *><PyObject *>_SockType).tp_init(p, <PyObject *>args, NULL)
        except BaseException:
            obj.detach()        # -1 if __init__ failed before taking fd
            close(fd)
            raise
    if cls is _FsSocket:
        _untrack(p)
    return obj


cdef inline bint _fs_template(object cls, tuple slots, int plan) noexcept:
    """``plan`` builds fastsock.socket objects from the template, with the
    slot cache primed for them: what _new_fs_socket needs."""
    return (plan == _BUILD_TEMPLATE and cls is _FsSocket and cls is _slots_cls
            and slots is _slots_key)


cdef object _new_fs_socket(int fd, const _Listener *L):
    """_build for a fastsock.socket from the template (the plan and the slot
    cache checked by the caller).  What sock_new and the stdlib constructor
    leave is written directly: the memory comes from the collector's allocator
    (PyObject_GC_New: neither zeroed nor tracked, see _untrack), the C part
    is the template's (descriptor -1 until the audit event passed), the rest
    (__weakref__ and the slots) zeroed, then the slots set."""
    cdef fs_type *tp = <fs_type *><PyObject *>_FsSocket
    cdef Py_ssize_t start = (<fs_type *><PyObject *>_SockType).tp_basicsize
    cdef PyObject *p = _PyObject_GC_New(tp)
    cdef char *base = <char *>p
    cdef int i
    if p == NULL:
        close(fd)
        _pending()
    memcpy(base + _off_fd, _payload, _payload_len)
    memset(base + start, 0, tp.tp_basicsize - start)
    for i in range(_nslots):
        fs_incref(_slot_val[i])
        (<PyObject **>(base + _slot_off[i]))[0] = _slot_val[i]
    obj = <object>p
    Py_DECREF(obj)      # <object> took its own reference
    if PySys_Audit("socket.__new__", "Oiii", p, L.family, L.type, L.proto) < 0:
        close(fd)
        _pending()
    _set_fields(obj, fd, L.family, L.type, L.proto)
    return obj


def accept_socket(sock, cls, tuple slots=()):
    """Accept a connection on the listening socket object ``sock`` and return
    ``(cls object, address)``, the object built as socket.socket.accept()
    leaves it (family, type, proto of ``sock``; the default timeout) but
    without calling ``cls.__init__``: ``slots``, ``(name, value)`` pairs, are
    the attributes that __init__ would set.  Corresponds to accept4(2) with
    SOCK_CLOEXEC, GIL released, ``sock``'s timeout honoured; errors as
    ``accept``.  The accepted descriptor is closed if anything fails after
    the kernel handed it over.  Availability: POSIX.
    """
    cdef _Listener L
    _read_listener(sock, &L)
    return _accept_into(cls, slots, &L)


cdef tuple _accept_into(object cls, tuple slots, const _Listener *L):
    cdef int nfd, plan
    cdef sockaddr_storage ss
    cdef socklen_t slen = 0
    nfd = _accept_one(L.fd, L.timeout, &ss, &slen)
    try:
        addr = _decode(<sockaddr *>&ss, slen, L.family)
        plan = _plan(cls, slots)
    except BaseException:
        close(nfd)
        raise
    if _fs_template(cls, slots, plan):
        return _new_fs_socket(nfd, L), addr
    return _build(cls, slots, plan, nfd, L), addr


def accept_many_sockets(sock, cls, int max, tuple slots=()):
    """Accept up to ``max`` queued connections on the listening socket object
    ``sock``: a list of ``(cls object, address)``, each built as
    ``accept_socket`` builds it.  Waits for the first as ``accept_socket``
    does (and raises as it does); the rest are taken while the queue has
    them, with the GIL released once per batch of up to 64, only by accepts
    that cannot wait (see _accept_rest: a blocking listener without io_uring
    gives one connection per call).  An error after the first connection
    ends the call without raising; a lasting one (e.g. EMFILE) is raised by
    the next call.  If building an object fails, every connection of the
    call is closed before the error propagates.  Corresponds to accept4(2)
    and io_uring's IORING_OP_ACCEPT.  Availability: POSIX.
    """
    cdef _Listener L
    if max < 1:
        raise ValueError("max must be at least 1")
    _read_listener(sock, &L)
    return _accept_many_into(cls, max, slots, &L)


cdef list _accept_many_into(object cls, int max, tuple slots, const _Listener *L):
    cdef sockaddr_storage ss[_BATCH]
    cdef socklen_t lens[_BATCH]
    cdef int fds[_BATCH]
    cdef int n = 1, got = 0, i, nfd, plan, err = 0
    cdef int left = max
    # More than one connection only through accepts that cannot wait: see
    # _accept_rest (a blocking listener without io_uring: one per call).
    cdef bint batching = L.timeout >= 0 and (fcntl(L.fd, F_GETFL) & O_NONBLOCK) != 0
    cdef bint uring = L.family != AF_UNIX
    if batching:
        n = left if left < _BATCH else _BATCH
        with nogil:
            got = _accept_rest(L.fd, True, &uring, n, fds, ss, lens, &err)
        if got == 0 and err == EINTR:
            PyErr_CheckSignals()
        elif got == 0 and err != EAGAIN and err != EWOULDBLOCK:
            _fail(err, "accept", L.fd)
    if got == 0:
        # the queue was empty, or a blocking listener: wait and raise as accept does
        fds[0] = _accept_one(L.fd, L.timeout, &ss[0], &lens[0])
        got = n = 1
    # each batch fills a list made to its size (no appends); the first one is
    # the result, later ones extend it
    cdef Py_ssize_t filled = 0
    cdef bint fs_template
    result = chunk = obj = None
    try:
        plan = _plan(cls, slots)
        fs_template = _fs_template(cls, slots, plan)
        while True:
            chunk = PyList_New(got)
            filled = 0
            for i in range(got):
                addr = _decode(<sockaddr *>&ss[i], lens[i], L.family)
                nfd, fds[i] = fds[i], -1
                if fs_template:
                    obj = _new_fs_socket(nfd, L)
                else:
                    obj = _build(cls, slots, plan, nfd, L)
                pair = (obj, addr)
                obj = None
                Py_INCREF(pair)         # PyList_SET_ITEM takes this reference
                PyList_SET_ITEM(chunk, i, pair)
                filled = i + 1
            if result is None:
                result = chunk
            else:
                result.extend(chunk)
            chunk = None
            left -= got
            if left <= 0 or got < n:
                break       # done, or the queue ran dry
            n = left if left < _BATCH else _BATCH
            got = 0
            with nogil:
                got = _accept_rest(L.fd, batching, &uring, n, fds, ss, lens, &err)
            if got < 0:
                got = 0
                break       # a blocking listener without io_uring: one per call
    except BaseException:
        for i in range(got):
            if fds[i] >= 0:
                close(fds[i])
        if obj is not None:
            obj.close()
        for i in range(filled if chunk is not None else 0):
            (<object>PyList_GET_ITEM(chunk, i))[0].close()
        if result is not None:
            for item in result:
                item[0].close()
        raise
    return result
