"""fastsock._core: socket(2), bind(2), listen(2), accept4(2) and connect(2) on descriptors.

The compiled core of fastsock.  Every function takes and returns plain
descriptors; the ``fastsock.socket`` class builds on them.  Errors are raised
through one path (``_fail``) as the typed classes of ``fastsock.errors``.

Timeouts follow the Python socket model: ``None`` blocks (GIL released),
``0.0`` is non-blocking (EAGAIN raises a ``BlockingIOError`` subclass), a
positive value polls against a CLOCK_MONOTONIC deadline and raises
``fastsock.SocketTimeout``.  EINTR runs the signal handlers and retries with
the time left (PEP 475); a handler that raises ends the call.
"""

from cpython.exc cimport PyErr_CheckSignals
from cpython.list cimport PyList_GET_ITEM, PyList_New, PyList_SET_ITEM
from cpython.object cimport PyObject
from cpython.ref cimport Py_DECREF, Py_INCREF, Py_XDECREF
from libc.errno cimport errno
from libc.string cimport memchr, memcpy, memset, strcmp, strlen

import _thread
import os
from operator import index

import _socket

# Only make_error at import: the exception classes are looked up when raised
# (fastsock.errors creates most of them on first use; warnings is imported
# by the first warning).
from fastsock import errors as _errors
from fastsock.errors import make_error

cdef extern from "Python.h":
    object PyUnicode_DecodeFSDefaultAndSize(const char *s, Py_ssize_t size)
    object PyUnicode_DecodeASCII(const char *s, Py_ssize_t size, const char *errors)

cdef extern from "<string.h>" nogil:
    size_t strnlen(const char *s, size_t maxlen)

cdef extern from "<errno.h>":
    const int ENAMETOOLONG
    const int EAFNOSUPPORT

cdef enum:
    _INT_MAX = 2147483647
    _ADDRSTRLEN = 64
    _BATCH = 64
    _URING_AFTER = 4    # accept4s before a non-blocking listener's batch may go to io_uring
    _URING_MIN = 8      # and the queue length from which it does

PLATFORM = FS_PLATFORM_NAME.decode()
SOMAXCONN = FS_SOMAXCONN
HAVE_ACCEPT4 = bool(FS_HAVE_ACCEPT4)
HAVE_SOCK_CLOEXEC = bool(FS_HAVE_SOCK_CLOEXEC)
HAVE_SOCK_NONBLOCK = bool(FS_HAVE_SOCK_NONBLOCK)
HAVE_TCP_INFO = bool(FS_HAVE_TCP_INFO)
HAVE_SO_LISTENQLIMIT = bool(FS_HAVE_SO_LISTENQLIMIT)
HAVE_ABSTRACT_UNIX = bool(FS_HAVE_ABSTRACT_UNIX)
BACKLOG_READBACK = bool(FS_HAVE_TCP_INFO or FS_HAVE_SO_LISTENQLIMIT)
RULES = tuple(fs_backlog_rules_get(i).name.decode() for i in range(FS_RULES_COUNT))
BACKLOG_RULES = RULES[fs_running_rules()]
BACKLOG_TRUNCATED = FS_BACKLOG_TRUNCATED
BACKLOG_NEGATIVE = FS_BACKLOG_NEGATIVE
BACKLOG_DEFAULTED = FS_BACKLOG_DEFAULTED


# ---- the one check path ----------------------------------------------------

cdef int _fail(int err, str syscall, object fd=None, object address=None,
               object backlog=None, bint unbound=False) except -1:
    """Raise the typed error for ``err`` (captured right after the call)."""
    raise make_error(err, syscall, fd=fd, address=address, backlog=backlog, unbound=unbound)


cdef int _timed_out(str syscall) except -1:
    exc = _errors.SocketTimeout("timed out")
    exc.syscall = syscall
    raise exc


cdef inline double _monotonic() noexcept nogil:
    cdef timespec ts
    clock_gettime(CLOCK_MONOTONIC, &ts)
    return ts.tv_sec + ts.tv_nsec * 1e-9


