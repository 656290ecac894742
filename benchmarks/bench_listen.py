"""Listener setup: socket + bind + listen + close, fastsock vs the stdlib.

    python benchmarks/bench_listen.py [--n 2000] [--rounds 21] [--cpu last]

Each round, for each variant (the order rotates every round), N listeners
are set up and closed one after the other on 127.0.0.1 port 0, backlog 128
(the same value for both, so the kernel does the same work):

  stdlib socket.socket      s = socket.socket(); s.bind(addr); s.listen(128); s.close()
  fastsock.socket           the same four calls on fastsock.socket (drop-in)
  fastsock.listen()         s = fastsock.listen(addr, 128); s.close()  (reference:
                            it also sets SO_REUSEADDR, as socket.create_server does)
  stdlib create_server()    s = socket.create_server(addr, backlog=128); s.close()
                            (reference: the stdlib's one-call listener, the same
                            system calls as fastsock.listen() minus the read-back)
  C loop in this process    the stdlib's four system calls from C
                            (benchmarks/listen_loop.c, compiled here with the
                            system compiler, called through ctypes): what the
                            kernel costs (reference; skipped without a compiler)

fastsock's listen() also reads the backlog in force back from the kernel
(TCP_INFO on Linux), one more system call than the stdlib makes.  Every
variant runs on the same CPU (--cpu, as in bench_accept.py).  Printed:
median cost per setup and the median of the per-round ratios vs the stdlib.
"""

from __future__ import annotations

import argparse
import ctypes
import os
import socket
import sys
import time

import _common as C

import fastsock

ADDR = (C.LOOPBACK, 0)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--n", type=int, default=2000, help="setups per round")
    ap.add_argument("--rounds", type=int, default=21)
    ap.add_argument("--cpu", default="last",
                    help='run every variant on this CPU: a number, "last" (default) or "none"')
    args = ap.parse_args(argv)
    n = args.n
    placement = C.pin(args.cpu)
    C.header("listener setup: socket + bind + listen(128) + close on 127.0.0.1:0",
             N=n, rounds=args.rounds, cpu=placement)

    def drop_in(cls: type[socket.socket]) -> float:
        t0 = time.perf_counter_ns()
        for _ in range(n):
            s = cls()
            s.bind(ADDR)
            s.listen(128)
            s.close()
        t1 = time.perf_counter_ns()
        return (t1 - t0) / n

    def one_call(listen) -> float:
        t0 = time.perf_counter_ns()
        for _ in range(n):
            listen(ADDR, 128).close()
        t1 = time.perf_counter_ns()
        return (t1 - t0) / n

    def create_server(addr, backlog):
        return socket.create_server(addr, backlog=backlog)

    variants = {
        "stdlib socket.socket": lambda: drop_in(socket.socket),
        "fastsock.socket": lambda: drop_in(fastsock.socket),
        "fastsock.listen()": lambda: one_call(fastsock.listen),
        "stdlib create_server()": lambda: one_call(create_server),
    }
    tmp = C.tempdir()
    lib = C.compile_c("listen_loop.c", tmp.name, shared=True)
    if lib:
        setup = ctypes.CDLL(lib, use_errno=True).listen_setup
        setup.argtypes = [ctypes.c_long]
        setup.restype = ctypes.c_longlong

        def c_loop() -> float:
            ns = setup(n)
            if ns < 0:
                err = ctypes.get_errno()
                raise OSError(err, os.strerror(err))
            return ns / n
        variants["C loop in this process"] = c_loop
    try:
        res = C.interleave(args.rounds, variants)
    finally:
        tmp.cleanup()
    width = max(map(len, res))
    print(f"{'variant':<{width}}  median ns/setup")
    for name, xs in res.items():
        print(f"{name:<{width}}  {C.median(xs):10.0f}")
    base = res["stdlib socket.socket"]
    print(C.ratio_line("fastsock.socket", res["fastsock.socket"], base, "stdlib", "<= 0.90"))
    print(C.ratio_line("fastsock.listen()", res["fastsock.listen()"],
                       res["stdlib create_server()"], "stdlib create_server()"))
    if "C loop in this process" in res:
        print(C.ratio_line("stdlib socket.socket", base, res["C loop in this process"],
                           "C loop"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
