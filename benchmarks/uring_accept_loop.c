/*
 * uring_accept_loop.c - the io_uring C reference of benchmarks/bench_accept.py.
 *
 * "uring_accept_loop LISTEN_FD": reads one k per line on stdin, accepts
 * exactly k queued connections on LISTEN_FD through io_uring, and writes the
 * nanoseconds of each drain (CLOCK_MONOTONIC) as one line on stdout.  Each
 * io_uring_enter(2) submits a batch of up to 64 IORING_OP_ACCEPT SQEs
 * (SOCK_CLOEXEC, the peer address taken into its own buffer per SQE, as
 * accept4_loop.c does) and waits for all their completions; a completion
 * that failed with EAGAIN or EINTR is made up in the next batch.  The
 * descriptors are kept until the clock stops, then closed, as in
 * accept4_loop.c.  One ring, set up once (SINGLE_ISSUER where the kernel has
 * it), mapped before the first drain: what a C server that batches accepts
 * through io_uring pays per connection.
 *
 * Raw system calls and <linux/io_uring.h> (no liburing): Linux 5.5+ (accept
 * opcode); the benchmark skips the row where it does not build or run.
 */
#define _GNU_SOURCE 1
#include <errno.h>
#include <linux/io_uring.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#define BATCH 64

static struct {
    int fd;
    unsigned *sq_tail, *sq_mask, *sq_array, *cq_head, *cq_tail, *cq_mask;
    struct io_uring_sqe *sqes;
    struct io_uring_cqe *cqes;
} ring;

/* CLOCK_MONOTONIC, or with "cpu" after LISTEN_FD (bench_accept.py --clock cpu)
   CLOCK_THREAD_CPUTIME_ID: this thread's CPU time, blind to time spent
   preempted by other processes on a busy machine. */
static clockid_t clock_id = CLOCK_MONOTONIC;