cdef double _timeout_value(object timeout) except? -2.0:
    """None -> -1 (block), else the timeout in seconds (>= 0)."""
    if timeout is None:
        return -1.0
    cdef double t = timeout
    if t < 0 or t != t:
        raise ValueError("timeout must be a non-negative number or None")
    return t


cdef int _wait(int fd, short events, double deadline, str syscall) except -1:
    """poll(2) until ``fd`` is ready; deadline < 0 waits forever."""
    cdef pollfd p
    cdef int rc, err, ms
    cdef double left
    while True:
        if deadline < 0:
            ms = -1
        else:
            left = deadline - _monotonic()
            if left <= 0:
                _timed_out(syscall)
            ms = <int>(left * 1000.0 + 0.999) if left < 2.0e6 else _INT_MAX
        p.fd = fd
        p.events = events
        p.revents = 0
        with nogil:
            rc = poll(&p, 1, ms)
            err = errno
        if rc > 0:
            return 0
        if rc < 0:
            if err != EINTR:
                _fail(err, "poll", fd)
            PyErr_CheckSignals()


include "_address.pxi"


# ---- socket, bind, connect ---------------------------------------------------

def socket(int family, int type, int proto=0):
    """Create a socket, close-on-exec from birth.  Corresponds to socket(2)
    with SOCK_CLOEXEC (socket + FD_CLOEXEC where the flag does not exist).

    Returns the descriptor.  Availability: POSIX.
    """
    return _socket_fd(family, type, proto)


cdef int _socket_fd(int family, int type, int proto) except -1:
    cdef int fd, err
    if proto == 0 and (family == AF_INET or family == AF_INET6 or family == AF_UNIX):
        # built-in protocols: no I/O, no module loading, a microsecond or two;
        # releasing the GIL would cost a good part of that
        fd = fs_socket_cloexec(family, type, proto)
        err = errno
    else:
        with nogil:
            fd = fs_socket_cloexec(family, type, proto)
            err = errno
    if fd < 0:
        _fail(err, "socket")
    return fd


def bind(int fd, int family, address):
    """Bind ``fd`` to ``address``.  Corresponds to bind(2).  Availability: POSIX."""
    _bind(fd, family, address)


cdef int _bind(int fd, int family, object address) except -1:
    cdef sockaddr_storage ss
    cdef socklen_t slen = 0
    cdef int rc, err
    _encode(family, address, &ss, &slen, "bind")
    if family == AF_INET or family == AF_INET6:
        # a port table look-up, nothing that waits: keep the GIL (see socket)
        rc = c_bind(fd, <sockaddr *>&ss, slen)
        err = errno
    else:
        with nogil:     # AF_UNIX: a file system node
            rc = c_bind(fd, <sockaddr *>&ss, slen)
            err = errno
    if rc < 0:
        _fail(err, "bind", fd, address)
    return 0


cdef int _connect(int fd, int family, object address, object timeout, bint raise_) except -1:
    cdef sockaddr_storage ss
    cdef socklen_t slen = 0
    cdef int rc, err = 0
    cdef socklen_t elen = sizeof(int)
    cdef double t = _timeout_value(timeout)
    cdef bint wait
    _encode(family, address, &ss, &slen, "connect")
    with nogil:
        rc = c_connect(fd, <sockaddr *>&ss, slen)
        err = errno
    if rc == 0:
        return 0
    if err == EINTR:
        PyErr_CheckSignals()
        wait = t != 0      # the connection goes on in the background
    else:
        wait = t > 0 and err == EINPROGRESS
    if wait:
        try:
            _wait(fd, POLLOUT, -1.0 if t < 0 else _monotonic() + t, "connect")
        except _errors.SocketTimeout:
            if raise_:
                raise
            return EWOULDBLOCK
        if getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &elen) < 0:
            err = errno
        if err == EISCONN:
            err = 0
    if err and raise_:
        _fail(err, "connect", fd, address)
    return err


