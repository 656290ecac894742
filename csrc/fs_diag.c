/* fs_diag.c - see fs_diag.h.  Platform facts come from fs_platform.h only.
 *
 * The sock_diag wire format (include/uapi/linux/{netlink,inet_diag,
 * unix_diag,sock_diag}.h, stable since Linux 3.3) is declared below as
 * offsets, so the parser builds everywhere; on Linux the offsets are checked
 * against the kernel headers at compile time.  Every field is read with
 * memcpy (no alignment assumed), every length checked against what is left
 * of its container before it is used.
 */
#include "fs_platform.h"
#include "fs_diag.h"

#include <stdint.h>
#include <stdlib.h>

/* netlink */
#define NL_HDRLEN 16            /* struct nlmsghdr: len u32, type u16, flags u16, seq, pid */
#define NL_ALIGN(n) (((n) + 3u) & ~(size_t)3u)
#define NL_ERROR 2
#define NL_DONE 3
#define NL_BY_FAMILY 20         /* SOCK_DIAG_BY_FAMILY */
#define RTA_HDRLEN 4            /* struct rtattr / nlattr: len u16, type u16 */
/* struct inet_diag_msg */
#define IDM_LEN 72
#define IDM_FAMILY 0
#define IDM_STATE 1
#define IDM_SPORT 4             /* id.idiag_sport, network order */
#define IDM_SRC 8               /* id.idiag_src[4] */
#define IDM_IF 40               /* id.idiag_if */
#define IDM_RQUEUE 56
#define IDM_WQUEUE 60
#define IDM_UID 64
#define IDM_INODE 68
#define INET_ATTR_SKMEMINFO 7   /* INET_DIAG_SKMEMINFO: u32[SK_MEMINFO_VARS] */
/* struct unix_diag_msg */
#define UDM_LEN 16
#define UDM_FAMILY 0
#define UDM_TYPE 1
#define UDM_STATE 2
#define UDM_INO 4
#define UNIX_ATTR_NAME 0        /* UNIX_DIAG_NAME: the sun_path bytes */
#define UNIX_ATTR_RQLEN 4       /* UNIX_DIAG_RQLEN: rqueue u32, wqueue u32 */
#define UNIX_ATTR_MEMINFO 5     /* UNIX_DIAG_MEMINFO: u32[SK_MEMINFO_VARS] */
#define UNIX_ATTR_UID 7         /* UNIX_DIAG_UID: u32 (Linux 5.3+) */
#define MEMINFO_DROPS 8         /* SK_MEMINFO_DROPS (Linux 4.x+) */
/* the Linux values of what the records say (the wire's, whatever the build) */
#define WIRE_AF_UNIX 1
#define WIRE_AF_INET 2
#define WIRE_AF_INET6 10
#define STATE_LISTEN 10

static uint32_t rd32(const unsigned char *p) {
    uint32_t v;
    memcpy(&v, p, 4);
    return v;
}

static uint16_t rd16(const unsigned char *p) {
    uint16_t v;
    memcpy(&v, p, 2);
    return v;
}

size_t fs_diag_max_records(size_t len) {
    return len / (NL_HDRLEN + UDM_LEN) + 1;
}

static int set_err(int *err, int e) {
    *err = e;
    return -1;
}

