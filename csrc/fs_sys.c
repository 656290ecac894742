/* fs_sys.c - see fs_sys.h.  Platform facts come from fs_platform.h only. */
#include "fs_platform.h"
#include "fs_sys.h"
#include "fs_backlog.h"

#include <stdlib.h>

static int read_proc_int(const char *path, long long *out) {
    char buf[32];
    ssize_t n;
    int fd, saved;
    char *end;
    do {
        fd = open(path, O_RDONLY | O_CLOEXEC);
    } while (fd < 0 && errno == EINTR);
    if (fd < 0)
        return -1;
    do {
        n = read(fd, buf, sizeof(buf) - 1);
    } while (n < 0 && errno == EINTR);
    saved = errno;
    close(fd);
    if (n <= 0) {
        errno = n < 0 ? saved : EIO;
        return -1;
    }
    buf[n] = '\0';
    *out = strtoll(buf, &end, 10);
    if (end == buf) {
        errno = EIO;
        return -1;
    }
    return 0;
}

long long fs_somaxconn(const char **source) {
    long long v = 0;
    if (FS_SOMAXCONN_PROC != NULL && read_proc_int(FS_SOMAXCONN_PROC, &v) == 0 && v > 0) {
        *source = FS_SOMAXCONN_PROC;
        return v;
    }
    if (FS_SOMAXCONN_SYSCTL != NULL && fs_sysctl_int(FS_SOMAXCONN_SYSCTL, &v) == 0 && v > 0) {
        *source = FS_SOMAXCONN_SYSCTL;
        return v;
    }
    *source = "SOMAXCONN (compile-time)";
    return FS_SOMAXCONN;
}

int fs_running_rules(void) {
    /* 0 = not known yet; otherwise rules id + 1.  Idempotent, so a race
       between threads only computes the same answer twice. */
    static int cached = 0;
    int c = FS_ATOMIC_LOAD(&cached);
    if (c == 0) {
        int id = FS_BUILD_RULES;
        if (id == FS_RULES_LINUX && fs_kernel_is_linux_pre_4_1())
            id = FS_RULES_LINUX_PRE_4_1;
        c = id + 1;
        FS_ATOMIC_STORE(&cached, c);
    }
    return c - 1;
}