def connect(int fd, int family, address, timeout=None):
    """Connect ``fd`` to ``address``.  Corresponds to connect(2); with a timeout,
    a non-blocking connect then poll(2) for writability and SO_ERROR, as the
    stdlib does.  Availability: POSIX.
    """
    _connect(fd, family, address, timeout, True)


def connect_ex(int fd, int family, address, timeout=None):
    """Like ``connect`` but returns the errno (0 on success) instead of raising
    for errors of connect(2) itself.  Address errors still raise.
    """
    return _connect(fd, family, address, timeout, False)


# ---- listen ------------------------------------------------------------------

cdef long long _backlog_arg(object backlog) except? -1:
    cdef long long v
    cdef int overflow = 0
    if type(backlog) is int:    # the common case (bool is not exactly int)
        v = PyLong_AsLongLongAndOverflow(backlog, &overflow)
        if overflow == 0 and -_INT_MAX - 1 <= v <= _INT_MAX:
            return v
        raise OverflowError(f"backlog {backlog} does not fit in a C int")
    if isinstance(backlog, bool) or not hasattr(type(backlog), "__index__"):
        raise TypeError(
            f"backlog must be an integer or None, not {type(backlog).__name__}")
    cdef object b = index(backlog)
    if not -_INT_MAX - 1 <= b <= _INT_MAX:
        raise OverflowError(f"backlog {b} does not fit in a C int")
    return b


def plan_backlog(str rules, backlog, maximum):
    """Apply fastsock's backlog rules for the named rule set (one of ``RULES``)
    without touching a socket: returns ``(passed, effective, capacity, flags)``.
    ``flags`` is a bit set of BACKLOG_TRUNCATED, BACKLOG_NEGATIVE and
    BACKLOG_DEFAULTED.  For tests and documentation of every platform's rules.
    """
    cdef fs_backlog_plan_t plan
    if rules not in RULES:
        raise ValueError(f"unknown rule set {rules!r}; expected one of {RULES}")
    cdef bint defaulted = backlog is None
    cdef long long req = 0 if defaulted else _backlog_arg(backlog)
    fs_backlog_plan(fs_backlog_rules_get(RULES.index(rules)), defaulted, req, maximum, &plan)
    return plan.passed, plan.effective, plan.capacity, plan.flags


def somaxconn():
    """The live system maximum backlog and where it was read:
    /proc/sys/net/core/somaxconn of this network namespace (Linux),
    kern.ipc.soacceptqueue (FreeBSD), kern.ipc.somaxconn (macOS, other BSDs),
    else the compile-time SOMAXCONN.  Returns ``(value, source)``.
    """
    cdef const char *source = NULL
    cdef long long v = fs_somaxconn(&source)
    return v, source.decode()


cdef bint _is_unbound(int fd):
    cdef sockaddr_storage ss
    cdef socklen_t slen = sizeof(ss)
    if getsockname(fd, <sockaddr *>&ss, &slen) < 0:
        return False
    if ss.ss_family == AF_INET:
        return (<sockaddr_in *>&ss).sin_port == 0
    if ss.ss_family == AF_INET6:
        return (<sockaddr_in6 *>&ss).sin6_port == 0
    return False


cdef int _warn_backlog(const fs_backlog_rules *r, long long req, long long effective,
                       int flags, int stacklevel) except -1:
    if not flags & (FS_BACKLOG_NEGATIVE | FS_BACKLOG_TRUNCATED):
        return 0
    import warnings
    if flags & FS_BACKLOG_NEGATIVE:
        warnings.warn(_errors.BacklogWarning(
            f"listen({req}): a negative backlog is treated as 0, the smallest queue "
            f"(POSIX), not as the system maximum; pass None for the maximum"),
            stacklevel=stacklevel)
    if flags & FS_BACKLOG_TRUNCATED:
        if effective >= r.storage_max:
            why = (f"the kernel stores the backlog in {r.storage_max.bit_length()} bits "
                   f"(at most {r.storage_max})")
            how = "the kernel cannot hold more"
        elif r.knob == NULL:
            why = f"the system limit (compile-time SOMAXCONN) is {effective}"
            how = "it cannot be raised at run time"
        else:
            knob = r.knob.decode()
            why = f"the system limit {knob} is {effective}"
            how = f"raise it with: sysctl -w {knob}={req}"
        warnings.warn(_errors.BacklogTruncatedWarning(
            f"listen({req}): backlog truncated to {effective}: {why}; {how}"),
            stacklevel=stacklevel)
    return 0