/* The attributes after a message's fixed part, into rec. */
static int parse_attrs(const unsigned char *p, size_t left, int kind, fs_diag_rec *rec) {
    while (left >= RTA_HDRLEN) {
        size_t alen = rd16(p), type = rd16(p + 2) & 0x3fff; /* NLA_TYPE_MASK */
        const unsigned char *v = p + RTA_HDRLEN;
        size_t vlen;
        if (alen < RTA_HDRLEN || alen > left)
            return -1;
        vlen = alen - RTA_HDRLEN;
        if ((kind == FS_DIAG_INET && type == INET_ATTR_SKMEMINFO) ||
            (kind == FS_DIAG_UNIX && type == UNIX_ATTR_MEMINFO)) {
            if (vlen >= (MEMINFO_DROPS + 1) * 4)
                rec->drops = rd32(v + MEMINFO_DROPS * 4);
        } else if (kind == FS_DIAG_UNIX && type == UNIX_ATTR_NAME) {
            if (vlen > FS_DIAG_NAME_MAX)
                return -1;
            memcpy(rec->name, v, vlen);
            rec->name_len = (int)vlen;
        } else if (kind == FS_DIAG_UNIX && type == UNIX_ATTR_RQLEN) {
            if (vlen < 8)
                return -1;
            rec->pending = rd32(v);
            rec->backlog = rd32(v + 4);
        } else if (kind == FS_DIAG_UNIX && type == UNIX_ATTR_UID) {
            if (vlen < 4)
                return -1;
            rec->uid = rd32(v);
        }
        alen = NL_ALIGN(alen);
        if (alen >= left)
            break;
        p += alen;
        left -= alen;
    }
    return 0;
}

static int parse_msg(const unsigned char *p, size_t plen, int kind, fs_diag_rec *rec) {
    memset(rec, 0, sizeof(*rec));
    rec->backlog = rec->pending = rec->drops = rec->uid = -1;
    if (kind == FS_DIAG_INET) {
        if (plen < IDM_LEN)
            return -1;
        if (p[IDM_FAMILY] == WIRE_AF_INET) {
            rec->family = AF_INET;
            memcpy(rec->addr, p + IDM_SRC, 4);
        } else if (p[IDM_FAMILY] == WIRE_AF_INET6) {
            rec->family = AF_INET6;
            memcpy(rec->addr, p + IDM_SRC, 16);
        } else {
            return -1;
        }
        rec->type = SOCK_STREAM;
        rec->state = p[IDM_STATE];
        rec->port = ntohs(rd16(p + IDM_SPORT));
        rec->scope_id = rd32(p + IDM_IF);
        if (rec->state == STATE_LISTEN) { /* on a listener: queue length, backlog */
            rec->pending = rd32(p + IDM_RQUEUE);
            rec->backlog = rd32(p + IDM_WQUEUE);
        }
        rec->uid = rd32(p + IDM_UID);
        rec->inode = rd32(p + IDM_INODE);
        return parse_attrs(p + IDM_LEN, plen - IDM_LEN, kind, rec);
    }
    if (plen < UDM_LEN || p[UDM_FAMILY] != WIRE_AF_UNIX)
        return -1;
    rec->family = AF_UNIX;
    rec->type = p[UDM_TYPE];
    rec->state = p[UDM_STATE];
    rec->inode = rd32(p + UDM_INO);
    return parse_attrs(p + UDM_LEN, plen - UDM_LEN, kind, rec);
}

int fs_diag_parse(const unsigned char *buf, size_t len, int kind, fs_diag_rec *out,
                  size_t max, int *done, int *err) {
    size_t n = 0;
    if (kind != FS_DIAG_INET && kind != FS_DIAG_UNIX)
        return set_err(err, EINVAL);
    while (len > 0) {
        size_t mlen, type;
        if (len < NL_HDRLEN)
            return set_err(err, EPROTO);
        mlen = rd32(buf);
        type = rd16(buf + 4);
        if (mlen < NL_HDRLEN || mlen > len)
            return set_err(err, EPROTO);
        if (type == NL_DONE) {
            /* a dump that failed part-way ends with a negative errno here */
            if (mlen >= NL_HDRLEN + 4 && (int32_t)rd32(buf + NL_HDRLEN) < 0)
                return set_err(err, -(int)(int32_t)rd32(buf + NL_HDRLEN));
            *done = 1;
            return (int)n;
        }
        if (type == NL_ERROR) {
            int32_t e;
            if (mlen < NL_HDRLEN + 4)
                return set_err(err, EPROTO);
            e = (int32_t)rd32(buf + NL_HDRLEN);
            if (e < 0)
                return set_err(err, e == INT32_MIN ? EPROTO : -e);
        } else if (type == NL_BY_FAMILY) {
            if (n == max)
                return set_err(err, ENOBUFS);
            if (parse_msg(buf + NL_HDRLEN, mlen - NL_HDRLEN, kind, &out[n]) < 0)
                return set_err(err, EPROTO);
            n++;
        } /* anything else (NLMSG_NOOP, an ACK) carries no record */
        mlen = NL_ALIGN(mlen);
        if (mlen >= len)
            break;
        buf += mlen;
        len -= mlen;
    }
    return (int)n;
}

