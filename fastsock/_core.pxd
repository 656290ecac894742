# Declarations only: what the compiled core calls.  Logic lives in _core.pyx.

cdef extern from "fs_platform.h" nogil:
    ctypedef unsigned int socklen_t
    ctypedef unsigned short sa_family_t
    ctypedef unsigned short in_port_t

    struct sockaddr:
        sa_family_t sa_family
    struct sockaddr_storage:
        sa_family_t ss_family
    struct in_addr:
        unsigned int s_addr
    struct sockaddr_in:
        sa_family_t sin_family
        in_port_t sin_port
        in_addr sin_addr
    struct in6_addr:
        pass
    struct sockaddr_in6:
        sa_family_t sin6_family
        in_port_t sin6_port
        unsigned int sin6_flowinfo
        in6_addr sin6_addr
        unsigned int sin6_scope_id
    struct sockaddr_un:
        sa_family_t sun_family
        char sun_path[1]
    struct pollfd:
        int fd
        short events
        short revents
    struct timespec:
        long tv_sec
        long tv_nsec

    const char *FS_PLATFORM_NAME
    const int FS_BUILD_RULES
    const int FS_SOMAXCONN
    const int FS_HAVE_ACCEPT4
    const int FS_HAVE_SOCK_CLOEXEC
    const int FS_HAVE_SOCK_NONBLOCK
    const int FS_SOCK_CLOEXEC
    const int FS_SOCK_NONBLOCK
    const int FS_HAVE_TCP_INFO
    const int FS_HAVE_SO_LISTENQLIMIT
    const int FS_HAVE_ABSTRACT_UNIX
    const size_t FS_UNIX_PATH_MAX
    const size_t FS_UNIX_PATH_OFFSET

    const int AF_INET
    const int AF_INET6
    const int AF_UNIX
    const int SOCK_STREAM
    const int SOL_SOCKET
    const int SO_ERROR
    const int INADDR_ANY
    const unsigned int INADDR_BROADCAST
    const in6_addr in6addr_any
    const short POLLIN
    const short POLLOUT
    const int CLOCK_MONOTONIC
    const int F_GETFL
    const int O_NONBLOCK
    const int EINTR
    const int EAGAIN
    const int EWOULDBLOCK
    const int EINPROGRESS
    const int EISCONN
    const int EADDRINUSE
    const int ECONNRESET

    const int FS_GIL_DISABLED
    int fs_load_acquire "FS_ATOMIC_LOAD_ACQUIRE"(int *p)
    void fs_store_release "FS_ATOMIC_STORE_RELEASE"(int *p, int v)

    int fs_socket_cloexec(int family, int type, int proto)
    int fs_accept_cloexec(int fd, sockaddr *sa, socklen_t *len)
    int fs_listen_queue(int fd, long long *pending, long long *limit)

    int c_bind "bind"(int fd, const sockaddr *addr, socklen_t len)
    int c_listen "listen"(int fd, int backlog)
    int c_connect "connect"(int fd, const sockaddr *addr, socklen_t len)
    int getsockopt(int fd, int level, int name, void *val, socklen_t *len)
    int getsockname(int fd, sockaddr *addr, socklen_t *len)
    int close(int fd)
    int fcntl(int fd, int cmd, ...)
    int poll(pollfd *fds, unsigned long nfds, int timeout)
    int clock_gettime(int clk, timespec *ts)
    int inet_pton(int af, const char *src, void *dst)
    const char *inet_ntop(int af, const void *src, char *dst, socklen_t size)
    unsigned short htons(unsigned short)
    unsigned short ntohs(unsigned short)
    unsigned int htonl(unsigned int)
    unsigned int ntohl(unsigned int)

cdef extern from "fs_backlog.h" nogil:
    ctypedef struct fs_backlog_rules:
        const char *name
        long long storage_max
        int zero_is_maximum
        int capacity_num
        int capacity_den
        int capacity_add
        const char *knob
    ctypedef struct fs_backlog_plan_t:
        long long passed
        long long effective
        long long capacity
        int flags
    const int FS_RULES_COUNT
    const int FS_BACKLOG_TRUNCATED
    const int FS_BACKLOG_NEGATIVE
    const int FS_BACKLOG_DEFAULTED
    const fs_backlog_rules *fs_backlog_rules_get(int id)
    int fs_backlog_plan(const fs_backlog_rules *rules, int defaulted, long long requested,
                        long long maximum, fs_backlog_plan_t *out)

