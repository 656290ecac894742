/*
 * accept4_loop.c - the C baseline for benchmarks/bench_accept.py.
 *
 * accept4_drain(lfd, k) accepts exactly k queued connections on the listening
 * descriptor lfd with accept4(..., SOCK_CLOEXEC), taking the peer address as
 * the Python variants do and keeping the descriptors, as the Python variants
 * keep their socket objects; it returns the elapsed nanoseconds of that loop
 * (CLOCK_MONOTONIC) and closes the k descriptors after the clock stopped, as
 * the Python variants do.
 *
 * Built twice by the benchmark with the system compiler:
 *   - as a program, "accept4_loop LISTEN_FD": reads one k per line on stdin,
 *     writes the nanoseconds of each drain as one line on stdout (the
 *     baseline: a separate C process);
 *   - as a shared library loaded with ctypes: the same loop inside the Python
 *     process (for reference: what the kernel costs there).
 * Needs accept4 (Linux, the BSDs); the benchmark skips these rows where it
 * does not build.
 */
#define _GNU_SOURCE 1
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

/* CLOCK_MONOTONIC, or with "cpu" after LISTEN_FD (bench_accept.py --clock cpu)
   CLOCK_THREAD_CPUTIME_ID: this thread's CPU time, blind to time spent
   preempted by other processes on a busy machine. */
static clockid_t clock_id = CLOCK_MONOTONIC;

static long long now_ns(void) {
    struct timespec ts;
    clock_gettime(clock_id, &ts);
    return (long long)ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

/* For the shared library: cpu != 0 selects CLOCK_THREAD_CPUTIME_ID. */
void accept4_set_clock(int cpu) {
    clock_id = cpu ? CLOCK_THREAD_CPUTIME_ID : CLOCK_MONOTONIC;
}

/* Nanoseconds to accept k connections, or -1 with errno set. */
long long accept4_drain(int lfd, long k) {
    struct sockaddr_storage ss;
    socklen_t len;
    long i;
    int *fds = malloc(sizeof(int) * (size_t)(k > 0 ? k : 1));
    if (fds == NULL)
        return -1;
    long long t0 = now_ns();
    for (i = 0; i < k; i++) {
        len = sizeof(ss);
        int fd = accept4(lfd, (struct sockaddr *)&ss, &len, SOCK_CLOEXEC);
        if (fd < 0) {
            if (errno == EINTR) {
                i--;
                continue;
            }
            int saved = errno;
            while (i > 0)
                close(fds[--i]);
            free(fds);
            errno = saved;
            return -1;
        }
        fds[i] = fd;
    }
    long long t1 = now_ns();
    for (i = 0; i < k; i++)
        close(fds[i]);
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
    setvbuf(stdout, NULL, _IOLBF, 0);
    while (scanf("%ld", &k) == 1 && k > 0) {
        long long ns = accept4_drain(lfd, k);
        if (ns < 0) {
            perror("accept4");
            return 1;
        }
        printf("%lld\n", ns);
    }
    return 0;
}
