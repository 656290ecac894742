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
from cpython.object cimport PyObject
from cpython.ref cimport Py_DECREF, Py_INCREF, Py_XDECREF
from libc.errno cimport errno
from libc.string cimport memchr, memcpy, memset, strcmp, strlen

import _thread
import os
import warnings
from operator import index

import _socket

from fastsock.errors import (
    BacklogTruncatedWarning,
    BacklogWarning,
    InvalidPortError,
    SocketTimeout,
    make_error,
)

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
    exc = SocketTimeout("timed out")
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


# ---- addresses ---------------------------------------------------------------

cdef int _port(object port, str syscall) except -1:
    cdef long v
    cdef int overflow = 0
    if type(port) is int:       # the common case, without operator.index()
        v = PyLong_AsLongAndOverflow(port, &overflow)
        if overflow == 0 and 0 <= v <= 65535:
            return <int>v
        raise InvalidPortError(f"{syscall}(): port must be 0-65535.")
    cdef object p = index(port)
    if not 0 <= p <= 65535:
        raise InvalidPortError(f"{syscall}(): port must be 0-65535.")
    return p


cdef bytes _host_bytes(object host):
    cdef bytes b
    if isinstance(host, str):
        try:
            b = (<str>host).encode("ascii")
        except UnicodeEncodeError:
            b = (<str>host).encode("idna")
    elif isinstance(host, (bytes, bytearray)):
        b = bytes(host)
    else:
        raise TypeError(f"str, bytes or bytearray expected, not {type(host).__name__}")
    if b"\0" in b:
        raise TypeError("host name must not contain null character")
    return b


cdef int _resolve(bytes host, int family, void *dst, size_t size) except -1:
    """Host name -> sockaddr of ``family`` via getaddrinfo(3), GIL released."""
    cdef addrinfo hints
    cdef addrinfo *res = NULL
    cdef const char *name = host
    cdef int rc, err
    memset(&hints, 0, sizeof(hints))
    hints.ai_family = family
    with nogil:
        rc = getaddrinfo(name, NULL, &hints, &res)
        err = errno
    if rc != 0:
        if rc == EAI_SYSTEM:
            _fail(err, "getaddrinfo", None, host.decode("ascii", "replace"))
        raise _socket.gaierror(rc, gai_strerror(rc).decode("utf-8", "replace"))
    try:
        if res == NULL or res.ai_family != family or res.ai_addrlen > size:
            raise _socket.gaierror(EAI_SYSTEM, "address family mismatched")
        memcpy(dst, res.ai_addr, res.ai_addrlen)
    finally:
        freeaddrinfo(res)
    return 0


cdef int _encode_inet(object address, sockaddr_in *sin, str syscall) except -1:
    if not isinstance(address, tuple):
        raise TypeError(f"AF_INET address must be tuple, not {type(address).__name__}")
    if len(<tuple>address) != 2:
        raise TypeError("AF_INET address must be a pair (host, port)")
    host, port = <tuple>address
    cdef const char *cs
    cdef Py_ssize_t n
    cdef bytes h
    cdef int p
    if type(host) is str and PyUnicode_IS_ASCII(host):
        # the common case, without an intermediate bytes object: an ASCII str
        # keeps its characters NUL-terminated in place
        cs = PyUnicode_AsUTF8AndSize(host, &n)
        if memchr(cs, 0, n) != NULL:
            raise TypeError("host name must not contain null character")
        p = _port(port, syscall)
        memset(sin, 0, sizeof(sockaddr_in))
        if n == 0:
            sin.sin_addr.s_addr = htonl(INADDR_ANY)
        elif strcmp(cs, "<broadcast>") == 0 or strcmp(cs, "255.255.255.255") == 0:
            sin.sin_addr.s_addr = htonl(INADDR_BROADCAST)
        elif inet_pton(AF_INET, cs, &sin.sin_addr) != 1:
            _resolve(cs[:n], AF_INET, sin, sizeof(sockaddr_in))
        sin.sin_family = AF_INET
        sin.sin_port = htons(p)
        return 0
    h = _host_bytes(host)
    p = _port(port, syscall)
    memset(sin, 0, sizeof(sockaddr_in))
    if len(h) == 0:
        sin.sin_addr.s_addr = htonl(INADDR_ANY)
    elif h == b"<broadcast>" or h == b"255.255.255.255":
        sin.sin_addr.s_addr = htonl(INADDR_BROADCAST)
    elif inet_pton(AF_INET, h, &sin.sin_addr) != 1:
        _resolve(h, AF_INET, sin, sizeof(sockaddr_in))
    sin.sin_family = AF_INET
    sin.sin_port = htons(p)
    return 0


