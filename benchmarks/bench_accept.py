"""accept(): a C accept4() loop vs the stdlib vs fastsock, same queue, same K.

    python benchmarks/bench_accept.py [--k 1000] [--rounds 21] [--batch 64] [--cpu last]
        [--clock wall|cpu]

Each round, for each variant (the order rotates every round): K connections
are queued on ONE listening socket on 127.0.0.1 (non-blocking connects from
this process, all completed before the clock starts; the backlog holds K),
then the variant drains the queue, accepting every connection and keeping
it (the connection; the address is dropped, as a server loop does); the
clock stops, the connections are closed, and the drain time is divided by
K.  All variants use descriptors of the same listening socket, so they
drain the same kernel queue the same way:

  C accept4 loop            accept4(fd, &addr, &len, SOCK_CLOEXEC) K times in a
                            separate C process (benchmarks/accept4_loop.c,
                            compiled here with the system compiler): the
                            baseline the ratios are against
  C io_uring loop           the same drain in a separate C process through
                            io_uring: batches of 64 IORING_OP_ACCEPT SQEs per
                            io_uring_enter(2) (benchmarks/uring_accept_loop.c,
                            raw system calls): the reference of
                            accept_many() (skipped where io_uring is absent
                            or refused)
  C loop in this process    the same C function called once through ctypes:
                            the kernel's cost inside a Python process (reference)
  stdlib _accept()          the stdlib's bare (fd, addr) accept, no socket
                            object: the floor of a Python-level accept (reference)
  stdlib accept()           conn, addr = sock.accept(); keep(conn)
  fastsock accept()         conn, addr = sock.accept(); keep(conn)
  core accept_many(), fds   for fd, addr in _core.accept_many(fd, AF_INET, BATCH, 0.0):
                            keep(fd) -- the same batches without socket objects
                            (reference)
  floor: batch, no objects  for conn, addr in accept_floor.pairs(fd, BATCH, False):
                            keep(conn) (benchmarks/accept_floor.c, built here
                            as an extension): the same accept4 batches
                            returning a list of ONE shared pair, nothing built
                            per connection: the floor of any batch call this
                            loop iterates: the call, the list, the loop (reference)
  floor + pair, address     the same with (None, (host, port)) built per
                            connection: every object the result's shape
                            requires but the socket object (reference)
  fastsock accept_many()    for conn, addr in sock.accept_many(BATCH): keep(conn)
                            until K are taken, on a non-blocking listener
                            (--blocking-many adds a blocking one).  Where the
                            kernel has io_uring's accept that cannot wait
                            (Linux 6.10+), a batch takes 4 with accept4 and
                            the rest with one io_uring_enter(2)
                            (the header's "batches" says which); the accept4
                            loop of the C baseline and of the floor rows makes
                            one system call per connection
  fastsock accept_many(), accept4 batches
                            the same with io_uring turned off for the thread
                            (_core.thread_uring(False)): the A/B of the two
                            ways, same run (only where batches=io_uring)

The process and the C baseline it starts run pinned to one CPU (--cpu), the
same for every variant: no migrations, a narrower spread between rounds.

--clock cpu times each drain by the CPU time of the thread that drains
(CLOCK_THREAD_CPUTIME_ID, in the C programs and in Python alike) instead of
the wall clock: on a machine other processes keep busy, time spent preempted
is left out, which wall-clock figures cannot do.  It leaves out work the
kernel does in other threads (io_uring's io-wq workers, if a batch were
punted to them: with the queue pre-filled, the accepts complete inline).

Printed: each variant's median cost per connection over the rounds, and the
median of the per-round ratios (variant / C loop, variant / stdlib accept(),
and accept_many() / the C io_uring loop).
Garbage collection stays enabled; gc.collect() runs before each drain.
"""

from __future__ import annotations

import argparse
import ctypes
import os
import socket
import subprocess
import sys
import time
from functools import partial

import _common as C

import fastsock


