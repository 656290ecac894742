# fastsock._core, part 4 of 4 (included by _core.pyx): fastsock.socket's methods.
#
# fastsock/_sock.py defines the class (a socket.socket subclass) and takes its
# __init__, bind, listen, accept, accept_many and close from SocketMethods
# below.  Compiled functions bind as methods as Python functions do, but run
# without a Python frame: setting up a listener costs less than with the
# stdlib, whose __init__ and close are Python code.
#
# The instance attributes (slots) that __init__ sets are written at the
# offsets the class's own member descriptors give, as the accepted objects'
# are (see _objects.pxi); everything about the C part of the object goes
# through the probe of _objects.pxi: the template when it is in use (only
# while there is no default timeout), else the stdlib's own constructor.

cdef object _FsSocket = None            # fastsock.socket, from register_class()
cdef tuple _fs_slots = ()               # ((name, initial value), ...) it declares
cdef Py_ssize_t _off_io_refs = -1, _off_closed = -1     # socket.socket's slots
cdef Py_ssize_t _off_backlog = -1, _off_unix_owner = -1  # fastsock.socket's
cdef object _std_init = None            # socket.socket.__init__ (the stdlib's Python)
cdef object _std_py_close = None        # socket.socket.close (Python: _real_close)
cdef object _std_close = _socket.socket.close          # the C close(2) method
cdef object _std_bind = _socket.socket.bind
cdef object _std_connect = _socket.socket.connect
cdef object _std_connect_ex = _socket.socket.connect_ex


def register_class(cls, tuple slots):
    """Called once by fastsock._sock: ``cls`` is fastsock.socket, the class the
    accept methods build; ``slots`` the ``(name, initial value)`` pairs of the
    instance attributes its constructor sets.  Availability: CPython.
    """
    global _FsSocket, _fs_slots, _std_init, _std_py_close
    global _off_io_refs, _off_closed, _off_backlog, _off_unix_owner
    std = cls.__mro__[1]
    _std_init = std.__init__
    _std_py_close = std.close
    _off_io_refs = _slot_offset(cls, "_io_refs")
    _off_closed = _slot_offset(cls, "_closed")
    _off_backlog = _slot_offset(cls, "_backlog")
    _off_unix_owner = _slot_offset(cls, "_unix_owner")
    _fs_slots = slots
    _FsSocket = cls


cdef inline void _untrack(PyObject *p) noexcept:
    """Take a fastsock.socket object (of that class exactly) out of the cycle
    collector's lists.  It cannot be part of a reference cycle: it has no
    __dict__, and its slots hold ints, a bool, None and, for an AF_UNIX
    listener, a tuple of a path and ints; so the collector would only spend
    time traversing every open socket at each collection.  Subclasses, which
    may add a __dict__, stay tracked."""
    PyObject_GC_UnTrack(p)


cdef Py_ssize_t _slot_offset(object cls, str name) except? -2:
    cdef PyMemberDef *m
    if FS_GIL_DISABLED:
        return -1       # free-threaded: setattr, which takes the object's lock
    m = _member(cls, name, T_OBJECT_EX)
    return -1 if m == NULL else m.offset


cdef inline int _set_slot(object obj, Py_ssize_t off, str name, object value) except -1:
    """obj.name = value, at the slot's offset where it is known."""
    cdef PyObject **slot
    cdef PyObject *old
    if off < 0:
        setattr(obj, name, value)
        return 0
    slot = <PyObject **>(<char *><PyObject *>obj + off)
    old = slot[0]
    Py_INCREF(value)
    slot[0] = <PyObject *>value
    Py_XDECREF(old)
    return 0


cdef inline object _get_slot(object obj, Py_ssize_t off, str name):
    """obj.name, or None where it is not set."""
    cdef PyObject *v
    if off < 0:
        return getattr(obj, name, None)
    v = (<PyObject **>(<char *><PyObject *>obj + off))[0]
    return None if v == NULL else <object>v


cdef inline int _check_self(object self, str method) except -1:
    if _FsSocket is None or not (
            fs_type_of(self) == <fs_type *><PyObject *>_FsSocket
            or PyType_IsSubtype(fs_type_of(self), <fs_type *><PyObject *>_FsSocket)):
        raise TypeError(f"socket.{method}() needs a fastsock.socket, "
                        f"not {type(self).__name__}")
    if fs_load_acquire(&_probe_state) == _PROBE_NOT_YET:
        _probe()
    return 0


cdef inline int _fd_of(object sock) except? -1:
    if _off_fd >= 0:
        return (<int *>(<char *><PyObject *>sock + _off_fd))[0]
    return sock.fileno()


cdef inline bint _core_family(int family) noexcept:
    """The families whose addresses the core encodes and decodes."""
    return family == AF_INET or family == AF_INET6 or family == AF_UNIX