cdef extern from "fs_addr.h" nogil:
    int fs_parse_ipv4(const char *s, size_t n, unsigned int *out)

cdef extern from "fs_sys.h" nogil:
    long long fs_somaxconn(const char **source)
    int fs_running_rules()

cdef extern from "fs_uring.h" nogil:
    int fs_uring_accept(int lfd, int n, int min, int *fds, sockaddr_storage *ss,
                        socklen_t *lens, int *err)
    int fs_uring_usable()
    void fs_uring_thread_enable(int enabled)
    long long fs_uring_batches()

cdef extern from "fs_platform.h" nogil:
    struct addrinfo:
        int ai_flags
        int ai_family
        int ai_socktype
        int ai_protocol
        socklen_t ai_addrlen
        sockaddr *ai_addr
        addrinfo *ai_next
    const int EAI_SYSTEM
    int getaddrinfo(const char *node, const char *service, const addrinfo *hints,
                    addrinfo **res)
    void freeaddrinfo(addrinfo *res)
    const char *gai_strerror(int code)

# The CPython object protocol used to build accepted socket objects without a
# Python-level __init__ ("accept into socket objects" in _core.pyx).  Public C
# API only; instance offsets come from the types' own member descriptors.
from cpython.object cimport PyObject

cdef extern from "Python.h":
    ctypedef struct PyMemberDef:
        const char *name
        int type
        Py_ssize_t offset
        int flags
    ctypedef struct PyMemberDescrObject:
        PyMemberDef *d_member
    ctypedef object (*fs_descrget "descrgetfunc")(PyObject *, PyObject *, PyObject *)
    ctypedef struct fs_type "PyTypeObject":
        Py_ssize_t tp_basicsize
        PyObject *(*tp_new)(fs_type *, PyObject *, PyObject *)
        int (*tp_init)(PyObject *, PyObject *, PyObject *) except -1
        fs_descrget tp_descr_get
    const char *PyUnicode_AsUTF8AndSize(object s, Py_ssize_t *size) except NULL
    bint PyUnicode_IS_ASCII(object s)
    long PyLong_AsLongAndOverflow(object o, int *overflow) except? -1
    long long PyLong_AsLongLongAndOverflow(object o, int *overflow) except? -1
    fs_type PyMemberDescr_Type
    fs_type *fs_type_of "Py_TYPE"(object o)
    bint PyType_IsSubtype(fs_type *a, fs_type *b)
    void PyObject_GC_UnTrack(void *op)
    void fs_incref "Py_INCREF"(PyObject *op)
    # what the PyObject_GC_New macro calls: the collector's allocation, untracked, unzeroed
    PyObject *_PyObject_GC_New(fs_type *tp)
    int PySys_Audit(const char *event, const char *format, ...)
    ctypedef PyObject *(*PyCFunction)(PyObject *, PyObject *)
    PyCFunction PyCFunction_GetFunction(object op) except? NULL
    PyObject *PyCFunction_GetSelf(object op) except? NULL
    int PyCFunction_GetFlags(object op) except? -1
    const int METH_NOARGS

cdef extern from "structmember.h":
    const int T_INT
    const int T_OBJECT_EX

cdef extern from "fs_diag.h" nogil:
    ctypedef struct fs_diag_rec:
        int family
        int type
        int state
        unsigned port
        unsigned scope_id
        unsigned char addr[16]
        int name_len
        char name[108]
        long long backlog
        long long pending
        long long drops
        long long uid
        unsigned long long inode
    const int FS_DIAG_INET
    const int FS_DIAG_UNIX
    const int FS_HAVE_SOCK_DIAG
    const int FS_HAVE_SO_MEMINFO
    int fs_diag_parse(const unsigned char *buf, size_t len, int kind, fs_diag_rec *out,
                      size_t max, int *done, int *err)
    size_t fs_diag_max_records(size_t len)
    int fs_diag_listeners(int family, fs_diag_rec **out, size_t *n)
    int fs_listener_queue(int fd, long long *pending, long long *limit)
    int fs_listener_drops(int fd, long long *drops)
