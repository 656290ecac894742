/* fs_uring.c - see fs_uring.h.  Platform facts (the io_uring ABI) come from
 * fs_platform.h only.
 *
 * One ring per thread, set up by the thread's first batch: io_uring_setup(2)
 * and the ring's three mappings (MADV_DONTFORK: a fork() child never has
 * them); the ring's descriptor is then registered with the thread
 * (IORING_REGISTER_RING_FDS) and closed, and io_uring_enter(2) names the ring
 * by its registered index from then on.  So fastsock keeps no descriptor in
 * the process's table: a close-everything (closerange, daemonizing) cannot
 * take the ring away or make fastsock close a number reused by someone else,
 * and descriptor counts and leak checks see nothing.  No lock either: a
 * thread only ever uses its own ring.  When the thread ends, a thread-specific
 * destructor unmaps the ring and the kernel drops the registration with the
 * thread.  In a fork() child, the copy of the forking thread's state belongs
 * to the parent's ring: the fork generation says so, and the child forgets it
 * (nothing is mapped there to unmap) and sets up its own when it needs one.
 *
 * Every call reaps all it submitted before returning: the ring is empty
 * between calls, and the kernel never writes into a caller's buffers after
 * the call returned.
 */
#include "fs_platform.h"
#include "fs_uring.h"

#include <stdlib.h>

#if FS_HAVE_IO_URING

enum { RING_UNTRIED = 0, RING_READY = 1, RING_NEVER = 2 };

struct fs_ring {
    int state;
    unsigned gen;                       /* fork_gen when it was set up */
    unsigned index;                     /* the registered ring */
    void *sq_map, *cq_map, *sqes_map;
    size_t sq_size, cq_size, sqes_size;
    unsigned *sq_tail, *sq_mask, *sq_array, *cq_head, *cq_tail, *cq_mask;
    struct fs_io_uring_sqe *sqes;
    struct fs_io_uring_cqe *cqes;
};

static __thread struct fs_ring R;
static __thread int thread_off = 0;     /* fs_uring_thread_enable(0) */
static int process_never = 0;           /* atomic: never in this process */
static unsigned fork_gen = 0;           /* atomic: one more in each fork() child */
static long long batches = 0;           /* atomic */
static pthread_once_t once = PTHREAD_ONCE_INIT;
static pthread_key_t ring_key;
static int ring_key_ok = 0;

static void unmap(struct fs_ring *r) {
    if (r->sqes_map != NULL)
        munmap(r->sqes_map, r->sqes_size);
    if (r->cq_map != NULL && r->cq_map != r->sq_map)
        munmap(r->cq_map, r->cq_size);
    if (r->sq_map != NULL)
        munmap(r->sq_map, r->sq_size);
    r->sq_map = r->cq_map = r->sqes_map = NULL;
}

/* Thread exit: the ring's mappings go (the kernel drops the registration). */
static void ring_destructor(void *p) {
    struct fs_ring *r = p;
    if (r->state == RING_READY && r->gen == FS_ATOMIC_LOAD(&fork_gen))
        unmap(r);
    r->state = RING_UNTRIED;
}

static void in_fork_child(void) {
    FS_ATOMIC_STORE(&fork_gen, FS_ATOMIC_LOAD(&fork_gen) + 1);
}

static void init_once(void) {
    const char *off = getenv("FASTSOCK_NO_IO_URING");
    if (off != NULL && off[0] != '\0' && strcmp(off, "0") != 0)
        FS_ATOMIC_STORE(&process_never, 1);
    ring_key_ok = pthread_key_create(&ring_key, ring_destructor) == 0;
    pthread_atfork(NULL, NULL, in_fork_child);
}

static void *map_ring(int fd, size_t size, unsigned long long offset) {
    void *p = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_POPULATE, fd,
                   (off_t)offset);
    if (p == MAP_FAILED)
        return NULL;
    madvise(p, size, MADV_DONTFORK);
    return p;
}