def listen(int fd, backlog=None, *, int stacklevel=1):
    """Make ``fd`` a listener with fastsock's backlog contract and return the
    backlog in force.  Corresponds to listen(2).

    ``None``: the live system maximum; ``0``: the smallest queue; negative: as 0
    with a ``BacklogWarning``; above the maximum: the maximum, with a
    ``BacklogTruncatedWarning``.  The result is read back from the kernel where
    it tells (Linux TCP: TCP_INFO; FreeBSD: SO_LISTENQLIMIT) and computed from
    the rules elsewhere.  ``bool`` and non-integers raise ``TypeError``; values
    beyond a C int raise ``OverflowError``.  Availability: POSIX.
    """
    return _listen(fd, backlog, stacklevel)


cdef long long _listen(int fd, object backlog, int stacklevel) except -1:
    cdef bint defaulted = backlog is None
    cdef long long req = 0 if defaulted else _backlog_arg(backlog)
    cdef const fs_backlog_rules *r = fs_backlog_rules_get(fs_running_rules())
    cdef const char *source = NULL
    cdef fs_backlog_plan_t plan
    cdef long long pending = 0, limit = 0
    cdef int rc, err, got
    # Where the kernel reports what it applied, let it clamp and read back;
    # elsewhere apply the live maximum ourselves.
    cdef long long maximum = r.storage_max if (FS_HAVE_TCP_INFO or FS_HAVE_SO_LISTENQLIMIT) \
        else fs_somaxconn(&source)
    fs_backlog_plan(r, defaulted, req, maximum, &plan)
    # listen(2) and the read-back never wait: keep the GIL (see socket)
    rc = c_listen(fd, <int>plan.passed)
    err = errno
    if rc < 0:
        _fail(err, "listen", fd, None, backlog, err == EADDRINUSE and _is_unbound(fd))
    got = fs_listen_queue(fd, &pending, &limit)
    if got == 0:
        plan.effective = limit
        if not defaulted and 0 < req and limit < req:
            plan.flags |= FS_BACKLOG_TRUNCATED
    elif maximum == r.storage_max:
        # no read-back for this socket (e.g. AF_UNIX on Linux): compute it
        fs_backlog_plan(r, defaulted, req, fs_somaxconn(&source), &plan)
    _warn_backlog(r, req, plan.effective, plan.flags, stacklevel)
    return plan.effective


def accept_queue(int fd):
    """``(pending, limit)`` of a listening socket's accept queue as the kernel
    reports it, or ``None`` where it does not tell (not listening, or a
    platform without the query).  Linux: TCP_INFO for TCP, unix_diag by inode
    (UDIAG_SHOW_RQLEN) for AF_UNIX; FreeBSD: SO_LISTENQLEN and
    SO_LISTENQLIMIT.  Availability: Linux, FreeBSD.
    """
    cdef long long pending = 0, limit = 0
    if fs_listener_queue(fd, &pending, &limit) < 0:
        return None
    return pending, limit


def effective_backlog(int fd):
    """The backlog in force on a listening socket as the kernel reports it, or
    ``None`` where it does not tell.  Availability: Linux (TCP), FreeBSD.
    """
    q = accept_queue(fd)
    return None if q is None else q[1]


# ---- accept ------------------------------------------------------------------

cdef int _accept_one(int fd, double t, sockaddr_storage *ss, socklen_t *slen) except -1:
    """One accept4(2) with the socket's timeout; returns the new descriptor."""
    cdef int nfd, err
    cdef double deadline = -1.0
    while True:
        slen[0] = sizeof(sockaddr_storage)
        with nogil:
            nfd = fs_accept_cloexec(fd, <sockaddr *>ss, slen)
            err = errno
        if nfd >= 0:
            return nfd
        if err == EINTR:
            PyErr_CheckSignals()
        elif t > 0 and (err == EAGAIN or err == EWOULDBLOCK):
            if deadline < 0:
                deadline = _monotonic() + t
            _wait(fd, POLLIN, deadline, "accept")
        else:
            _fail(err, "accept", fd)


