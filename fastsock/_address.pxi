# fastsock._core, part 2 of 3 (included by _core.pyx): socket addresses.
#
# Encoding Python addresses into sockaddr for bind/connect, and decoding what
# accept4(2) hands back into exactly what the stdlib would return.

# ---- addresses ---------------------------------------------------------------

# ``fast``: the methods of fastsock.socket encode only what they can encode
# exactly as the stdlib would: a tuple of a numeric host and int port(s), a str
# or bytes AF_UNIX path.  For anything else the encoders return 0 and the method
# hands the address to the stdlib's own method, so that host names resolve and
# every argument error reads exactly as the stdlib's (its messages, its class,
# its order of checks).  Raised here even then: a port, flowinfo or scope_id out
# of range (the stdlib's words; scope_id is checked where the stdlib wraps it
# silently), a NUL inside an AF_UNIX path (the stdlib would bind the path cut at
# the NUL).  The fd-level functions of _core (fast=False) resolve host names
# themselves and raise for everything.

cdef int _port(object port, str syscall, bint fast) except -2:
    """The port, 0..65535; -1: not an int (fast: for the stdlib to reject)."""
    cdef long v
    cdef int overflow = 0
    if PyLong_Check(port):
        v = PyLong_AsLongAndOverflow(port, &overflow)
        if overflow == 0 and 0 <= v <= 65535:
            return <int>v
        raise _errors.InvalidPortError(f"{syscall}(): port must be 0-65535.")
    if fast:
        return -1
    cdef object p = index(port)
    if not 0 <= p <= 65535:
        raise _errors.InvalidPortError(f"{syscall}(): port must be 0-65535.")
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


cdef const char *_ascii_host(object host, Py_ssize_t *n):
    """An ASCII str host's NUL-terminated characters in place (no copy), or
    NULL for anything else (or a NUL inside)."""
    cdef const char *cs
    if type(host) is not str or not PyUnicode_IS_ASCII(host):
        return NULL
    cs = PyUnicode_AsUTF8AndSize(host, n)
    if cs == NULL or memchr(cs, 0, n[0]) != NULL:
        return NULL
    return cs


cdef int _encode_inet(object address, sockaddr_in *sin, str syscall, bint fast) except -1:
    cdef const char *cs
    cdef Py_ssize_t n = 0
    cdef bytes h
    cdef int p
    if not isinstance(address, tuple) or len(<tuple>address) != 2:
        if fast:
            return 0
        if not isinstance(address, tuple):
            raise TypeError(
                f"{syscall}(): AF_INET address must be tuple, not {type(address).__name__}")
        raise TypeError("AF_INET address must be a pair (host, port)")
    host, port = <tuple>address
    memset(sin, 0, sizeof(sockaddr_in))
    cs = _ascii_host(host, &n)
    if cs != NULL:
        # the common case, without an intermediate bytes object
        if fs_parse_ipv4(cs, n, &sin.sin_addr.s_addr):
            pass                # a dotted quad
        elif n == 0:
            sin.sin_addr.s_addr = htonl(INADDR_ANY)
        elif strcmp(cs, "<broadcast>") == 0 or strcmp(cs, "255.255.255.255") == 0:
            sin.sin_addr.s_addr = htonl(INADDR_BROADCAST)
        elif inet_pton(AF_INET, cs, &sin.sin_addr) != 1:
            if fast:
                return 0        # a name: the stdlib resolves it
            _resolve(cs[:n], AF_INET, sin, sizeof(sockaddr_in))
    elif fast:
        return 0
    else:
        h = _host_bytes(host)
        if len(h) == 0:
            sin.sin_addr.s_addr = htonl(INADDR_ANY)
        elif h == b"<broadcast>" or h == b"255.255.255.255":
            sin.sin_addr.s_addr = htonl(INADDR_BROADCAST)
        elif inet_pton(AF_INET, h, &sin.sin_addr) != 1:
            _resolve(h, AF_INET, sin, sizeof(sockaddr_in))
    p = _port(port, syscall, fast)
    if p < 0:
        return 0
    sin.sin_family = AF_INET
    sin.sin_port = htons(p)
    return 1