/* Set this thread's ring up: 0, or -1 with errno and nothing left behind. */
static int ring_setup(struct fs_ring *r) {
    struct fs_io_uring_params p;
    struct fs_io_uring_rsrc_update reg;
    int fd, rc, e;
    memset(r, 0, sizeof(*r));
    memset(&p, 0, sizeof(p));
    p.flags = FS_IORING_SETUP_SINGLE_ISSUER;        /* Linux 6.0+; only this thread submits */
    fd = (int)syscall(FS_NR_io_uring_setup, FS_URING_BATCH, &p);
    if (fd < 0 && errno == EINVAL) {
        memset(&p, 0, sizeof(p));
        fd = (int)syscall(FS_NR_io_uring_setup, FS_URING_BATCH, &p);
    }
    if (fd < 0)
        return -1;
    r->sq_size = p.sq_off.array + p.sq_entries * sizeof(unsigned);
    r->cq_size = p.cq_off.cqes + p.cq_entries * sizeof(struct fs_io_uring_cqe);
    if (p.features & FS_IORING_FEAT_SINGLE_MMAP) {
        if (r->cq_size > r->sq_size)
            r->sq_size = r->cq_size;
        r->cq_size = r->sq_size;
    }
    r->sqes_size = p.sq_entries * sizeof(struct fs_io_uring_sqe);
    r->sq_map = map_ring(fd, r->sq_size, FS_IORING_OFF_SQ_RING);
    r->cq_map = (p.features & FS_IORING_FEAT_SINGLE_MMAP)
                    ? r->sq_map : map_ring(fd, r->cq_size, FS_IORING_OFF_CQ_RING);
    r->sqes_map = map_ring(fd, r->sqes_size, FS_IORING_OFF_SQES);
    memset(&reg, 0, sizeof(reg));
    reg.offset = (uint32_t)-1;          /* any free index */
    reg.data = (uint64_t)fd;
    e = ENOMEM;
    rc = -1;
    if (r->sq_map != NULL && r->cq_map != NULL && r->sqes_map != NULL &&
        p.sq_entries >= FS_URING_BATCH && p.cq_entries >= FS_URING_BATCH) {
        rc = (int)syscall(FS_NR_io_uring_register, fd, FS_IORING_REGISTER_RING_FDS, &reg, 1);
        e = rc == 1 ? 0 : (rc < 0 ? errno : EINVAL);
    }
    close(fd);                          /* the mappings and the registration hold the ring */
    if (e != 0) {
        unmap(r);
        errno = e;
        return -1;
    }
    char *sq = r->sq_map, *cq = r->cq_map;
    r->index = reg.offset;
    r->sq_tail = (unsigned *)(sq + p.sq_off.tail);
    r->sq_mask = (unsigned *)(sq + p.sq_off.ring_mask);
    r->sq_array = (unsigned *)(sq + p.sq_off.array);
    r->cq_head = (unsigned *)(cq + p.cq_off.head);
    r->cq_tail = (unsigned *)(cq + p.cq_off.tail);
    r->cq_mask = (unsigned *)(cq + p.cq_off.ring_mask);
    r->cqes = (struct fs_io_uring_cqe *)(cq + p.cq_off.cqes);
    r->sqes = r->sqes_map;
    r->gen = FS_ATOMIC_LOAD(&fork_gen);
    r->state = RING_READY;
    if (ring_key_ok)
        pthread_setspecific(ring_key, r);
    return 0;
}

/* This thread's ring, set up if need be; NULL if it cannot be had now. */
static struct fs_ring *ring_get(void) {
    struct fs_ring *r = &R;
    pthread_once(&once, init_once);
    if (FS_ATOMIC_LOAD(&process_never))
        return NULL;
    if (r->state == RING_READY && r->gen != FS_ATOMIC_LOAD(&fork_gen)) {
        /* a fork() child: the parent's ring, not mapped here; forget it */
        memset(r, 0, sizeof(*r));
        if (ring_key_ok)
            pthread_setspecific(ring_key, NULL);
    }
    if (r->state == RING_UNTRIED && ring_setup(r) < 0) {
        int e = errno;
        if (e == EMFILE || e == ENFILE || e == ENOMEM || e == EAGAIN)
            return NULL;                /* may work later: try again next batch */
        if (e != EBUSY)                 /* EBUSY: this thread's ring slots are all taken */
            /* ENOSYS, EPERM (seccomp, kernel.io_uring_disabled), EINVAL (no
               registered rings before Linux 5.18): never in this process */
            FS_ATOMIC_STORE(&process_never, 1);
        r->state = RING_NEVER;
        return NULL;
    }
    return r->state == RING_READY ? r : NULL;
}

static int enter(struct fs_ring *r, unsigned submit, unsigned wait) {
    int rc;
    do {
        rc = (int)syscall(FS_NR_io_uring_enter, r->index, submit, wait,
                          FS_IORING_ENTER_GETEVENTS | FS_IORING_ENTER_REGISTERED_RING,
                          NULL, 0);
    } while (rc < 0 && errno == EINTR);
    return rc;
}

/* Submit n accepts (request i -> ss[i], lens[i]) and reap them all into
   res[]; the number submitted, or -1 if io_uring_enter(2) took none.
   *broken is set if waiting for the last completions failed (no known
   way with a live ring): what was reaped is still returned, so no accepted
   descriptor is lost, and the ring must never be used again. */