cdef int _encode_inet6(object address, sockaddr_in6 *sin6, str syscall) except -1:
    if not isinstance(address, tuple):
        raise TypeError(f"AF_INET6 address must be tuple, not {type(address).__name__}")
    cdef Py_ssize_t n = len(<tuple>address)
    if not 2 <= n <= 4:
        raise TypeError("AF_INET6 address must be a tuple (host, port[, flowinfo[, scopeid]])")
    cdef bytes h = _host_bytes(address[0])
    cdef int p = _port(address[1], syscall)
    flowinfo = index(address[2]) if n > 2 else 0
    scope_id = index(address[3]) if n > 3 else 0
    if not 0 <= flowinfo <= 0xfffff:
        raise OverflowError(f"{syscall}(): flowinfo must be 0-1048575.")
    if not 0 <= scope_id <= 0xffffffff:
        raise OverflowError(f"{syscall}(): scope_id must be 0-4294967295.")
    memset(sin6, 0, sizeof(sockaddr_in6))
    if len(h) == 0:
        sin6.sin6_addr = in6addr_any
    elif inet_pton(AF_INET6, h, &sin6.sin6_addr) != 1:
        _resolve(h, AF_INET6, sin6, sizeof(sockaddr_in6))
    sin6.sin6_family = AF_INET6
    sin6.sin6_port = htons(p)
    sin6.sin6_flowinfo = htonl(flowinfo)
    sin6.sin6_scope_id = scope_id
    return 0


cdef int _encode_unix(object address, sockaddr_un *sun, socklen_t *slen,
                      str syscall) except -1:
    cdef bytes b
    if isinstance(address, str):
        b = os.fsencode(address)
    elif isinstance(address, (bytes, bytearray, memoryview)):
        b = bytes(address)
    elif isinstance(address, os.PathLike):
        return _encode_unix(os.fspath(address), sun, slen, syscall)
    else:
        raise TypeError(
            f"AF_UNIX address must be str, bytes or os.PathLike, not {type(address).__name__}")
    cdef Py_ssize_t n = len(b)
    cdef bint abstract = n > 0 and b[0] == 0
    if abstract and not FS_HAVE_ABSTRACT_UNIX:
        raise ValueError("AF_UNIX names starting with a NUL byte (abstract) are Linux only")
    if not abstract and b"\0" in b:
        raise ValueError("AF_UNIX path must not contain a NUL byte")
    if <size_t>n > FS_UNIX_PATH_MAX or (not abstract and <size_t>n == FS_UNIX_PATH_MAX):
        _fail(ENAMETOOLONG, syscall, None, address)
    memset(sun, 0, sizeof(sockaddr_un))
    sun.sun_family = AF_UNIX
    memcpy(sun.sun_path, <const char *>b, n)
    slen[0] = <socklen_t>(FS_UNIX_PATH_OFFSET + n + (0 if abstract or n == 0 else 1))
    return 0


cdef int _encode(int family, object address, sockaddr_storage *ss, socklen_t *slen,
                 str syscall) except -1:
    if family == AF_INET:
        _encode_inet(address, <sockaddr_in *>ss, syscall)
        slen[0] = sizeof(sockaddr_in)
    elif family == AF_INET6:
        _encode_inet6(address, <sockaddr_in6 *>ss, syscall)
        slen[0] = sizeof(sockaddr_in6)
    elif family == AF_UNIX:
        _encode_unix(address, <sockaddr_un *>ss, slen, syscall)
    else:
        _fail(EAFNOSUPPORT, syscall, None, address)
    return 0