int fs_listener_drops(int fd, long long *drops) {
#if FS_HAVE_SO_MEMINFO
    uint32_t mem[MEMINFO_DROPS + 8];
    socklen_t len = sizeof(mem);
    memset(mem, 0, sizeof(mem));
    if (getsockopt(fd, SOL_SOCKET, FS_SO_MEMINFO, mem, &len) < 0)
        return -1;
    if (len < (MEMINFO_DROPS + 1) * sizeof(uint32_t)) {
        errno = ENOPROTOOPT; /* a kernel from before SK_MEMINFO_DROPS */
        return -1;
    }
    *drops = mem[MEMINFO_DROPS];
    return 0;
#else
    (void)fd;
    (void)drops;
    errno = ENOPROTOOPT;
    return -1;
#endif
}

#if FS_HAVE_SOCK_DIAG

#define FS_SAME_OFFSET(ours, type, field) \
    _Static_assert((ours) == offsetof(type, field), #type "." #field)
_Static_assert(NL_HDRLEN == sizeof(struct nlmsghdr), "nlmsghdr");
_Static_assert(IDM_LEN == sizeof(struct inet_diag_msg), "inet_diag_msg");
FS_SAME_OFFSET(IDM_SPORT, struct inet_diag_msg, id.idiag_sport);
FS_SAME_OFFSET(IDM_SRC, struct inet_diag_msg, id.idiag_src);
FS_SAME_OFFSET(IDM_IF, struct inet_diag_msg, id.idiag_if);
FS_SAME_OFFSET(IDM_RQUEUE, struct inet_diag_msg, idiag_rqueue);
FS_SAME_OFFSET(IDM_WQUEUE, struct inet_diag_msg, idiag_wqueue);
FS_SAME_OFFSET(IDM_UID, struct inet_diag_msg, idiag_uid);
FS_SAME_OFFSET(IDM_INODE, struct inet_diag_msg, idiag_inode);
_Static_assert(UDM_LEN == sizeof(struct unix_diag_msg), "unix_diag_msg");
FS_SAME_OFFSET(UDM_TYPE, struct unix_diag_msg, udiag_type);
FS_SAME_OFFSET(UDM_STATE, struct unix_diag_msg, udiag_state);
FS_SAME_OFFSET(UDM_INO, struct unix_diag_msg, udiag_ino);
_Static_assert(INET_ATTR_SKMEMINFO == INET_DIAG_SKMEMINFO, "INET_DIAG_SKMEMINFO");
_Static_assert(UNIX_ATTR_NAME == UNIX_DIAG_NAME && UNIX_ATTR_RQLEN == UNIX_DIAG_RQLEN &&
                   UNIX_ATTR_MEMINFO == UNIX_DIAG_MEMINFO, "UNIX_DIAG_*");
_Static_assert(MEMINFO_DROPS == SK_MEMINFO_DROPS, "SK_MEMINFO_DROPS");
_Static_assert(NL_BY_FAMILY == SOCK_DIAG_BY_FAMILY && NL_DONE == NLMSG_DONE &&
                   NL_ERROR == NLMSG_ERROR, "netlink types");
_Static_assert(WIRE_AF_UNIX == AF_UNIX && WIRE_AF_INET == AF_INET &&
                   WIRE_AF_INET6 == AF_INET6, "address families");
#undef FS_SAME_OFFSET

#define UDIAG_SHOW_UID_ 0x40 /* UDIAG_SHOW_UID, Linux 5.3+; older kernels ignore it */
#define RECV_BUF 65536

/* Send one sock_diag request (its family-specific part in req) on a new
   NETLINK_SOCK_DIAG socket; returns the socket or -1 with errno. */
static int diag_request(const void *req, size_t req_len, unsigned short flags) {
    struct {
        struct nlmsghdr nh;
        unsigned char body[64];
    } msg;
    struct sockaddr_nl nl;
    int fd, saved;
    fd = fs_socket_cloexec(AF_NETLINK, SOCK_DGRAM, NETLINK_SOCK_DIAG);
    if (fd < 0)
        return -1;
    memset(&msg, 0, sizeof(msg));
    memset(&nl, 0, sizeof(nl));
    nl.nl_family = AF_NETLINK;
    msg.nh.nlmsg_len = (uint32_t)(NLMSG_LENGTH(req_len));
    msg.nh.nlmsg_type = SOCK_DIAG_BY_FAMILY;
    msg.nh.nlmsg_flags = (unsigned short)(NLM_F_REQUEST | flags);
    msg.nh.nlmsg_seq = 1;
    memcpy(msg.body, req, req_len);
    if (sendto(fd, &msg, msg.nh.nlmsg_len, 0, (struct sockaddr *)&nl, sizeof(nl)) < 0) {
        saved = errno;
        close(fd);
        errno = saved;
        return -1;
    }
    return fd;
}

/* One recv() of a reply; the datagram's length (MSG_TRUNC), -1 with errno. */
static ssize_t diag_recv(int fd, unsigned char *buf) {
    ssize_t got;
    do {
        got = recv(fd, buf, RECV_BUF, MSG_TRUNC);
    } while (got < 0 && errno == EINTR);
    if (got > RECV_BUF) {
        errno = EMSGSIZE;
        return -1;
    }
    return got;
}

static int diag_dump(int fd, int kind, fs_diag_rec **out, size_t *n) {
    unsigned char *buf = malloc(RECV_BUF);
    size_t cap = 0, count = 0, room = fs_diag_max_records(RECV_BUF);
    fs_diag_rec *recs = NULL, *grown;
    int done = 0, err = 0, got;
    ssize_t len;
    if (buf == NULL)
        return -1;
    while (!done) {
        len = diag_recv(fd, buf);
        if (len < 0)
            goto fail;
        if (len == 0) {
            err = EPROTO; /* the kernel ended the reply without NLMSG_DONE */
            goto fail_err;
        }
        if (cap - count < room) {
            cap = cap * 2 > count + room ? cap * 2 : count + room;
            grown = realloc(recs, cap * sizeof(*recs));
            if (grown == NULL)
                goto fail;
            recs = grown;
        }
        got = fs_diag_parse(buf, (size_t)len, kind, recs + count, cap - count, &done, &err);
        if (got < 0)
            goto fail_err;
        count += (size_t)got;
    }
    free(buf);
    *out = recs;
    *n = count;
    if (count == 0) {
        free(recs);
        *out = NULL;
    }
    return 0;
fail_err:
    errno = err;
fail:
    err = errno;
    free(buf);
    free(recs);
    errno = err;
    return -1;
}

int fs_diag_listeners(int family, fs_diag_rec **out, size_t *n) {
    int fd, rc, saved;
    int kind = family == AF_UNIX ? FS_DIAG_UNIX : FS_DIAG_INET;
    *out = NULL;
    *n = 0;
    if (family == AF_INET || family == AF_INET6) {
        struct inet_diag_req_v2 req;
        memset(&req, 0, sizeof(req));
        req.sdiag_family = (unsigned char)family;
        req.sdiag_protocol = IPPROTO_TCP;
        req.idiag_ext = 1u << (INET_DIAG_SKMEMINFO - 1);
        req.idiag_states = 1u << STATE_LISTEN;
        fd = diag_request(&req, sizeof(req), NLM_F_DUMP);
    } else if (family == AF_UNIX) {
        struct unix_diag_req req;
        memset(&req, 0, sizeof(req));
        req.sdiag_family = AF_UNIX;
        req.udiag_states = 1u << STATE_LISTEN;
        req.udiag_show = UDIAG_SHOW_NAME | UDIAG_SHOW_RQLEN | UDIAG_SHOW_MEMINFO |
                         UDIAG_SHOW_UID_;
        fd = diag_request(&req, sizeof(req), NLM_F_DUMP);
    } else {
        errno = EAFNOSUPPORT;
        return -1;
    }
    if (fd < 0)
        return -1;
    rc = diag_dump(fd, kind, out, n);
    saved = errno;
    close(fd);
    errno = saved;
    return rc;
}

/* An AF_UNIX listener's queue, by its inode (unix_diag's exact look-up). */
static int unix_queue(int fd, long long *pending, long long *limit) {
    struct sockaddr_storage ss;
    socklen_t slen = sizeof(ss);
    struct stat st;
    struct unix_diag_req req;
    unsigned char *buf;
    fs_diag_rec rec;
    int nfd, got, done = 0, err = 0, saved;
    ssize_t len;
    if (getsockname(fd, (struct sockaddr *)&ss, &slen) < 0 || fstat(fd, &st) < 0)
        return -1;
    if (ss.ss_family != AF_UNIX) {
        errno = EINVAL;
        return -1;
    }
    memset(&req, 0, sizeof(req));
    req.sdiag_family = AF_UNIX;
    req.udiag_states = ~0u;
    req.udiag_ino = (unsigned)st.st_ino;
    req.udiag_show = UDIAG_SHOW_RQLEN;
    req.udiag_cookie[0] = req.udiag_cookie[1] = INET_DIAG_NOCOOKIE;
    nfd = diag_request(&req, sizeof(req), 0);
    if (nfd < 0)
        return -1;
    buf = malloc(RECV_BUF);
    if (buf == NULL) {
        close(nfd);
        errno = ENOMEM;
        return -1;
    }
    len = diag_recv(nfd, buf);
    saved = errno;
    close(nfd);
    got = len < 0 ? -1 : fs_diag_parse(buf, (size_t)len, FS_DIAG_UNIX, &rec, 1, &done, &err);
    free(buf);
    if (len < 0) {
        errno = saved;
        return -1;
    }
    if (got < 0) {
        errno = err;
        return -1;
    }
    if (got == 0 || rec.state != STATE_LISTEN || rec.backlog < 0 ||
        rec.inode != (unsigned long long)(unsigned)st.st_ino) {
        errno = EINVAL;
        return -1;
    }
    *pending = rec.pending;
    *limit = rec.backlog;
    return 0;
}

#else /* no sock_diag */

int fs_diag_listeners(int family, fs_diag_rec **out, size_t *n) {
    (void)family;
    *out = NULL;
    *n = 0;
    errno = ENOSYS;
    return -1;
}

#endif

int fs_listener_queue(int fd, long long *pending, long long *limit) {
    if (fs_listen_queue(fd, pending, limit) == 0) {
#if !FS_HAVE_TCP_INFO && FS_HAVE_SO_LISTENQLIMIT
        /* SO_LISTENQLIMIT answers for any socket: does this one listen? */
        int on = 0;
        socklen_t len = sizeof(on);
        if (getsockopt(fd, SOL_SOCKET, SO_ACCEPTCONN, &on, &len) == 0 && !on) {
            errno = EINVAL;
            return -1;
        }
#endif
        return 0;
    }
#if FS_HAVE_SOCK_DIAG
    return unix_queue(fd, pending, limit);
#else
    return -1;
#endif
}
