/*
 * fs_diag.h - listener observability: every listener of a network namespace
 * (NETLINK_SOCK_DIAG), one listener's queue and drop count.
 *
 * The parser, fs_diag_parse(), is a pure function over a byte buffer in the
 * sock_diag wire format (Linux's, declared in fs_diag.c): it builds on every
 * platform and is fuzzed and unit-tested apart from the kernel.  The queries
 * exist on Linux only (FS_HAVE_SOCK_DIAG in fs_platform.h); elsewhere they
 * fail with ENOSYS, which the Python layer turns into an "unsupported on this
 * platform" error.
 */
#ifndef FS_DIAG_H
#define FS_DIAG_H

#include <stddef.h>

enum {
    FS_DIAG_INET = 0, /* inet_diag replies (TCP over IPv4 or IPv6) */
    FS_DIAG_UNIX = 1, /* unix_diag replies */
    FS_DIAG_NAME_MAX = 108
};

typedef struct {
    int family;               /* AF_INET, AF_INET6 or AF_UNIX */
    int type;                 /* SOCK_STREAM; AF_UNIX: its udiag_type */
    int state;                /* the kernel's TCP_* state (10: LISTEN) */
    unsigned port;            /* inet: local port, host order */
    unsigned scope_id;        /* inet: idiag_if */
    unsigned char addr[16];   /* inet: local address, network order (4 or 16 bytes) */
    int name_len;             /* AF_UNIX: bytes in name (0: unnamed) */
    char name[FS_DIAG_NAME_MAX]; /* AF_UNIX: as sun_path (abstract: leading NUL) */
    long long backlog;        /* the limit (max_ack_backlog); -1: not reported */
    long long pending;        /* completed connections queued; -1: not reported */
    long long drops;          /* SK_MEMINFO_DROPS; -1: not reported */
    long long uid;            /* owner; -1: not reported */
    unsigned long long inode; /* the socket's inode */
} fs_diag_rec;

/*
 * Parse buf[0..len), the netlink messages of one recv() of a sock_diag reply
 * of the given kind (FS_DIAG_INET, FS_DIAG_UNIX), into out[0..max).  Returns
 * the number of records written; *done becomes 1 when NLMSG_DONE was seen
 * (the rest of the buffer is then ignored), else is left alone.  Returns -1
 * with *err set: EPROTO for a malformed buffer (a header or attribute whose
 * length is too short or runs past its container, a message shorter than its
 * fixed part, an unknown address family), ENOBUFS when more than max records
 * are in it, or the kernel's errno from an NLMSG_ERROR message.  Reads
 * nothing outside buf; any alignment.
 */
int fs_diag_parse(const unsigned char *buf, size_t len, int kind, fs_diag_rec *out,
                  size_t max, int *done, int *err);

/* The most records a buffer of len bytes can hold (for sizing out). */
size_t fs_diag_max_records(size_t len);

/*
 * Every listening socket of `family` (AF_INET, AF_INET6: TCP; AF_UNIX) in
 * the calling thread's network namespace, by one NETLINK_SOCK_DIAG dump.  On
 * success, *out is a malloc'd array of *n records (free() it; NULL when n is
 * 0) and 0 is returned; else -1 with errno (ENOSYS: not on this platform).
 * Call without the GIL.
 */
int fs_diag_listeners(int family, fs_diag_rec **out, size_t *n);

/*
 * A listening socket's (pending, limit): fs_listen_queue() (TCP_INFO,
 * SO_LISTENQLIMIT), and for AF_UNIX on Linux a unix_diag query by the
 * socket's inode (UDIAG_SHOW_RQLEN).  -1 with errno when the kernel does not
 * tell or the socket does not listen (EINVAL).
 */
int fs_listener_queue(int fd, long long *pending, long long *limit);

/* A socket's drop count (Linux: SO_MEMINFO, SK_MEMINFO_DROPS); -1 with errno
   (ENOPROTOOPT) where there is none. */
int fs_listener_drops(int fd, long long *drops);

#endif /* FS_DIAG_H */