cdef int _encode_inet6(object address, sockaddr_in6 *sin6, str syscall, bint fast) except -1:
    cdef const char *cs
    cdef Py_ssize_t n = 0, k, i
    cdef bytes h
    cdef int p
    cdef unsigned long long flowinfo = 0
    if not isinstance(address, tuple) or not 2 <= len(<tuple>address) <= 4:
        if fast:
            return 0
        if not isinstance(address, tuple):
            raise TypeError(
                f"{syscall}(): AF_INET6 address must be tuple, not {type(address).__name__}")
        raise TypeError("AF_INET6 address must be a tuple (host, port[, flowinfo[, scopeid]])")
    k = len(<tuple>address)
    if fast:
        for i in range(1, k):
            if not PyLong_Check(address[i]):
                return 0        # the stdlib's TypeError
    memset(sin6, 0, sizeof(sockaddr_in6))
    cs = _ascii_host(address[0], &n)
    if cs != NULL and n == 0:
        sin6.sin6_addr = in6addr_any
    elif cs != NULL and inet_pton(AF_INET6, cs, &sin6.sin6_addr) == 1:
        pass
    elif fast:
        return 0                # a name, or not a str: the stdlib's way
    else:
        h = _host_bytes(address[0])
        if len(h) == 0:
            sin6.sin6_addr = in6addr_any
        elif inet_pton(AF_INET6, h, &sin6.sin6_addr) != 1:
            _resolve(h, AF_INET6, sin6, sizeof(sockaddr_in6))
    p = _port(address[1], syscall, fast)
    # flowinfo as the stdlib reads it (an unsigned int, masked), then checked
    flow = index(address[2]) if k > 2 else 0
    flowinfo = flow & 0xffffffff
    if flowinfo > 0xfffff:
        raise OverflowError(f"{syscall}(): flowinfo must be 0-1048575.")
    scope_id = index(address[3]) if k > 3 else 0
    if not 0 <= scope_id <= 0xffffffff:
        # the stdlib wraps it silently: never scope to another interface than asked
        raise OverflowError(f"{syscall}(): scope_id must be 0-4294967295.")
    sin6.sin6_family = AF_INET6
    sin6.sin6_port = htons(p)
    sin6.sin6_flowinfo = htonl(<unsigned int>flowinfo)
    sin6.sin6_scope_id = scope_id
    return 1


cdef int _encode_unix(object address, sockaddr_un *sun, socklen_t *slen,
                      str syscall, bint fast) except -1:
    cdef bytes b
    if isinstance(address, str):
        b = os.fsencode(address)
    elif isinstance(address, (bytes, bytearray)):
        b = bytes(address)
    elif isinstance(address, os.PathLike):
        return _encode_unix(os.fspath(address), sun, slen, syscall, fast)
    elif fast:
        return 0                # other buffers, or the stdlib's TypeError
    elif isinstance(address, memoryview):
        b = bytes(address)
    else:
        raise TypeError(f"a bytes-like object is required, not '{type(address).__name__}'")
    cdef Py_ssize_t n = len(b)
    cdef bint abstract = n > 0 and b[0] == 0
    if abstract and not FS_HAVE_ABSTRACT_UNIX:
        raise ValueError("AF_UNIX names starting with a NUL byte (abstract) are Linux only")
    if not abstract and b"\0" in b:
        raise ValueError("AF_UNIX path must not contain a NUL byte")
    if <size_t>n > FS_UNIX_PATH_MAX or (not abstract and <size_t>n == FS_UNIX_PATH_MAX):
        if fast:
            return 0            # the stdlib's OSError("AF_UNIX path too long")
        raise OSError("AF_UNIX path too long")
    memset(sun, 0, sizeof(sockaddr_un))
    sun.sun_family = AF_UNIX
    memcpy(sun.sun_path, <const char *>b, n)
    slen[0] = <socklen_t>(FS_UNIX_PATH_OFFSET + n + (0 if abstract or n == 0 else 1))
    return 1


cdef int _encode(int family, object address, sockaddr_storage *ss, socklen_t *slen,
                 str syscall, bint fast=False) except -1:
    """Encode ``address`` of ``family`` into ``ss``: 1, or 0 where ``fast`` and
    the stdlib's method should take it (see above)."""
    if family == AF_INET:
        slen[0] = sizeof(sockaddr_in)
        return _encode_inet(address, <sockaddr_in *>ss, syscall, fast)
    if family == AF_INET6:
        slen[0] = sizeof(sockaddr_in6)
        return _encode_inet6(address, <sockaddr_in6 *>ss, syscall, fast)
    if family == AF_UNIX:
        return _encode_unix(address, <sockaddr_un *>ss, slen, syscall, fast)
    if fast:
        return 0
    _fail(EAFNOSUPPORT, syscall, None, address)
    return 0


cdef object _stdlib_address(int family, object address):
    """The address as the stdlib's method is handed it when fastsock's encoder
    declines: AF_UNIX paths may be os.PathLike in fastsock."""
    if family == AF_UNIX and isinstance(address, os.PathLike):
        return os.fspath(address)
    return address


cdef enum:
    _HOST_CACHE_BITS = 6
    _HOST_CACHE = 1 << _HOST_CACHE_BITS  # recent IPv4 peers whose host string is reused


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
    # Fibonacci hashing: the 32 bits of the address spread over the cache's slots
    cdef unsigned int slot = ((addr * 2654435761U) & 0xffffffffU) >> (32 - _HOST_CACHE_BITS)
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
        # (the tuple stays tracked: the collector untracks tuples of atoms
        # itself, at the first collection they live through)
        return (_ipv4_host(sin.sin_addr.s_addr), ntohs(sin.sin_port))
    if family == AF_INET6:
        sin6 = <const sockaddr_in6 *>sa
        # the stdlib never appends "%scope" to the host; scope_id is its own field
        inet_ntop(AF_INET6, &sin6.sin6_addr, buf, sizeof(buf))
        return (PyUnicode_DecodeASCII(buf, strlen(buf), NULL), ntohs(sin6.sin6_port),
                ntohl(sin6.sin6_flowinfo), sin6.sin6_scope_id)
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
