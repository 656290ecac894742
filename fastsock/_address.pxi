# fastsock._core, part 2 of 3 (included by _core.pyx): socket addresses.
#
# Encoding Python addresses into sockaddr for bind/connect, and decoding what
# accept4(2) hands back into exactly what the stdlib would return.

# ---- addresses ---------------------------------------------------------------

cdef int _port(object port, str syscall) except -1:
    cdef long v
    cdef int overflow = 0
    if type(port) is int:       # the common case, without operator.index()
        v = PyLong_AsLongAndOverflow(port, &overflow)
        if overflow == 0 and 0 <= v <= 65535:
            return <int>v
        raise _errors.InvalidPortError(f"{syscall}(): port must be 0-65535.")
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
        if fs_parse_ipv4(cs, n, &sin.sin_addr.s_addr):
            pass                # the common case: a dotted quad
        elif n == 0:
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
