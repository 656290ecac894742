/* fs_backlog.c - see fs_backlog.h.  Pure computation; no platform #ifdefs. */
#include "fs_backlog.h"

#include <stddef.h>

#define FS_INT_MAX 2147483647LL

/* Facts: ../shared/notes/listen-semantics.md, section 1. */
static const fs_backlog_rules RULES[FS_RULES_COUNT] = {
    /* Linux >= 4.1 (commit becb74f0acca): u32; sk_acceptq_is_full uses '>' */
    {"linux", FS_INT_MAX, 0, 1, 1, 1, "net.core.somaxconn"},
    /* Linux < 4.1: sk_max_ack_backlog was an unsigned short */
    {"linux-pre-4.1", 65535, 0, 1, 1, 1, "net.core.somaxconn"},
    /* FreeBSD: sonewconn() refuses a connection once
       sol_qlen > 3 * sol_qlimit / 2 (sys/kern/uipc_socket.c), so the queue
       holds 3 * backlog / 2 + 1 (0 holds one); solisten_proto() clamps to
       kern.ipc.soacceptqueue (listen(2)) */
    {"freebsd", FS_INT_MAX, 0, 3, 2, 1, "kern.ipc.soacceptqueue"},
    /* XNU (bsd/kern/uipc_socket.c): short so_qlimit; solisten() takes
       backlog <= 0 as somaxconn; sonewconn_internal() refuses once
       so_qlen >= so_qlimit (soqlimitcompat, the default), so it holds backlog */
    {"macos", 32767, 1, 1, 1, 0, "kern.ipc.somaxconn"},
    /* POSIX: nothing known beyond the compile-time SOMAXCONN; no knob */
    {"posix", FS_INT_MAX, 0, 1, 1, 0, NULL},
    /* DragonFly: sonewconn() has FreeBSD's 3 * so_qlimit / 2 check
       (sys/kern/uipc_socket2.c); the limit is kern.ipc.somaxconn (its
       listen(2), ../shared/seeds/003), there is no kern.ipc.soacceptqueue */
    {"dragonfly", FS_INT_MAX, 0, 3, 2, 1, "kern.ipc.somaxconn"},
};

const fs_backlog_rules *fs_backlog_rules_get(int id) {
    if (id < 0 || id >= FS_RULES_COUNT)
        return NULL;
    return &RULES[id];
}

static long long capacity_of(const fs_backlog_rules *r, long long backlog) {
    long long c = backlog * r->capacity_num / r->capacity_den + r->capacity_add;
    return c < 1 ? 1 : c; /* every kernel here admits at least one */
}

int fs_backlog_plan(const fs_backlog_rules *r, int defaulted, long long requested,
                    long long maximum, long long somaxconn, fs_backlog_plan_t *out) {
    long long limit;
    if (r == NULL || out == NULL)
        return -1;
    limit = maximum < r->storage_max ? maximum : r->storage_max;
    if (limit < 1)
        limit = 1;
    out->flags = 0;
    if (defaulted) {
        out->flags |= FS_BACKLOG_DEFAULTED;
        out->passed = limit;
    } else {
        if (requested >= FS_BACKLOG_IDIOM_MIN || requested == somaxconn)
            out->flags |= FS_BACKLOG_IDIOM;
        if (requested < 0) {
            out->flags |= FS_BACKLOG_NEGATIVE;
            requested = 0; /* POSIX: as if 0, never the kernel's "maximum" */
        }
        if (requested == 0) {
            out->passed = r->zero_is_maximum ? 1 : 0; /* the smallest queue */
        } else if (requested > limit) {
            out->flags |= FS_BACKLOG_TRUNCATED;
            out->passed = limit;
        } else {
            out->passed = requested;
        }
    }
    out->effective = out->passed;
    out->capacity = capacity_of(r, out->effective);
    return 0;
}