cdef int _attach(object self, int fd, int family, int type_, int proto) except -1:
    """Give the new object ``self`` the new descriptor ``fd``, as the stdlib's
    constructor would; ``fd`` is closed if that fails."""
    args = None
    if (_probe_state == _PROBE_TEMPLATE and (type_ & (FS_SOCK_NONBLOCK | FS_SOCK_CLOEXEC)) == 0
            and fs_type_of(self).tp_new == (<fs_type *><PyObject *>_SockType).tp_new
            and _no_default_timeout()):
        if PySys_Audit("socket.__new__", "Oiii", <PyObject *>self, family, type_, proto) < 0:
            close(fd)
            _pending()
        _fill_from_template(self, fd, family, type_, proto)
        return 0
    try:
        args = (family, type_, proto, fd)
        (<fs_type *><PyObject *>_SockType).tp_init(<PyObject *>self, <PyObject *>args, NULL)
    except BaseException:
        if args is not None:
            self.detach()   # -1 if __init__ failed before taking fd
        close(fd)
        raise
    return 0


class SocketMethods:
    """The compiled methods of ``fastsock.socket`` (see fastsock/_sock.py)."""

    def __init__(self, family=-1, type=-1, proto=-1, fileno=None):
        """Create the socket; the same arguments as ``socket.socket()``.
        Without ``fileno`` the descriptor comes from socket(2) with
        SOCK_CLOEXEC.  Errors are the stdlib's, typed (``fastsock.SocketError``
        subclasses: ``NotSocketError`` for a ``fileno`` that is not a socket);
        arguments the stdlib would reject are handed to its constructor, which
        rejects them in its own words.  Availability: POSIX.
        """
        cdef int fd, fam, typ, pro
        _check_self(self, "__init__")
        if (fileno is None and _int_arg(family, &fam) and _int_arg(type, &typ)
                and _int_arg(proto, &pro)):
            if fam == -1:
                fam = AF_INET
            if typ == -1:
                typ = SOCK_STREAM
            if pro == -1:
                pro = 0
            fd = _socket_fd(fam, typ, pro)
            _attach(self, fd, fam, typ, pro)
            _set_slot(self, _off_io_refs, "_io_refs", 0)
            _set_slot(self, _off_closed, "_closed", False)
        else:
            try:
                _std_init(self, family, type, proto, fileno)
            except OSError as exc:
                raise _errors._retyped(exc, "socket", fileno) from None
        _set_slot(self, _off_backlog, "_backlog", None)
        _set_slot(self, _off_unix_owner, "_unix_owner", None)
        if fs_type_of(self) == <fs_type *><PyObject *>_FsSocket:
            _untrack(<PyObject *>self)

    def bind(self, address):
        """Bind to ``address``.  Corresponds to bind(2).  Availability: POSIX."""
        cdef int fd, family
        cdef sockaddr_storage ss
        cdef socklen_t slen = 0
        _check_self(self, "bind")
        fd = _fd_of(self)
        family = _read_int(self, _off_family, "family")
        if _core_family(family):
            if _encode(family, address, &ss, &slen, "bind", True):
                if PySys_Audit("socket.bind", "OO", <PyObject *>self, <PyObject *>address) < 0:
                    _pending()
                _bind_ss(fd, family, &ss, slen, address)
                return
            address = _stdlib_address(family, address)
        try:
            _std_bind(self, address)
        except OSError as exc:
            raise _errors._retyped(exc, "bind", fd, address) from None

    def connect(self, address):
        """Connect to ``address``, honouring the socket's timeout.
        Corresponds to connect(2).  Availability: POSIX.
        """
        _check_self(self, "connect")
        _connect_method(self, address, True)

    def connect_ex(self, address):
        """Like ``connect`` but return the errno (0 on success) instead of
        raising for errors of connect(2) itself.  Corresponds to connect(2).
        Availability: POSIX.
        """
        _check_self(self, "connect_ex")
        return _connect_method(self, address, False)

    def listen(self, backlog=None):
        """Listen with fastsock's backlog contract; return the backlog in force.

        ``None`` (the default): the live system maximum; ``0``: the smallest
        queue; negative: as 0, with a ``BacklogWarning``; above the maximum:
        the maximum, with a ``BacklogTruncatedWarning``.  Corresponds to
        listen(2); the result is read back from the kernel where it tells
        (Linux TCP, FreeBSD).  Availability: POSIX.
        """
        _check_self(self, "listen")
        effective = <object>_listen(_fd_of(self), backlog, 1)     # one int object
        _set_slot(self, _off_backlog, "_backlog", effective)
        return effective

    def accept(self):
        """Accept a connection: ``(socket, address)``.  Corresponds to
        accept4(2) with SOCK_CLOEXEC, GIL released, the socket's timeout
        honoured.  Errors are sorted: ``AcceptRetryError`` (that connection is
        gone, accept again) and ``AcceptCapacityError`` (out of descriptors or
        memory; the connection stays queued).  Availability: POSIX.
        """
        cdef _Listener L
        _check_self(self, "accept")
        _listener_fields(self, &L)
        if _core_family(L.family):
            return _accept_into(_FsSocket, _fs_slots, &L)
        return self._accept_stdlib()

    def accept_many(self, max):
        """Accept up to ``max`` queued connections in one call.

        Waits for the first one as ``accept()`` would (and raises as it
        does), then takes what the queue holds without ever waiting, stopping
        at EAGAIN without raising: on a non-blocking socket or one with a
        timeout, with accept4(2) calls, a deep queue's rest with one
        io_uring_enter(2) per batch of up to 64 (io_uring's accept that
        cannot wait: TCP, Linux 6.10+); on a blocking socket, with io_uring
        only, and without it one connection per call (a blocking accept4
        cannot be kept from waiting when another thread or process takes a
        connection it was about to get).  The GIL is released once per
        batch.  Availability: POSIX.
        """
        cdef _Listener L
        cdef int n = max
        if n < 1:
            raise ValueError("max must be at least 1")
        _check_self(self, "accept_many")
        _listener_fields(self, &L)
        if _core_family(L.family):
            return _accept_many_into(_FsSocket, n, _fs_slots, &L)
        return self._accept_many_stdlib(n)

    def close(self):
        """Close the socket (once no file object made by ``makefile()`` holds
        it).  Corresponds to close(2).  Availability: POSIX.
        """
        if type(self) is not _FsSocket or _off_closed < 0 or _off_io_refs < 0:
            _std_py_close(self)     # a subclass may have its own _real_close
            return
        _set_slot(self, _off_closed, "_closed", True)
        if _get_slot(self, _off_io_refs, "_io_refs") <= 0:
            if _get_slot(self, _off_unix_owner, "_unix_owner") is not None:
                self._real_close()      # removes the AF_UNIX path it owns
            elif _off_fd >= 0 and _get_slot(self, _off_backlog, "_backlog") is not None:
                _close_listener(self)
            else:
                _std_close(self)


