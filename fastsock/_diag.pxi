# fastsock._core (included by _core.pyx): listener observability on
# descriptors -- an adopted listener's backlog, a listener's drop count, and
# every listener of the network namespace (csrc/fs_diag.c).

from libc.stdlib cimport free, malloc

HAVE_SOCK_DIAG = bool(FS_HAVE_SOCK_DIAG)
HAVE_SO_MEMINFO = bool(FS_HAVE_SO_MEMINFO)
DIAG_INET = FS_DIAG_INET
DIAG_UNIX = FS_DIAG_UNIX


def listener_backlog(int fd):
    """The backlog in force on the listening socket ``fd`` as the kernel
    reports it, whoever called listen(2): ``None`` where the kernel does not
    tell or ``fd`` does not listen.  Linux: TCP_INFO (tcpi_sacked) for TCP,
    unix_diag by the socket's inode (UDIAG_SHOW_RQLEN) for AF_UNIX in this
    network namespace; FreeBSD: SO_LISTENQLIMIT once SO_ACCEPTCONN says it
    listens.  Availability: Linux, FreeBSD (``None`` elsewhere).
    """
    cdef long long pending = 0, limit = 0
    if fs_listener_queue(fd, &pending, &limit) < 0:
        return None
    return limit


def listener_drops(int fd):
    """The drop count of socket ``fd`` (for a listener: the connection
    requests the kernel dropped, e.g. on a full accept queue), or ``None``
    where there is none.  Corresponds to getsockopt(SOL_SOCKET, SO_MEMINFO),
    index SK_MEMINFO_DROPS.  Availability: Linux 4.12+.
    """
    cdef long long drops = 0
    if fs_listener_drops(fd, &drops) < 0:
        return None
    return drops


cdef tuple _diag_record(const fs_diag_rec *r):
    """(family, type, state, address, backlog, pending, drops, inode, uid):
    the address as getsockname() gives it (through _decode)."""
    cdef sockaddr_storage ss
    cdef socklen_t slen
    cdef sockaddr_in *sin = <sockaddr_in *>&ss
    cdef sockaddr_in6 *sin6 = <sockaddr_in6 *>&ss
    cdef sockaddr_un *sun = <sockaddr_un *>&ss
    memset(&ss, 0, sizeof(ss))
    if r.family == AF_INET:
        sin.sin_family = AF_INET
        sin.sin_port = htons(r.port)
        memcpy(&sin.sin_addr, r.addr, 4)
        slen = sizeof(sockaddr_in)
    elif r.family == AF_INET6:
        sin6.sin6_family = AF_INET6
        sin6.sin6_port = htons(r.port)
        sin6.sin6_scope_id = r.scope_id
        memcpy(&sin6.sin6_addr, r.addr, 16)
        slen = sizeof(sockaddr_in6)
    else:
        sun.sun_family = AF_UNIX
        memcpy(sun.sun_path, r.name, r.name_len if <size_t>r.name_len <= FS_UNIX_PATH_MAX
               else FS_UNIX_PATH_MAX)
        slen = <socklen_t>(FS_UNIX_PATH_OFFSET + r.name_len)
    address = _decode(<sockaddr *>&ss, slen, r.family)
    return (r.family, r.type, r.state, address,
            None if r.backlog < 0 else r.backlog, None if r.pending < 0 else r.pending,
            None if r.drops < 0 else r.drops, r.inode, None if r.uid < 0 else r.uid)


def diag_parse(int kind, const unsigned char[::1] buf):
    """Parse one buffer of sock_diag replies of ``kind`` (``DIAG_INET`` or
    ``DIAG_UNIX``) with csrc/fs_diag.c's parser, apart from the kernel:
    ``(records, done)``, each record as ``diag_listeners`` gives it, ``done``
    whether NLMSG_DONE ended it.  A malformed buffer raises the typed error
    of EPROTO; an NLMSG_ERROR message, its errno's.  For tests and fuzzing.
    Availability: all platforms.
    """
    cdef size_t n = buf.shape[0]
    cdef size_t cap = fs_diag_max_records(n)
    cdef fs_diag_rec *recs = <fs_diag_rec *>malloc(cap * sizeof(fs_diag_rec))
    cdef int done = 0, err = 0, got, i
    if recs == NULL:
        raise MemoryError()
    try:
        got = fs_diag_parse(&buf[0] if n else NULL, n, kind, recs, cap, &done, &err)
        if got < 0:
            _fail(err, "sock_diag")
        return [_diag_record(&recs[i]) for i in range(got)], bool(done)
    finally:
        free(recs)


def diag_listeners(int family):
    """Every listening socket of ``family`` (AF_INET or AF_INET6: TCP;
    AF_UNIX) in this thread's network namespace, from one NETLINK_SOCK_DIAG
    dump (GIL released): a list of ``(family, type, state, address, backlog,
    pending, drops, inode, uid)``.  Errors are typed (ENOSYS where there is
    no sock_diag).  Availability: Linux.
    """
    cdef fs_diag_rec *recs = NULL
    cdef size_t n = 0, i
    cdef int rc, err
    with nogil:
        rc = fs_diag_listeners(family, &recs, &n)
        err = errno
    if rc < 0:
        _fail(err, "sock_diag")
    try:
        return [_diag_record(&recs[i]) for i in range(n)]
    finally:
        free(recs)
