/*
 * fs_platform.h - the one place in fastsock that knows which OS it is built on.
 *
 * Every platform #ifdef of the project lives here and nowhere else.  It turns
 * "this system has X" into plain 0/1 flags (FS_HAVE_*) and small static inline
 * helpers whose fallbacks are stubs that fail with ENOSYS/ENOPROTOOPT, so the
 * Cython code and the other C files never test __linux__ & co. themselves.
 */
#ifndef FS_PLATFORM_H
#define FS_PLATFORM_H

#if defined(__linux__) && !defined(_GNU_SOURCE)
#define _GNU_SOURCE 1 /* accept4() on glibc */
#endif

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <stddef.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/types.h>
#include <sys/un.h>
#include <sys/utsname.h>
#include <time.h>
#include <unistd.h>
#if defined(__APPLE__) || defined(__FreeBSD__) || defined(__DragonFly__) || \
    defined(__NetBSD__) || defined(__OpenBSD__)
#include <sys/sysctl.h>
#endif

/* ---- which kernel, and which backlog rule set applies (see fs_backlog.h) -- */
#if defined(__linux__)
#define FS_PLATFORM_NAME "linux"
#define FS_BUILD_RULES 0 /* FS_RULES_LINUX; < 4.1 is told apart at run time */
#elif defined(__FreeBSD__)
#define FS_PLATFORM_NAME "freebsd"
#define FS_BUILD_RULES 2
#elif defined(__DragonFly__)
#define FS_PLATFORM_NAME "dragonfly"
#define FS_BUILD_RULES 2
#elif defined(__APPLE__)
#define FS_PLATFORM_NAME "macos"
#define FS_BUILD_RULES 3
#elif defined(__NetBSD__)
#define FS_PLATFORM_NAME "netbsd"
#define FS_BUILD_RULES 4
#elif defined(__OpenBSD__)
#define FS_PLATFORM_NAME "openbsd"
#define FS_BUILD_RULES 4
#else
#define FS_PLATFORM_NAME "other"
#define FS_BUILD_RULES 4
#endif

/* Where the live system maximum backlog is read. */
#if defined(__linux__)
#define FS_SOMAXCONN_PROC "/proc/sys/net/core/somaxconn"
#define FS_SOMAXCONN_SYSCTL NULL
#elif defined(__FreeBSD__)
#define FS_SOMAXCONN_PROC NULL
#define FS_SOMAXCONN_SYSCTL "kern.ipc.soacceptqueue"
#elif defined(__APPLE__) || defined(__DragonFly__) || defined(__NetBSD__) || \
    defined(__OpenBSD__)
#define FS_SOMAXCONN_PROC NULL
#define FS_SOMAXCONN_SYSCTL "kern.ipc.somaxconn"
#else
#define FS_SOMAXCONN_PROC NULL
#define FS_SOMAXCONN_SYSCTL NULL
#endif

#ifndef SOMAXCONN
#define SOMAXCONN 128
#endif
#define FS_SOMAXCONN SOMAXCONN

/* ---- descriptor flags -------------------------------------------------- */
#ifdef SOCK_CLOEXEC
#define FS_HAVE_SOCK_CLOEXEC 1
#define FS_SOCK_CLOEXEC SOCK_CLOEXEC
#else
#define FS_HAVE_SOCK_CLOEXEC 0
#define FS_SOCK_CLOEXEC 0
#endif
#ifdef SOCK_NONBLOCK
#define FS_HAVE_SOCK_NONBLOCK 1
#define FS_SOCK_NONBLOCK SOCK_NONBLOCK
#else
#define FS_HAVE_SOCK_NONBLOCK 0
#define FS_SOCK_NONBLOCK 0
#endif

#if defined(__linux__) || defined(__FreeBSD__) || defined(__DragonFly__) || \
    defined(__NetBSD__) || defined(__OpenBSD__)
#define FS_HAVE_ACCEPT4 1
#else
#define FS_HAVE_ACCEPT4 0
#endif

/* ---- reading back what listen() applied -------------------------------- */
#if defined(__linux__) && defined(TCP_INFO)
#define FS_HAVE_TCP_INFO 1
#else
#define FS_HAVE_TCP_INFO 0
#endif
#if defined(SO_LISTENQLIMIT) && defined(SO_LISTENQLEN)
#define FS_HAVE_SO_LISTENQLIMIT 1
#else
#define FS_HAVE_SO_LISTENQLIMIT 0
#endif

