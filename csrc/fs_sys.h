/* fs_sys.h - small C helpers over the running system, one job each. */
#ifndef FS_SYS_H
#define FS_SYS_H

/*
 * The live system maximum backlog: net.core.somaxconn of this network
 * namespace (Linux), kern.ipc.soacceptqueue (FreeBSD), kern.ipc.somaxconn
 * (macOS, other BSDs), else the compile-time SOMAXCONN.  Never fails;
 * *source names where the value came from.
 */
long long fs_somaxconn(const char **source);

/* The rule set (fs_rules_id) for the running kernel. */
int fs_running_rules(void);

#endif /* FS_SYS_H */