static int submit_and_reap(struct fs_ring *r, int lfd, int n, struct sockaddr_storage *ss,
                           socklen_t *lens, int *res, int *broken) {
    unsigned tail = *r->sq_tail, head;
    int i, submitted, reaped = 0;
    for (i = 0; i < n; i++) {
        unsigned idx = (tail + (unsigned)i) & *r->sq_mask;
        struct fs_io_uring_sqe *s = &r->sqes[idx];
        memset(s, 0, sizeof(*s));
        lens[i] = sizeof(ss[i]);
        s->opcode = FS_IORING_OP_ACCEPT;
        s->fd = lfd;
        s->addr = (uint64_t)(uintptr_t)&ss[i];
        s->addr2 = (uint64_t)(uintptr_t)&lens[i];
        s->accept_flags = SOCK_CLOEXEC;
        s->ioprio = FS_IORING_ACCEPT_DONTWAIT;
        s->user_data = (uint64_t)i;
        r->sq_array[idx] = idx;
        res[i] = -ECANCELED;
    }
    __atomic_store_n(r->sq_tail, tail + (unsigned)n, __ATOMIC_RELEASE);
    submitted = enter(r, (unsigned)n, (unsigned)n);
    if (submitted != n) {
        /* the kernel took fewer: the rest are withdrawn (it reads the tail
           afresh at each submission) */
        __atomic_store_n(r->sq_tail, tail + (unsigned)(submitted > 0 ? submitted : 0),
                         __ATOMIC_RELEASE);
        if (submitted <= 0)
            return -1;
        n = submitted;
    }
    while (reaped < n) {
        unsigned ctail = __atomic_load_n(r->cq_tail, __ATOMIC_ACQUIRE);
        for (head = *r->cq_head; head != ctail; head++) {
            struct fs_io_uring_cqe *c = &r->cqes[head & *r->cq_mask];
            if (c->user_data < (uint64_t)n)
                res[c->user_data] = c->res;
            reaped++;
        }
        __atomic_store_n(r->cq_head, head, __ATOMIC_RELEASE);
        /* a signal cut the wait short: wait for the rest (DONTWAIT: not long) */
        if (reaped < n && enter(r, 0, (unsigned)(n - reaped)) < 0) {
            *broken = 1;
            break;
        }
    }
    return n;
}

/* Stop using this thread's ring (a kernel that refuses what we ask).  The
   registration, which only a ring descriptor could undo before Linux 6.3,
   keeps the empty ring until the thread ends. */
static void ring_drop(struct fs_ring *r) {
    unmap(r);
    r->state = RING_NEVER;
    if (ring_key_ok)
        pthread_setspecific(ring_key, NULL);
}

int fs_uring_accept(int lfd, int n, int min, int *fds, struct sockaddr_storage *ss,
                    socklen_t *lens, int *err) {
    long long pending = 0, limit = 0;
    int res[FS_URING_BATCH];
    int i, asked, got = 0, first_err = 0, saved = errno, done, broken = 0;
    struct fs_ring *r;
    if (n > FS_URING_BATCH)
        n = FS_URING_BATCH;
    if (n < 1 || thread_off || FS_ATOMIC_LOAD(&process_never))
        return -1;
    asked = n;
    /* as many requests as the queue holds: none fails for want of a connection
       unless another thread or process takes it first */
    if (fs_listen_queue(lfd, &pending, &limit) < 0) {
        errno = saved;
        return -1;
    }
    if (pending < n)
        n = (int)pending;
    if (n == 0) {
        *err = EAGAIN;
        return 0;
    }
    if (n < min) {
        errno = saved;
        return -1;
    }
    r = ring_get();
    if (r == NULL) {
        errno = saved;
        return -1;
    }
    done = submit_and_reap(r, lfd, n, ss, lens, res, &broken);
    if (done < 0) {
        ring_drop(r);
        errno = saved;
        return -1;
    }
    if (broken)                 /* left mapped: requests may still complete into it */
        r->state = RING_NEVER;
    for (i = 0; i < done; i++) {
        if (res[i] >= 0) {
            if (got != i) {     /* keep each descriptor with its own address */
                ss[got] = ss[i];
                lens[got] = lens[i];
            }
            fds[got++] = res[i];
        } else if (first_err == 0) {
            first_err = -res[i];
        }
    }
    if (got == 0 && first_err == EINVAL && fs_listen_queue(lfd, &pending, &limit) == 0) {
        /* still a TCP listener (not shut down meanwhile), so the kernel
           refused IORING_ACCEPT_DONTWAIT (before Linux 6.10): nothing was
           accepted, and io_uring is not for this process */
        FS_ATOMIC_STORE(&process_never, 1);
        ring_drop(r);
        errno = saved;
        return -1;
    }
    __atomic_fetch_add(&batches, 1, __ATOMIC_RELAXED);
    *err = first_err ? first_err : (got < asked ? EAGAIN : 0);
    errno = saved;
    return got;
}

int fs_uring_usable(void) { return ring_get() != NULL; }

void fs_uring_thread_enable(int enabled) { thread_off = !enabled; }

long long fs_uring_batches(void) { return FS_ATOMIC_LOAD(&batches); }

#else /* no io_uring on this platform */

int fs_uring_accept(int lfd, int n, int min, int *fds, struct sockaddr_storage *ss,
                    socklen_t *lens, int *err) {
    (void)lfd, (void)n, (void)min, (void)fds, (void)ss, (void)lens, (void)err;
    return -1;
}

int fs_uring_usable(void) { return 0; }

void fs_uring_thread_enable(int enabled) { (void)enabled; }

long long fs_uring_batches(void) { return 0; }

#endif