cdef object _MINUS_ONE = -1      # the constructor's defaults (a cached small int)


cdef inline bint _int_arg(object v, int *out) noexcept:
    """``v`` as a C int into ``out``: an int (or IntEnum) that fits; False for
    anything else (the stdlib's constructor then rejects it in its words)."""
    cdef long x
    cdef int overflow = 0
    if v is _MINUS_ONE:
        out[0] = -1
        return True
    if not PyLong_Check(v):
        return False
    x = PyLong_AsLongAndOverflow(v, &overflow)
    if overflow != 0 or x < -_INT_MAX - 1 or x > _INT_MAX:
        return False
    out[0] = <int>x
    return True


cdef int _connect_method(object self, object address, bint raise_) except -1:
    """connect / connect_ex: fastsock's connect(2) for the addresses its
    encoder takes, the stdlib's method (typed errors) for the rest.  Either
    way the socket is no longer a listener."""
    cdef int fd, family
    cdef sockaddr_storage ss
    cdef socklen_t slen = 0
    cdef str syscall = "connect" if raise_ else "connect_ex"
    _set_slot(self, _off_backlog, "_backlog", None)
    fd = _fd_of(self)
    family = _read_int(self, _off_family, "family")
    if _core_family(family):
        if _encode(family, address, &ss, &slen, syscall, True):
            if PySys_Audit("socket.connect", "OO", <PyObject *>self, <PyObject *>address) < 0:
                _pending()
            return _connect_ss(fd, &ss, slen, address, self.gettimeout(), raise_)
        address = _stdlib_address(family, address)
    try:
        if raise_:
            _std_connect(self, address)
            return 0
        return _std_connect_ex(self, address)
    except OSError as exc:
        raise _errors._retyped(exc, "connect", fd, address) from None


cdef int _close_listener(object sock) except -1:
    """The stdlib's close() for a listening socket, without releasing the GIL:
    closing a listener never waits (SO_LINGER only holds unsent data of a
    connection), so it is as short as bind(2) or listen(2).  Like the stdlib,
    ECONNRESET is not an error and the descriptor is gone either way."""
    cdef int *where = <int *>(<char *><PyObject *>sock + _off_fd)
    cdef int fd = where[0]
    cdef int rc, err
    if fd < 0:
        return 0
    where[0] = -1
    rc = close(fd)
    err = errno
    if rc < 0 and err != ECONNRESET:
        _fail(err, "close", fd)
    return 0
