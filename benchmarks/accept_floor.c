/*
 * accept_floor.c - a reference row for benchmarks/bench_accept.py: the floor
 * of any batch accept that Python code iterates.
 *
 * accept_floor.pairs(fd, max, shaped) makes the accept4(..., SOCK_CLOEXEC)
 * calls a batch accept makes (up to min(max, 64) in a row, the peer address
 * taken, the GIL released once, stopping at the first failure) and returns a
 * list with one item per connection:
 *   shaped == 0: references to ONE shared pair; nothing is built per
 *     connection.  What this costs over the C loop is the call, the list and
 *     the benchmark's own `for conn, addr in ...: keep(conn)`, which every
 *     accept_many() variant pays too;
 *   shaped == 1: a new `(None, (host, port))` per connection (IPv4; the host
 *     string reused while the peer's address repeats): the objects the
 *     result's shape requires, all but the socket object.
 * The descriptors are kept here; close_all() closes them after the clock
 * stopped.
 *
 * Built by the benchmark as a CPython extension with the system compiler and
 * this interpreter's headers; the row is skipped where that fails.  Linux
 * and the BSDs (accept4).
 */
#define PY_SSIZE_T_CLEAN
#define _GNU_SOURCE 1
#include <Python.h>
#include <errno.h>
#include <sys/socket.h>
#include <unistd.h>
#include <arpa/inet.h>
#include <netinet/in.h>

#define BATCH 64
#define KEPT_MAX 1000000

static int *kept;
static Py_ssize_t nkept;
static PyObject *shared_pair;
static PyObject *last_host;
static in_addr_t last_addr;

/* (None, (host, port)) for an IPv4 peer; a new reference or NULL. */
static PyObject *shaped_pair(const struct sockaddr_in *sin) {
    char text[INET_ADDRSTRLEN];
    if (last_host == NULL || sin->sin_addr.s_addr != last_addr) {
        if (inet_ntop(AF_INET, &sin->sin_addr, text, sizeof(text)) == NULL)
            return PyErr_SetFromErrno(PyExc_OSError);
        Py_XDECREF(last_host);
        last_host = PyUnicode_FromString(text);
        if (last_host == NULL)
            return NULL;
        last_addr = sin->sin_addr.s_addr;
    }
    PyObject *port = PyLong_FromLong(ntohs(sin->sin_port));
    PyObject *addr = port ? PyTuple_New(2) : NULL;
    PyObject *pair = addr ? PyTuple_New(2) : NULL;
    if (pair == NULL) {
        Py_XDECREF(addr);
        Py_XDECREF(port);
        return NULL;
    }
    Py_INCREF(last_host);
    PyTuple_SET_ITEM(addr, 0, last_host);
    PyTuple_SET_ITEM(addr, 1, port);
    Py_INCREF(Py_None);
    PyTuple_SET_ITEM(pair, 0, Py_None);
    PyTuple_SET_ITEM(pair, 1, addr);
    return pair;
}

static PyObject *pairs(PyObject *self, PyObject *args) {
    int fd, max, shaped, got = 0, err = 0, i;
    struct sockaddr_storage ss[BATCH];
    socklen_t lens[BATCH];
    int fds[BATCH];
    if (!PyArg_ParseTuple(args, "iip", &fd, &max, &shaped))
        return NULL;
    if (max > BATCH)
        max = BATCH;
    if (nkept + max > KEPT_MAX)
        return PyErr_Format(PyExc_RuntimeError, "more than %d descriptors kept", KEPT_MAX);
    Py_BEGIN_ALLOW_THREADS
    while (got < max) {
        lens[got] = sizeof(ss[0]);
        int nfd = accept4(fd, (struct sockaddr *)&ss[got], &lens[got], SOCK_CLOEXEC);
        if (nfd < 0) {
            err = errno;
            break;
        }
        fds[got++] = nfd;
    }
    Py_END_ALLOW_THREADS
    for (i = 0; i < got; i++)
        kept[nkept++] = fds[i];
    if (got == 0 && err != EAGAIN && err != EWOULDBLOCK && err != EINTR) {
        errno = err;
        return PyErr_SetFromErrno(PyExc_OSError);
    }
    PyObject *list = PyList_New(got);
    if (list == NULL)
        return NULL;
    for (i = 0; i < got; i++) {
        PyObject *item = shared_pair;
        if (!shaped)
            Py_INCREF(item);
        else if (ss[i].ss_family != AF_INET)
            item = PyErr_Format(PyExc_ValueError, "shaped pairs: IPv4 only");
        else
            item = shaped_pair((const struct sockaddr_in *)&ss[i]);
        if (item == NULL) {
            Py_DECREF(list);        /* the descriptors stay kept for close_all() */
            return NULL;
        }
        PyList_SET_ITEM(list, i, item);
    }
    return list;
}

static PyObject *close_all(PyObject *self, PyObject *unused) {
    while (nkept > 0)
        close(kept[--nkept]);
    Py_RETURN_NONE;
}

static PyMethodDef methods[] = {
    {"pairs", pairs, METH_VARARGS, "pairs(fd, max, shaped): accept a batch: one shared pair, or (None, address) each"},
    {"close_all", close_all, METH_NOARGS, "close every descriptor pairs() accepted"},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {PyModuleDef_HEAD_INIT, "accept_floor", NULL, -1, methods};

PyMODINIT_FUNC PyInit_accept_floor(void) {
    kept = PyMem_RawMalloc(sizeof(int) * KEPT_MAX);
    if (kept == NULL)
        return PyErr_NoMemory();
    shared_pair = Py_BuildValue("(OO)", Py_None, Py_None);
    if (shared_pair == NULL)
        return NULL;
    return PyModule_Create(&module);
}