def accept(int fd, int family, timeout=None):
    """Accept one connection: ``(descriptor, address)``.  Corresponds to
    accept4(2) with SOCK_CLOEXEC (accept(2) + FD_CLOEXEC without accept4).

    The new descriptor is blocking and close-on-exec.  If anything fails after
    the kernel handed it over, it is closed before the error propagates.
    Availability: POSIX.
    """
    cdef sockaddr_storage ss
    cdef socklen_t slen = 0
    cdef int nfd = _accept_one(fd, _timeout_value(timeout), &ss, &slen)
    try:
        return nfd, _decode(<sockaddr *>&ss, slen, family)
    except BaseException:
        close(nfd)
        raise


def accept_many(int fd, int family, int max, timeout=None):
    """Accept up to ``max`` queued connections: a list of ``(descriptor,
    address)``.  Waits for the first as ``accept`` does (and raises as it
    does); the rest are taken while the queue has them, with the GIL released
    once per batch, by accepts that cannot wait (see _accept_rest: on a
    blocking descriptor without io_uring, one connection per call).  An error
    after the first connection ends the batch without raising; a lasting one
    (e.g. EMFILE) is raised by the next call.  Corresponds to accept4(2) and
    io_uring's IORING_OP_ACCEPT.  Availability: POSIX.
    """
    if max < 1:
        raise ValueError("max must be at least 1")
    cdef sockaddr_storage ss[_BATCH]
    cdef socklen_t lens[_BATCH]
    cdef int fds[_BATCH]
    cdef int n, got, i, err = 0
    cdef int left = max
    cdef bint nonblocking = (fcntl(fd, F_GETFL) & O_NONBLOCK) != 0
    cdef bint uring = family != AF_UNIX
    result = []
    fds[0] = _accept_one(fd, _timeout_value(timeout), &ss[0], &lens[0])
    got = n = 1
    try:
        while True:
            for i in range(got):
                result.append((fds[i], _decode(<sockaddr *>&ss[i], lens[i], family)))
                fds[i] = -1
            left -= got
            if left <= 0 or got < n:
                break       # done, or the queue ran dry
            n = left if left < _BATCH else _BATCH
            got = 0
            with nogil:
                got = _accept_rest(fd, nonblocking, &uring, n, fds, ss, lens, &err)
            if got < 0:
                got = 0
                break       # a blocking descriptor without io_uring: one per call
    except BaseException:
        for i in range(got):
            if fds[i] >= 0:
                close(fds[i])
        for item in result:
            close(item[0])
        raise
    return result


cdef int _accept_rest(int lfd, bint nonblocking, bint *uring, int n, int *fds,
                      sockaddr_storage *ss, socklen_t *lens, int *err) noexcept nogil:
    """Up to ``n`` connections of a batch (the caller released the GIL), taken
    only by accepts that cannot wait, stopping where the queue runs dry (the
    errno that stopped it in ``err``).

    On a non-blocking listener, accept4(2) first: a short queue costs least
    that way.  Once the first _URING_AFTER came without running dry, a TCP
    listener (``uring[0]``) whose queue still holds _URING_MIN or more takes
    them with io_uring's accept with IORING_ACCEPT_DONTWAIT, as many as the
    queue holds with one io_uring_enter(2) (fs_uring_accept, Linux 6.10+),
    which costs less than an accept4 system call each for that many (more
    for a few: measured in C, break-even at about 8).
    On a blocking listener, io_uring's accept is the only one that cannot
    wait; where it cannot be had (``uring[0]`` is then cleared for the rest of
    the call) the result is -1, and the call gives one connection: a blocking
    accept4 cannot be kept from waiting, and poll(2) before it would not do,
    since another thread or process sharing the listener can take the
    connection in between, and accept4 would then wait for the next
    connection while the call holds the ones it took (accept(2), NOTES)."""
    cdef int got = 0, r
    if nonblocking:
        got = _accept_batch(lfd, _URING_AFTER if uring[0] and n > _URING_AFTER else n,
                            fds, ss, lens, err)
        if got < _URING_AFTER or got == n or not uring[0]:
            return got
    elif not uring[0]:
        return -1
    r = fs_uring_accept(lfd, n - got, _URING_MIN if nonblocking else 1,
                        fds + got, ss + got, lens + got, err)
    if r >= 0:
        return got + r
    uring[0] = False
    if nonblocking:
        return got + _accept_batch(lfd, n - got, fds + got, ss + got, lens + got, err)
    return -1


