/*
 * fs_backlog.h - fastsock's backlog contract as one pure function.
 *
 * The rule sets describe what each kernel does with the value handed to
 * listen(2); fs_backlog_plan() turns the caller's request into the value
 * to pass and the backlog that will be in force.  It does no I/O, so every
 * platform's rules are tested by table on any platform.
 */
#ifndef FS_BACKLOG_H
#define FS_BACKLOG_H

typedef enum {
    FS_RULES_LINUX = 0,        /* Linux >= 4.1: u32 storage, 0 holds one */
    FS_RULES_LINUX_PRE_4_1 = 1, /* Linux < 4.1: u16 storage */
    FS_RULES_FREEBSD = 2,      /* FreeBSD: kern.ipc.soacceptqueue */
    FS_RULES_MACOS = 3,        /* XNU: short storage, 0 means the maximum */
    FS_RULES_POSIX = 4,        /* anything else: POSIX, SOMAXCONN */
    FS_RULES_DRAGONFLY = 5,    /* DragonFly: FreeBSD's queue, kern.ipc.somaxconn */
    FS_RULES_COUNT = 6
} fs_rules_id;

typedef struct {
    const char *name;        /* "linux", "linux-pre-4.1", ... */
    long long storage_max;   /* largest backlog the kernel can store */
    int zero_is_maximum;     /* listen(fd, 0) would ask for the maximum */
    int capacity_num;        /* completed connections held: */
    int capacity_den;        /*   backlog * num / den + capacity_add */
    int capacity_add;
    const char *knob;        /* the sysctl that raises the limit, or NULL */
} fs_backlog_rules;

enum {
    FS_BACKLOG_TRUNCATED = 1, /* the request was above the maximum */
    FS_BACKLOG_NEGATIVE = 2,  /* a negative request, treated as 0 */
    FS_BACKLOG_DEFAULTED = 4, /* no request: the maximum */
    FS_BACKLOG_IDIOM = 8      /* a request meaning "as large as possible" */
};

/* Requests from this value up mean "as large as the system allows": trio
 * passes 0xFFFF, anyio 65536 (listen-semantics.md, section 3, rule 3). */
#define FS_BACKLOG_IDIOM_MIN 65535LL

typedef struct {
    long long passed;    /* the value to give listen(2) */
    long long effective; /* the backlog in force afterwards */
    long long capacity;  /* completed connections the queue holds */
    int flags;           /* FS_BACKLOG_* */
} fs_backlog_plan_t;

/* The rule set by id, or NULL for an unknown id. */
const fs_backlog_rules *fs_backlog_rules_get(int id);

/*
 * Plan listen(2) for `requested` (ignored when `defaulted`), given the live
 * system maximum and the platform's compile-time SOMAXCONN.  A request of
 * FS_BACKLOG_IDIOM_MIN or more, or equal to SOMAXCONN, is the ecosystem's way
 * to ask for the maximum: it is planned like any other value, and flagged
 * FS_BACKLOG_IDIOM so that its truncation is not warned about.  Returns 0, or
 * -1 when rules is NULL.
 */
int fs_backlog_plan(const fs_backlog_rules *rules, int defaulted, long long requested,
                    long long maximum, long long somaxconn, fs_backlog_plan_t *out);

#endif /* FS_BACKLOG_H */
