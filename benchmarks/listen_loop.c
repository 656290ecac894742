/*
 * listen_loop.c - the C reference for benchmarks/bench_listen.py.
 *
 * listen_setup(n) sets up and closes n listeners, each socket(AF_INET,
 * SOCK_STREAM | SOCK_CLOEXEC) + bind(127.0.0.1:0) + listen(128) + close, the
 * system calls the stdlib's socket.socket()/bind()/listen()/close() make,
 * and returns the elapsed nanoseconds (CLOCK_MONOTONIC), or -1 with errno.
 * Built as a shared library by the benchmark and called through ctypes, so
 * it runs in the same process as the Python variants.
 */
#define _GNU_SOURCE 1
#include <arpa/inet.h>
#include <netinet/in.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

static long long now_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (long long)ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

long long listen_setup(long n) {
    struct sockaddr_in a;
    long i;
    memset(&a, 0, sizeof(a));
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    long long t0 = now_ns();
    for (i = 0; i < n; i++) {
        int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
        if (fd < 0)
            return -1;
        if (bind(fd, (struct sockaddr *)&a, sizeof(a)) < 0 || listen(fd, 128) < 0) {
            close(fd);
            return -1;
        }
        close(fd);
    }
    return now_ns() - t0;
}