def accept_batching():
    """How ``accept_many`` takes the connections of a batch from a TCP
    listener in this thread: ``"io_uring"`` (IORING_OP_ACCEPT with
    IORING_ACCEPT_DONTWAIT, one io_uring_enter(2) per batch on the thread's
    own ring, set up now if need be) or ``"single"`` (no io_uring here,
    forbidden, or FASTSOCK_NO_IO_URING set: accept4(2) calls on a
    non-blocking listener or one with a timeout, one connection per call on a
    blocking one).  A kernel that refuses IORING_ACCEPT_DONTWAIT (before
    Linux 6.10) is found out by the first batch, after which this says
    ``"single"``.  AF_UNIX listeners always take the accept4(2) way.
    Availability: io_uring on Linux 6.10+; ``"single"`` elsewhere.
    """
    return "io_uring" if fs_uring_usable() else "single"


def uring_batches():
    """Batches ``accept_many`` has taken with io_uring in this process so far."""
    return fs_uring_batches()


def thread_uring(bint enabled):
    """For the calling thread only: ``False`` makes ``accept_many`` take its
    batches as without io_uring (accept4(2) calls; one connection per call on
    a blocking listener), ``True`` lets it use io_uring again.  For
    side-by-side measurements and tests.  Availability: POSIX (a no-op
    without io_uring).
    """
    fs_uring_thread_enable(enabled)


cdef int _accept_batch(int lfd, int n, int *fds, sockaddr_storage *ss, socklen_t *lens,
                       int *err) noexcept nogil:
    """Up to ``n`` accept4(2) calls in a row on a non-blocking listener (the
    caller released the GIL); stops at the first failure, its errno in
    ``err``."""
    cdef int got = 0, nfd
    while got < n:
        lens[got] = sizeof(sockaddr_storage)
        nfd = fs_accept_cloexec(lfd, <sockaddr *>&ss[got], &lens[got])
        if nfd < 0:
            err[0] = errno
            break
        fds[got] = nfd
        got += 1
    return got


include "_objects.pxi"
include "_methods.pxi"
include "_diag.pxi"


# ---- backlog rule sets -------------------------------------------------------

def backlog_rules(str name=None):
    """The backlog rule set ``name`` (one of ``RULES``; default: the running
    kernel's, ``BACKLOG_RULES``) as a dict, read from the table in
    csrc/fs_backlog.c (``fs_backlog_rules_get()``): ``name``; ``storage_max``,
    the largest backlog the kernel can store; ``zero_is_maximum``, whether
    listen(fd, 0) asks for the maximum; ``capacity`` ``(num, den, add)``, the
    completed connections a queue holds being ``max(1, backlog * num // den +
    add)``; ``knob``, what raises the limit.  An unknown name raises
    ``ValueError``.  Availability: all platforms.
    """
    if name is None:
        name = BACKLOG_RULES
    if name not in RULES:
        raise ValueError(f"unknown rule set {name!r}; expected one of {RULES}")
    cdef const fs_backlog_rules *r = fs_backlog_rules_get(RULES.index(name))
    return {"name": r.name.decode(), "storage_max": r.storage_max,
            "zero_is_maximum": bool(r.zero_is_maximum),
            "capacity": (r.capacity_num, r.capacity_den, r.capacity_add),
            "knob": None if r.knob == NULL else r.knob.decode()}
