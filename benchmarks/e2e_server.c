/*
 * e2e_server.c - the C reference server for benchmarks/bench_e2e.py.
 *
 * The same loop as the benchmark's Python servers, in C: one thread, blocking
 * sockets, for every connection accept4(..., SOCK_CLOEXEC) with the peer
 * address, one recv() of the request, one send() of the fixed HTTP/1.0
 * response ("Connection: close"), close().  It listens on 127.0.0.1, port 0,
 * backlog 1024 with SO_REUSEADDR, and prints the port on stdout.
 *
 * Not a variant under test: it shows what the end-to-end setup gives a server
 * whose accept loop costs (almost) nothing in user space, i.e. the most any
 * Python accept() could reach there.
 */
#define _GNU_SOURCE 1
#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

static const char RESPONSE[] =
    "HTTP/1.0 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 3\r\n"
    "Connection: close\r\n\r\nok\n";

int main(void) {
    int one = 1;
    int lfd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    struct sockaddr_in addr;
    socklen_t len = sizeof addr;
    char buf[4096];

    if (lfd < 0) {
        perror("socket");
        return 1;
    }
    setsockopt(lfd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    memset(&addr, 0, sizeof addr);
    addr.sin_family = AF_INET;
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (bind(lfd, (struct sockaddr *)&addr, sizeof addr) < 0 || listen(lfd, 1024) < 0 ||
        getsockname(lfd, (struct sockaddr *)&addr, &len) < 0) {
        perror("bind/listen");
        return 1;
    }
    printf("%d\n", ntohs(addr.sin_port));
    fflush(stdout);
    for (;;) {
        struct sockaddr_in peer;
        socklen_t plen = sizeof peer;
        int fd = accept4(lfd, (struct sockaddr *)&peer, &plen, SOCK_CLOEXEC);
        if (fd < 0)
            continue;
        if (recv(fd, buf, sizeof buf, 0) >= 0)
            send(fd, RESPONSE, sizeof RESPONSE - 1, MSG_NOSIGNAL);
        close(fd);
    }
}
