/* fs_uring.h - a batch of accepts that cannot wait, whatever the listener's O_NONBLOCK. */
#ifndef FS_URING_H
#define FS_URING_H

#include <sys/socket.h>

/*
 * Accept up to n (at most FS_URING_BATCH) connections queued on the TCP
 * listener lfd without ever waiting, even if lfd is blocking: as many
 * IORING_OP_ACCEPT requests with IORING_ACCEPT_DONTWAIT and SOCK_CLOEXEC as
 * the queue holds (TCP_INFO), submitted and reaped with one io_uring_enter(2),
 * on the calling thread's own ring.  The descriptors go to fds[0..got), their
 * peers to ss/lens, in queue order; returns got, with *err the errno of the
 * first request that failed (EAGAIN: the queue ran dry; 0: none failed).
 * An empty queue gives 0 (EAGAIN) at the cost of the TCP_INFO read.
 * Returns -1, having accepted nothing, when the queue holds fewer than min
 * connections (accept4 costs less for those), or when it cannot serve this
 * call: no
 * io_uring in this build or kernel (IORING_ACCEPT_DONTWAIT needs Linux 6.10,
 * registered rings 5.18), io_uring forbidden (seccomp, sysctl
 * kernel.io_uring_disabled), FASTSOCK_NO_IO_URING set (not "0") when first
 * asked, not a TCP listener, or no ring to be had just now (descriptors or
 * memory exhausted).  Leaves no descriptor in the process's table: see
 * fs_uring.c.  Call without the GIL; any thread.
 */
#define FS_URING_BATCH 64
int fs_uring_accept(int lfd, int n, int min, int *fds, struct sockaddr_storage *ss,
                    socklen_t *lens, int *err);

/* 1 unless fs_uring_accept is known to be unusable in this process (no
   io_uring, refused, or FASTSOCK_NO_IO_URING); a kernel that refuses
   IORING_ACCEPT_DONTWAIT is only found out by the first batch. */
int fs_uring_usable(void);

/* For the calling thread only: enabled 0 makes fs_uring_accept decline
   (return -1), 1 lets it serve again.  For side-by-side measurements and
   tests of the other way. */
void fs_uring_thread_enable(int enabled);

/* Batches fs_uring_accept has served in this process, all threads. */
long long fs_uring_batches(void);

#endif /* FS_URING_H */