/* ---- io_uring (Linux): a batch of accepts that cannot wait ---------------
   The subset of the io_uring ABI (include/uapi/linux/io_uring.h, stable since
   Linux 5.1) that fs_uring.c uses, declared here so that builds on old kernel
   headers (the manylinux images') have it too; where the system header is
   recent enough (5.7+: IORING_FEAT_FAST_POLL), the sizes, offsets and values
   are checked against it at compile time.  System call numbers come from
   <sys/syscall.h>, else x86_64's and aarch64's.  The kernel decides at run
   time: IORING_REGISTER_RING_FDS needs Linux 5.18, IORING_ACCEPT_DONTWAIT
   6.10 (older kernels answer EINVAL). */
#if defined(__linux__)
#include <sys/syscall.h>
#endif
#if defined(__linux__) && defined(SYS_io_uring_setup) && defined(SYS_io_uring_register)
#define FS_NR_io_uring_setup SYS_io_uring_setup
#define FS_NR_io_uring_enter SYS_io_uring_enter
#define FS_NR_io_uring_register SYS_io_uring_register
#elif defined(__linux__) && (defined(__x86_64__) || defined(__aarch64__))
#define FS_NR_io_uring_setup 425        /* the same on both since Linux 5.1 */
#define FS_NR_io_uring_enter 426
#define FS_NR_io_uring_register 427
#endif
#if defined(FS_NR_io_uring_setup)
#define FS_HAVE_IO_URING 1
#include <pthread.h>
#include <stdint.h>
#include <sys/mman.h>
#define FS_IORING_OFF_SQ_RING 0ULL
#define FS_IORING_OFF_CQ_RING 0x8000000ULL
#define FS_IORING_OFF_SQES 0x10000000ULL
#define FS_IORING_OP_ACCEPT 13
#define FS_IORING_ACCEPT_DONTWAIT (1U << 1)
#define FS_IORING_ENTER_GETEVENTS (1U << 0)
#define FS_IORING_ENTER_REGISTERED_RING (1U << 4)
#define FS_IORING_REGISTER_RING_FDS 20
#define FS_IORING_FEAT_SINGLE_MMAP (1U << 0)
#define FS_IORING_SETUP_SINGLE_ISSUER (1U << 12)
struct fs_io_sqring_offsets {
    uint32_t head, tail, ring_mask, ring_entries, flags, dropped, array, resv1;
    uint64_t user_addr;
};
struct fs_io_cqring_offsets {
    uint32_t head, tail, ring_mask, ring_entries, overflow, cqes, flags, resv1;
    uint64_t user_addr;
};
struct fs_io_uring_params {
    uint32_t sq_entries, cq_entries, flags, sq_thread_cpu, sq_thread_idle, features, wq_fd;
    uint32_t resv[3];
    struct fs_io_sqring_offsets sq_off;
    struct fs_io_cqring_offsets cq_off;
};
struct fs_io_uring_sqe {
    uint8_t opcode, flags;
    uint16_t ioprio;
    int32_t fd;
    uint64_t addr2;         /* accept: the socklen_t * */
    uint64_t addr;          /* accept: the sockaddr * */
    uint32_t len;
    uint32_t accept_flags;
    uint64_t user_data;
    uint16_t buf_index, personality;
    uint32_t file_index;
    uint64_t addr3, pad;
};
struct fs_io_uring_cqe {
    uint64_t user_data;
    int32_t res;
    uint32_t flags;
};
struct fs_io_uring_rsrc_update {
    uint32_t offset, resv;
    uint64_t data;
};
#if defined(__has_include)
#if __has_include(<linux/io_uring.h>)
#include <linux/io_uring.h>
#endif
#endif
#if defined(IORING_FEAT_FAST_POLL)      /* a header from 5.7 on: accept_flags, addr2 */
#define FS_ABI_SAME(ours, theirs, field) \
    _Static_assert(offsetof(struct ours, field) == offsetof(struct theirs, field), \
                   #theirs "." #field)
_Static_assert(sizeof(struct fs_io_uring_sqe) == sizeof(struct io_uring_sqe), "sqe size");
_Static_assert(sizeof(struct fs_io_uring_cqe) == sizeof(struct io_uring_cqe), "cqe size");
_Static_assert(sizeof(struct fs_io_uring_params) == sizeof(struct io_uring_params), "params");
FS_ABI_SAME(fs_io_uring_sqe, io_uring_sqe, ioprio);
FS_ABI_SAME(fs_io_uring_sqe, io_uring_sqe, fd);
FS_ABI_SAME(fs_io_uring_sqe, io_uring_sqe, addr2);
FS_ABI_SAME(fs_io_uring_sqe, io_uring_sqe, addr);
FS_ABI_SAME(fs_io_uring_sqe, io_uring_sqe, accept_flags);
FS_ABI_SAME(fs_io_uring_sqe, io_uring_sqe, user_data);
FS_ABI_SAME(fs_io_uring_cqe, io_uring_cqe, res);
FS_ABI_SAME(fs_io_uring_params, io_uring_params, features);
FS_ABI_SAME(fs_io_uring_params, io_uring_params, sq_off.tail);
FS_ABI_SAME(fs_io_uring_params, io_uring_params, sq_off.array);
FS_ABI_SAME(fs_io_uring_params, io_uring_params, cq_off.cqes);
FS_ABI_SAME(fs_io_uring_params, io_uring_params, cq_off.ring_mask);
_Static_assert(FS_IORING_OP_ACCEPT == IORING_OP_ACCEPT, "IORING_OP_ACCEPT");
_Static_assert(FS_IORING_OFF_SQES == IORING_OFF_SQES, "IORING_OFF_SQES");
_Static_assert(FS_IORING_OFF_CQ_RING == IORING_OFF_CQ_RING, "IORING_OFF_CQ_RING");
_Static_assert(FS_IORING_FEAT_SINGLE_MMAP == IORING_FEAT_SINGLE_MMAP, "SINGLE_MMAP");
#if defined(IORING_ENTER_REGISTERED_RING)
_Static_assert(FS_IORING_ENTER_REGISTERED_RING == IORING_ENTER_REGISTERED_RING, "REG_RING");
_Static_assert(FS_IORING_REGISTER_RING_FDS == IORING_REGISTER_RING_FDS, "RING_FDS");
_Static_assert(sizeof(struct fs_io_uring_rsrc_update) == sizeof(struct io_uring_rsrc_update),
               "rsrc_update");
#endif
#if defined(IORING_SETUP_SINGLE_ISSUER)
_Static_assert(FS_IORING_SETUP_SINGLE_ISSUER == IORING_SETUP_SINGLE_ISSUER, "SINGLE_ISSUER");
#endif
#if defined(IORING_ACCEPT_DONTWAIT)
_Static_assert(FS_IORING_ACCEPT_DONTWAIT == IORING_ACCEPT_DONTWAIT, "ACCEPT_DONTWAIT");
#endif
#undef FS_ABI_SAME
#endif
#else
#define FS_HAVE_IO_URING 0
#endif

/* ---- listener observability (Linux): sock_diag and SO_MEMINFO ------------
   fs_diag.c asks NETLINK_SOCK_DIAG (inet_diag, unix_diag; Linux 3.3+) for a
   namespace's listeners and one AF_UNIX listener's queue.  The message
   layouts it parses are its own declarations of the stable ABI (so the parser
   builds and is fuzzed everywhere); here they are checked against the kernel
   headers.  SO_MEMINFO (Linux 4.12+) gives a socket's drop count. */
#if defined(__linux__)
#include <linux/inet_diag.h>
#include <linux/netlink.h>
#include <linux/sock_diag.h>
#include <linux/unix_diag.h>
#include <sys/stat.h>
#define FS_HAVE_SOCK_DIAG 1
#define FS_HAVE_SO_MEMINFO 1
#ifdef SO_MEMINFO
#define FS_SO_MEMINFO SO_MEMINFO
#else
#define FS_SO_MEMINFO 55 /* asm-generic/socket.h, all architectures */
#endif
#else
#define FS_HAVE_SOCK_DIAG 0
#define FS_HAVE_SO_MEMINFO 0
#define FS_SO_MEMINFO 0
#endif

/* ---- AF_UNIX ------------------------------------------------------------ */
#if defined(__linux__)
#define FS_HAVE_ABSTRACT_UNIX 1
#else
#define FS_HAVE_ABSTRACT_UNIX 0
#endif
#define FS_UNIX_PATH_MAX (sizeof(((struct sockaddr_un *)0)->sun_path))
#define FS_UNIX_PATH_OFFSET (offsetof(struct sockaddr_un, sun_path))

#ifndef EWOULDBLOCK
#define EWOULDBLOCK EAGAIN
#endif

/* Thread-safe, lock-free one-word cache (free-threaded builds included). */
#define FS_ATOMIC_LOAD(p) __atomic_load_n((p), __ATOMIC_RELAXED)
#define FS_ATOMIC_STORE(p, v) __atomic_store_n((p), (v), __ATOMIC_RELAXED)
/* Publish data computed once (store-release) and read it (load-acquire). */
#define FS_ATOMIC_LOAD_ACQUIRE(p) __atomic_load_n((p), __ATOMIC_ACQUIRE)
#define FS_ATOMIC_STORE_RELEASE(p, v) __atomic_store_n((p), (v), __ATOMIC_RELEASE)

/* Free-threaded CPython (PEP 703; Py_GIL_DISABLED comes from pyconfig.h, which
   the Cython module includes first): caches that only the GIL keeps safe are
   off.  Always 0 in the plain C files, which use no such cache. */
#if defined(Py_GIL_DISABLED)
#define FS_GIL_DISABLED 1
#else
#define FS_GIL_DISABLED 0
#endif

/* Set FD_CLOEXEC; on failure close fd and return -1 with errno preserved. */
static inline int fs_set_cloexec_or_close(int fd) {
    int flags = fcntl(fd, F_GETFD);
    if (flags < 0 || fcntl(fd, F_SETFD, flags | FD_CLOEXEC) < 0) {
        int saved = errno;
        close(fd);
        errno = saved;
        return -1;
    }
    return fd;
}

/* socket(2) that is close-on-exec from birth where the kernel allows. */
static inline int fs_socket_cloexec(int family, int type, int proto) {
#if FS_HAVE_SOCK_CLOEXEC
    return socket(family, type | FS_SOCK_CLOEXEC, proto);
#else
    int fd = socket(family, type, proto);
    return fd < 0 ? fd : fs_set_cloexec_or_close(fd);
#endif
}

/* accept4(fd, ..., SOCK_CLOEXEC), or accept(2) + FD_CLOEXEC without accept4.
   The new descriptor is always blocking, as accept4 without SOCK_NONBLOCK
   makes it: accept(2) on macOS and the BSDs passes a non-blocking listener's
   O_NONBLOCK on, so the fallback clears it (the socket object built on it
   says "no timeout"). */
static inline int fs_accept_cloexec(int fd, struct sockaddr *sa, socklen_t *len) {
#if FS_HAVE_ACCEPT4 && FS_HAVE_SOCK_CLOEXEC
    return accept4(fd, sa, len, FS_SOCK_CLOEXEC);
#else
    int nfd = accept(fd, sa, len);
    if (nfd < 0 || fs_set_cloexec_or_close(nfd) < 0)
        return -1;
    int fl = fcntl(nfd, F_GETFL);
    if (fl < 0 || ((fl & O_NONBLOCK) && fcntl(nfd, F_SETFL, fl & ~O_NONBLOCK) < 0)) {
        int saved = errno;
        close(nfd);
        errno = saved;
        return -1;
    }
    return nfd;
#endif
}

/* Integer sysctl by name; -1/ENOSYS where the system has no sysctlbyname. */
static inline int fs_sysctl_int(const char *name, long long *out) {
#if defined(__APPLE__) || defined(__FreeBSD__) || defined(__DragonFly__) || \
    defined(__NetBSD__)
    int v = 0;
    size_t len = sizeof(v);
    if (sysctlbyname(name, &v, &len, NULL, 0) < 0)
        return -1;
    *out = v;
    return 0;
#else
    (void)name;
    (void)out;
    errno = ENOSYS;
    return -1;
#endif
}

/* Listening socket's (pending, limit) from the kernel; -1 with errno if it can't tell. */
static inline int fs_listen_queue(int fd, long long *pending, long long *limit) {
#if FS_HAVE_TCP_INFO
    struct tcp_info ti;
    /* only as far as the two fields: the kernel copies no more than asked */
    socklen_t len = (socklen_t)(offsetof(struct tcp_info, tcpi_sacked) + sizeof(ti.tcpi_sacked));
    memset(&ti, 0, sizeof(ti));
    if (getsockopt(fd, IPPROTO_TCP, TCP_INFO, &ti, &len) < 0)
        return -1;
    if (ti.tcpi_state != 10 /* TCP_LISTEN */) {
        errno = EINVAL;
        return -1;
    }
    /* On a listener, tcp_get_info() aliases these two: queue length, backlog. */
    *pending = ti.tcpi_unacked;
    *limit = ti.tcpi_sacked;
    return 0;
#elif FS_HAVE_SO_LISTENQLIMIT
    int qlen = 0, qlimit = 0;
    socklen_t len = sizeof(int);
    if (getsockopt(fd, SOL_SOCKET, SO_LISTENQLEN, &qlen, &len) < 0)
        return -1;
    len = sizeof(int);
    if (getsockopt(fd, SOL_SOCKET, SO_LISTENQLIMIT, &qlimit, &len) < 0)
        return -1;
    *pending = qlen;
    *limit = qlimit;
    return 0;
#else
    (void)fd;
    (void)pending;
    (void)limit;
    errno = ENOPROTOOPT;
    return -1;
#endif
}

/* Linux before 4.1 kept the backlog in 16 bits; uname() tells at run time. */
static inline int fs_kernel_is_linux_pre_4_1(void) {
#if defined(__linux__)
    struct utsname u;
    int major = 0, minor = 0;
    if (uname(&u) < 0)
        return 0;
    if (sscanf(u.release, "%d.%d", &major, &minor) != 2)
        return 0;
    return major < 4 || (major == 4 && minor < 1);
#else
    return 0;
#endif
}

#endif /* FS_PLATFORM_H */