cdef enum:
    _HOST_CACHE = 64        # recent IPv4 peers whose host string is reused


cdef unsigned int _host_key[_HOST_CACHE]
cdef PyObject *_host_str[_HOST_CACHE]


cdef object _ipv4_host(unsigned int addr):
    """The dotted-quad str of an IPv4 address (network order), as inet_ntop(3)
    writes it.  Peers repeat, so the last string per cache slot is reused
    (strings are immutable; the GIL guards the cache, which free-threaded
    builds do without)."""
    cdef const unsigned char *b = <const unsigned char *>&addr
    cdef char buf[16]
    cdef int i, v, n = 0
    cdef unsigned int slot = (b[0] + 31 * (b[1] + 31 * (b[2] + 31 * b[3]))) % _HOST_CACHE
    if not FS_GIL_DISABLED and _host_str[slot] != NULL and _host_key[slot] == addr:
        return <object>_host_str[slot]
    for i in range(4):
        v = b[i]
        if v >= 100:
            buf[n] = c'0' + v // 100
            n += 1
        if v >= 10:
            buf[n] = c'0' + (v // 10) % 10
            n += 1
        buf[n] = c'0' + v % 10
        buf[n + 1] = c'.'
        n += 2
    host = PyUnicode_DecodeASCII(buf, n - 1, NULL)
    if not FS_GIL_DISABLED:
        Py_INCREF(host)
        Py_XDECREF(_host_str[slot])
        _host_str[slot] = <PyObject *>host
        _host_key[slot] = addr
    return host


cdef object _decode(const sockaddr *sa, socklen_t slen, int family):
    """The Python form of a sockaddr, exactly as the stdlib builds it."""
    cdef char buf[_ADDRSTRLEN]
    cdef const sockaddr_in *sin
    cdef const sockaddr_in6 *sin6
    cdef const sockaddr_un *sun
    cdef size_t n
    if slen >= sizeof(sa_family_t):
        family = sa.sa_family
    if family == AF_INET:
        sin = <const sockaddr_in *>sa
        addr = (_ipv4_host(sin.sin_addr.s_addr), ntohs(sin.sin_port))
        PyObject_GC_UnTrack(<PyObject *>addr)   # str and int: never in a cycle
        return addr
    if family == AF_INET6:
        sin6 = <const sockaddr_in6 *>sa
        # the stdlib never appends "%scope" to the host; scope_id is its own field
        inet_ntop(AF_INET6, &sin6.sin6_addr, buf, sizeof(buf))
        addr = (PyUnicode_DecodeASCII(buf, strlen(buf), NULL), ntohs(sin6.sin6_port),
                ntohl(sin6.sin6_flowinfo), sin6.sin6_scope_id)
        PyObject_GC_UnTrack(<PyObject *>addr)
        return addr
    if family == AF_UNIX:
        sun = <const sockaddr_un *>sa
        n = slen - FS_UNIX_PATH_OFFSET if slen > FS_UNIX_PATH_OFFSET else 0
        if n > FS_UNIX_PATH_MAX:
            n = FS_UNIX_PATH_MAX
        if FS_HAVE_ABSTRACT_UNIX and n > 0 and sun.sun_path[0] == 0:
            return sun.sun_path[:n]
        return PyUnicode_DecodeFSDefaultAndSize(sun.sun_path, strnlen(sun.sun_path, n))
    n = slen - sizeof(sa_family_t) if slen > sizeof(sa_family_t) else 0
    return (family, (<const char *>sa)[sizeof(sa_family_t):sizeof(sa_family_t) + n])


def encode_address(int family, address):
    """The raw sockaddr bytes fastsock would pass to bind(2)/connect(2)."""
    cdef sockaddr_storage ss
    cdef socklen_t slen = 0
    _encode(family, address, &ss, &slen, "encode_address")
    return (<const char *>&ss)[:slen]


def decode_address(int family, raw):
    """The Python address for raw sockaddr bytes, as accept()/getsockname() give it."""
    cdef sockaddr_storage ss
    cdef bytes b = bytes(raw)
    if <size_t>len(b) > sizeof(ss):
        raise ValueError(f"sockaddr too long: {len(b)} bytes")
    memset(&ss, 0, sizeof(ss))
    memcpy(&ss, <const char *>b, len(b))
    return _decode(<sockaddr *>&ss, <socklen_t>len(b), family)


# ---- socket, bind, connect ---------------------------------------------------

def socket(int family, int type, int proto=0):
    """Create a socket, close-on-exec from birth.  Corresponds to socket(2)
    with SOCK_CLOEXEC (socket + FD_CLOEXEC where the flag does not exist).

    Returns the descriptor.  Availability: POSIX.
    """
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
        except SocketTimeout:
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
    if flags & FS_BACKLOG_NEGATIVE:
        warnings.warn(BacklogWarning(
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
        warnings.warn(BacklogTruncatedWarning(
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
    reports it, or ``None`` where it does not tell (not listening, not TCP, or
    a platform without the query).  Linux: TCP_INFO; FreeBSD: SO_LISTENQLEN and
    SO_LISTENQLIMIT.  Availability: Linux, FreeBSD.
    """
    cdef long long pending = 0, limit = 0
    if fs_listen_queue(fd, &pending, &limit) < 0:
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
    once per batch.  An error after the first connection ends the batch without
    raising; a lasting one (e.g. EMFILE) is raised by the next call.
    Corresponds to accept4(2).  Availability: POSIX.
    """
    if max < 1:
        raise ValueError("max must be at least 1")
    cdef sockaddr_storage ss[_BATCH]
    cdef socklen_t lens[_BATCH]
    cdef int fds[_BATCH]
    cdef int n, got, i, err = 0
    cdef int left = max
    cdef bint nonblocking = (fcntl(fd, F_GETFL) & O_NONBLOCK) != 0
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
                got = _accept_batch(fd, not nonblocking, not nonblocking, n, fds, ss, lens, &err)
    except BaseException:
        for i in range(got):
            if fds[i] >= 0:
                close(fds[i])
        for item in result:
            close(item[0])
        raise
    return result


# ---- accept into socket objects ------------------------------------------------
#
# accept_socket() and accept_many_sockets() hand back socket objects, built
# here without running any Python-level __init__.  The object is made by the
# class's tp_new (the stdlib's sock_new), then given its descriptor one of two
# ways, chosen once per process by _probe():
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
    cdef char *p = <char *><PyObject *>obj
    memcpy(p + _off_fd, _payload, _payload_len)
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
    cdef char *p = <char *><PyObject *>sock
    cdef _pytime_t ns
    if fs_load_acquire(&_probe_state) == _PROBE_NOT_YET:
        _probe()
    if not PyType_IsSubtype(fs_type_of(sock), <fs_type *><PyObject *>_SockType):
        raise TypeError(f"a socket.socket is required, not {type(sock).__name__}")
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


cdef int _plan(object cls, tuple slots) except -1:
    """How objects of ``cls`` are built now (_BUILD_*); primes the slot cache."""
    global _slots_cls, _slots_key, _nslots
    cdef int i, n
    cdef PyMemberDef *m
    cdef Py_ssize_t offs[_SLOTS_MAX]
    if not (isinstance(cls, type)
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
    if _probe_state == _PROBE_TEMPLATE and _getdefaulttimeout() is None:
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
        if _getdefaulttimeout() is None and L.timeout > 0:
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
            Py_INCREF(<object>_slot_val[i])
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
        return obj
    args = (L.family, L.type, L.proto, fd)
    try:
        (<fs_type *><PyObject *>_SockType).tp_init(p, <PyObject *>args, NULL)
    except BaseException:
        obj.detach()        # -1 if __init__ failed before taking fd
        close(fd)
        raise
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
    cdef int nfd, plan
    cdef sockaddr_storage ss
    cdef socklen_t slen = 0
    _read_listener(sock, &L)
    nfd = _accept_one(L.fd, L.timeout, &ss, &slen)
    try:
        addr = _decode(<sockaddr *>&ss, slen, L.family)
        plan = _plan(cls, slots)
    except BaseException:
        close(nfd)
        raise
    return _build(cls, slots, plan, nfd, &L), addr


cdef int _accept_batch(int lfd, bint poll_first, bint poll_rest, int n, int *fds,
                       sockaddr_storage *ss, socklen_t *lens, int *err) noexcept nogil:
    """Up to ``n`` accept4(2) calls in a row (the caller released the GIL);
    stops at the first failure, its errno in ``err``.  ``poll_*``: ask poll(2)
    first, so that a blocking listener never blocks (the first / the rest)."""
    cdef int got = 0, nfd
    cdef pollfd p
    while got < n:
        if poll_rest if got else poll_first:
            p.fd = lfd
            p.events = POLLIN
            p.revents = 0
            if poll(&p, 1, 0) <= 0:
                err[0] = EAGAIN
                break
        lens[got] = sizeof(sockaddr_storage)
        nfd = fs_accept_cloexec(lfd, <sockaddr *>&ss[got], &lens[got])
        if nfd < 0:
            err[0] = errno
            break
        fds[got] = nfd
        got += 1
    return got


def accept_many_sockets(sock, cls, int max, tuple slots=()):
    """Accept up to ``max`` queued connections on the listening socket object
    ``sock``: a list of ``(cls object, address)``, each built as
    ``accept_socket`` builds it.  Waits for the first as ``accept_socket``
    does (and raises as it does); the rest are taken while the queue has
    them, with the GIL released once per batch of up to 64 (a blocking
    listener asks poll(2) before each further accept4, so it never blocks).
    An error after the first connection ends the call without raising; a
    lasting one (e.g. EMFILE) is raised by the next call.  If building an
    object fails, every connection of the call is closed before the error
    propagates.  Corresponds to accept4(2).  Availability: POSIX.
    """
    if max < 1:
        raise ValueError("max must be at least 1")
    cdef sockaddr_storage ss[_BATCH]
    cdef socklen_t lens[_BATCH]
    cdef int fds[_BATCH]
    cdef _Listener L
    cdef int n, got, i, nfd, plan, err = 0
    cdef int left = max
    cdef bint poll_rest
    _read_listener(sock, &L)
    # no timeout: a blocking descriptor; otherwise ask the kernel
    poll_rest = L.timeout < 0 or (fcntl(L.fd, F_GETFL) & O_NONBLOCK) == 0
    n = left if left < _BATCH else _BATCH
    with nogil:
        got = _accept_batch(L.fd, poll_rest and L.timeout >= 0, poll_rest, n, fds, ss, lens,
                            &err)
    if got == 0:
        # the queue was empty (or an error): wait and raise as accept does
        if err == EINTR:
            PyErr_CheckSignals()
        elif err != EAGAIN and err != EWOULDBLOCK:
            _fail(err, "accept", L.fd)
        fds[0] = _accept_one(L.fd, L.timeout, &ss[0], &lens[0])
        got = n = 1
    result = []
    obj = None
    try:
        plan = _plan(cls, slots)
        while True:
            for i in range(got):
                addr = _decode(<sockaddr *>&ss[i], lens[i], L.family)
                nfd, fds[i] = fds[i], -1
                obj = _build(cls, slots, plan, nfd, &L)
                result.append((obj, addr))
                obj = None
            left -= got
            if left <= 0 or got < n:
                break       # done, or the queue ran dry
            n = left if left < _BATCH else _BATCH
            got = 0
            with nogil:
                got = _accept_batch(L.fd, poll_rest, poll_rest, n, fds, ss, lens, &err)
    except BaseException:
        for i in range(got):
            if fds[i] >= 0:
                close(fds[i])
        if obj is not None:
            obj.close()
        for item in result:
            item[0].close()
        raise
    return result

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