def _c_child(exe: str, lst: socket.socket, cflag: list[str]) -> subprocess.Popen[str]:
    """One of the C loop programs on a duplicate of the listener, driven
    through its stdin ("K\n": drain K connections) and stdout (nanoseconds)."""
    fd = os.dup(lst.fileno())
    child = subprocess.Popen([exe, str(fd), *cflag], pass_fds=(fd,), stdin=subprocess.PIPE,
                             stdout=subprocess.PIPE, text=True)
    os.close(fd)
    return child


def _c_drain(child: subprocess.Popen[str], lst: socket.socket, k: int):
    """The variant: fill the queue with k connections, let the C child drain
    it, return its nanoseconds per connection."""
    def drain() -> float:
        clients = C.fill(lst, k)
        child.stdin.write(f"{k}\n")
        child.stdin.flush()
        ns = int(child.stdout.readline())
        C.close_all(clients)
        return ns / k
    return drain


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--k", type=int, default=1000, help="connections per drain")
    ap.add_argument("--rounds", type=int, default=21)
    ap.add_argument("--batch", type=int, default=64, help="accept_many() max")
    ap.add_argument("--blocking-many", action="store_true",
                    help="also time accept_many() on a blocking listener")
    ap.add_argument("--no-c", action="store_true", help="skip the C rows")
    ap.add_argument("--cpu", default="last",
                    help='run every variant on this CPU: a number, "last" (default) or "none"')
    ap.add_argument("--clock", choices=("wall", "cpu"), default="wall",
                    help="time drains by the wall clock (default) or the thread's CPU time")
    args = ap.parse_args(argv)
    k, batch = args.k, args.batch
    clock = time.thread_time_ns if args.clock == "cpu" else time.perf_counter_ns
    cflag = ["cpu"] if args.clock == "cpu" else []
    placement = C.pin(args.cpu)

    std = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    std.bind((C.LOOPBACK, 0))
    std.listen(k + 16)
    fs = fastsock.socket(std.family, std.type, std.proto, fileno=os.dup(std.fileno()))
    fs_nb = fastsock.socket(std.family, std.type, std.proto, fileno=os.dup(std.fileno()))
    C.header("accept: drain a pre-filled loopback accept queue (accept and keep; "
             "close after the clock stops)", K=k, rounds=args.rounds, batch=batch,
             build=fastsock._core.accept_build(), batches=fastsock._core.accept_batching(),
             cpu=placement, clock=args.clock)

    variants = {}
    tmp = C.tempdir()
    child = uchild = None
    exe = lib = ext = uexe = None
    if not args.no_c:
        exe = C.compile_c("accept4_loop.c", tmp.name)
        uexe = exe and C.compile_c("uring_accept_loop.c", tmp.name)
        lib = exe and C.compile_c("accept4_loop.c", tmp.name, shared=True)
        ext = exe and C.compile_c("accept_floor.c", tmp.name, extension=True)
    child = exe and _c_child(exe, std, cflag)
    if child:
        variants["C accept4 loop"] = _c_drain(child, std, k)
    uchild = uexe and _c_child(uexe, std, cflag)
    if uchild and uchild.stdout.readline().strip() != "ready":     # no io_uring here
        uchild.stdin.close()
        uchild.wait()
        uchild = None
        print("# io_uring_setup failed: C io_uring row skipped")
    if uchild:
        variants["C io_uring loop"] = _c_drain(uchild, std, k)
    if lib:
        clib = ctypes.CDLL(lib, use_errno=True)
        clib.accept4_set_clock(int(args.clock == "cpu"))
        drain = clib.accept4_drain
        drain.argtypes = [ctypes.c_int, ctypes.c_long]
        drain.restype = ctypes.c_longlong

        def c_inproc() -> float:
            clients = C.fill(std, k)
            ns = drain(std.fileno(), k)
            C.close_all(clients)
            if ns < 0:
                raise OSError(ctypes.get_errno(), "accept4")
            return ns / k
        variants["C loop in this process"] = c_inproc

    def std_raw() -> float:
        clients = C.fill(std, k)
        out: list = []
        acc, keep = std._accept, out.append
        t0 = clock()
        for _ in range(k):
            fd, addr = acc()
            keep(fd)
        t1 = clock()
        for fd in out:
            os.close(fd)
        C.close_all(clients)
        return (t1 - t0) / k

    def one_by_one(listener: socket.socket) -> float:
        clients = C.fill(std, k)
        out: list = []
        acc, keep = listener.accept, out.append
        t0 = clock()
        for _ in range(k):
            conn, addr = acc()
            keep(conn)
        t1 = clock()
        for conn in out:
            conn.close()
        C.close_all(clients)
        return (t1 - t0) / k

    def batched(listener: socket.socket, timeout: float | None, call, close) -> float:
        """Drain with a batch call: ``call()`` returns one batch of pairs."""
        clients = C.fill(std, k)
        listener.settimeout(timeout)   # O_NONBLOCK is shared by the dups: set per turn
        out: list = []
        keep = out.append
        t0 = clock()
        while len(out) < k:
            for conn, addr in call():
                keep(conn)
        t1 = clock()
        listener.settimeout(None)
        close(out)
        C.close_all(clients)
        return (t1 - t0) / k

    def close_sockets(out: list) -> None:
        for conn in out:
            conn.close()

    def close_fds(out: list) -> None:
        for fd in out:
            os.close(fd)

    def many(listener: fastsock.socket, timeout: float | None) -> float:
        return batched(listener, timeout, partial(listener.accept_many, batch), close_sockets)

    def without_uring(drain) -> float:
        fastsock._core.thread_uring(False)
        try:
            return drain()
        finally:
            fastsock._core.thread_uring(True)

    def core_many() -> float:
        call = partial(fastsock._core.accept_many, fs_nb.fileno(), std.family, batch, 0.0)
        return batched(fs_nb, 0.0, call, close_fds)

    def floor(pairs, close_all, shaped: bool) -> float:
        return batched(fs_nb, 0.0, partial(pairs, fs_nb.fileno(), batch, shaped),
                       lambda out: close_all())

    variants["stdlib _accept()"] = std_raw
    variants["stdlib accept()"] = lambda: one_by_one(std)
    variants["fastsock accept()"] = lambda: one_by_one(fs)
    variants["core accept_many(), fds"] = core_many
    if ext:
        fl = C.load_extension(ext, "accept_floor")
        variants["floor: batch, no objects"] = lambda: floor(fl.pairs, fl.close_all, False)
        variants["floor + pair, address"] = lambda: floor(fl.pairs, fl.close_all, True)
    variants["fastsock accept_many()"] = lambda: many(fs_nb, 0.0)
    if fastsock._core.accept_batching() == "io_uring":
        variants["fastsock accept_many(), accept4 batches"] = lambda: without_uring(
            partial(many, fs_nb, 0.0))
    if args.blocking_many:
        variants["fastsock accept_many(), blocking listener"] = lambda: many(fs, None)

    try:
        res = C.interleave(args.rounds, variants)
    finally:
        for proc in (child, uchild):
            if proc:
                proc.stdin.close()
                proc.wait()
        tmp.cleanup()
        fs.close()
        fs_nb.close()
        std.close()

    width = max(map(len, res))
    print(f"{'variant':<{width}}  median ns/conn")
    for name, xs in res.items():
        print(f"{name:<{width}}  {C.median(xs):10.0f}")
    targets = {"fastsock accept()": "<= 1.15"}
    base = res.get("C accept4 loop")
    if base:
        for name, xs in res.items():
            if name != "C accept4 loop":
                print(C.ratio_line(name, xs, base, "C loop", targets.get(name, "")))
    std_s = res["stdlib accept()"]
    print(C.ratio_line("fastsock accept()", res["fastsock accept()"], std_s,
                       "stdlib accept()", "<= 0.60"))
    print(C.ratio_line("fastsock accept_many()", res["fastsock accept_many()"], std_s,
                       "stdlib accept()"))
    uring = res.get("C io_uring loop")
    if uring:
        for name in ("fastsock accept_many()", "fastsock accept_many(), accept4 batches",
                     "core accept_many(), fds", "C accept4 loop"):
            if name in res:
                print(C.ratio_line(name, res[name], uring, "C io_uring loop",
                                   "<= 1.10" if name == "fastsock accept_many()" else ""))
    return 0


if __name__ == "__main__":
    sys.exit(main())