static long long now_ns(void) {
    struct timespec ts;
    clock_gettime(clock_id, &ts);
    return (long long)ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

static int ring_setup(void) {
    struct io_uring_params p;
    memset(&p, 0, sizeof p);
#ifdef IORING_SETUP_SINGLE_ISSUER
    p.flags = IORING_SETUP_SINGLE_ISSUER;
#endif
    ring.fd = (int)syscall(__NR_io_uring_setup, BATCH, &p);
    if (ring.fd < 0 && errno == EINVAL) {          /* an older kernel: no flags */
        memset(&p, 0, sizeof p);
        ring.fd = (int)syscall(__NR_io_uring_setup, BATCH, &p);
    }
    if (ring.fd < 0)
        return -1;
    size_t sq_len = p.sq_off.array + p.sq_entries * sizeof(unsigned);
    size_t cq_len = p.cq_off.cqes + p.cq_entries * sizeof(struct io_uring_cqe);
    char *sq = mmap(NULL, sq_len, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_POPULATE,
                    ring.fd, IORING_OFF_SQ_RING);
    char *cq = mmap(NULL, cq_len, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_POPULATE,
                    ring.fd, IORING_OFF_CQ_RING);
    void *sqes = mmap(NULL, p.sq_entries * sizeof(struct io_uring_sqe),
                      PROT_READ | PROT_WRITE, MAP_SHARED | MAP_POPULATE, ring.fd,
                      IORING_OFF_SQES);
    if (sq == MAP_FAILED || cq == MAP_FAILED || sqes == MAP_FAILED)
        return -1;
    ring.sq_tail = (unsigned *)(sq + p.sq_off.tail);
    ring.sq_mask = (unsigned *)(sq + p.sq_off.ring_mask);
    ring.sq_array = (unsigned *)(sq + p.sq_off.array);
    ring.cq_head = (unsigned *)(cq + p.cq_off.head);
    ring.cq_tail = (unsigned *)(cq + p.cq_off.tail);
    ring.cq_mask = (unsigned *)(cq + p.cq_off.ring_mask);
    ring.sqes = sqes;
    ring.cqes = (struct io_uring_cqe *)(cq + p.cq_off.cqes);
    return 0;
}

/* Submit n accepts on lfd, wait for their n completions, store the accepted
   descriptors at fds; returns how many were accepted, or -1 with errno set. */
static int accept_batch(int lfd, int n, int *fds) {
    static struct sockaddr_storage addrs[BATCH];
    static socklen_t lens[BATCH];
    unsigned tail = *ring.sq_tail, mask = *ring.sq_mask;
    for (int i = 0; i < n; i++) {
        unsigned idx = (tail + (unsigned)i) & mask;
        struct io_uring_sqe *s = &ring.sqes[idx];
        memset(s, 0, sizeof *s);
        lens[i] = sizeof addrs[i];
        s->opcode = IORING_OP_ACCEPT;
        s->fd = lfd;
        s->addr = (unsigned long long)(uintptr_t)&addrs[i];
        s->addr2 = (unsigned long long)(uintptr_t)&lens[i];
        s->accept_flags = SOCK_CLOEXEC;
        s->user_data = (unsigned long long)i;
        ring.sq_array[idx] = idx;
    }
    __atomic_store_n(ring.sq_tail, tail + (unsigned)n, __ATOMIC_RELEASE);
    int got = 0, reaped = 0;
    while (reaped < n) {
        int r = (int)syscall(__NR_io_uring_enter, ring.fd, reaped ? 0 : n, n - reaped,
                             IORING_ENTER_GETEVENTS, NULL, 0);
        if (r < 0 && errno != EINTR)
            return -1;
        unsigned head = *ring.cq_head;
        unsigned ctail = __atomic_load_n(ring.cq_tail, __ATOMIC_ACQUIRE);
        for (; head != ctail; head++, reaped++) {
            int res = ring.cqes[head & *ring.cq_mask].res;
            if (res >= 0)
                fds[got++] = res;
            else if (res != -EAGAIN && res != -EINTR) {
                errno = -res;
                __atomic_store_n(ring.cq_head, head + 1, __ATOMIC_RELEASE);
                return -1;
            }
        }
        __atomic_store_n(ring.cq_head, head, __ATOMIC_RELEASE);
    }
    return got;
}

/* Nanoseconds to accept k connections, or -1 with errno set. */
static long long uring_drain(int lfd, long k) {
    int *fds = malloc(sizeof(int) * (size_t)(k > 0 ? k : 1));
    long have = 0;
    if (fds == NULL)
        return -1;
    long long t0 = now_ns();
    while (have < k) {
        int n = k - have < BATCH ? (int)(k - have) : BATCH;
        int got = accept_batch(lfd, n, fds + have);
        if (got < 0) {
            int saved = errno;
            while (have > 0)
                close(fds[--have]);
            free(fds);
            errno = saved;
            return -1;
        }
        have += got;
    }
    long long t1 = now_ns();
    while (have > 0)
        close(fds[--have]);
    free(fds);
    return t1 - t0;
}

int main(int argc, char **argv) {
    long k;
    if (argc != 2 && argc != 3) {
        fprintf(stderr, "usage: %s LISTEN_FD [cpu]\n", argv[0]);
        return 2;
    }
    if (argc == 3 && strcmp(argv[2], "cpu") == 0)
        clock_id = CLOCK_THREAD_CPUTIME_ID;
    int lfd = atoi(argv[1]);
    if (ring_setup() < 0) {
        perror("io_uring_setup");
        return 3;
    }
    setvbuf(stdout, NULL, _IOLBF, 0);
    printf("ready\n");
    while (scanf("%ld", &k) == 1 && k > 0) {
        long long ns = uring_drain(lfd, k);
        if (ns < 0) {
            perror("io_uring accept");
            return 1;
        }
        printf("%lld\n", ns);
    }
    return 0;
}
