"""Memory: RSS before and after 1,000,000 accept + close cycles.

    python benchmarks/bench_memory.py [--n 1000000] [--warmup 20000]
                                      [--variants accept,accept_many,stdlib]

A client process connects to a listener on 127.0.0.1 N + WARMUP times, one
connection after the other; this process accepts and closes every
connection.  VmRSS (/proc/self/status) is read after the first WARMUP
connections (so that allocator pools, free lists and caches are already
populated) and again after the next N, both times after gc.collect().
Variants (each with its own listener and client, one after the other):

  accept        conn, addr = sock.accept(); conn.close()       (fastsock)
  accept_many   for conn, addr in sock.accept_many(64): conn.close()   (fastsock)
  stdlib        the same loop as "accept" on a stdlib socket (reference)

Printed: RSS before, after and the growth per variant (target for fastsock:
under 1 MiB over 1,000,000 accepts), and the connections per second.
"""

from __future__ import annotations

import argparse
import gc
import socket
import subprocess
import sys
import time

import _common as C

import fastsock

CLIENT = r"""
import socket, sys, time
port, n = int(sys.argv[1]), int(sys.argv[2])
addr = ("127.0.0.1", port)
done = 0
while done < n:
    s = socket.socket()
    try:
        s.connect(addr)
    except OSError:          # e.g. a full accept queue refused us: try again
        s.close()
        time.sleep(0.001)
        continue
    s.close()
    done += 1
"""


def run(variant: str, n: int, warmup: int) -> tuple[int, int, float]:
    cls = socket.socket if variant == "stdlib" else fastsock.socket
    lst = cls(socket.AF_INET, socket.SOCK_STREAM)
    lst.bind((C.LOOPBACK, 0))
    lst.listen(4096)
    client = subprocess.Popen([sys.executable, "-c", CLIENT, str(lst.getsockname()[1]),
                               str(n + warmup)])
    try:
        if variant == "accept_many":
            acc = lst.accept_many

            def serve(count: int) -> None:
                left = count
                while left:
                    for conn, addr in acc(64 if left > 64 else left):
                        conn.close()
                        left -= 1
        else:
            acc1 = lst.accept

            def serve(count: int) -> None:
                for _ in range(count):
                    conn, addr = acc1()
                    conn.close()

        serve(warmup)
        gc.collect()
        before = C.rss_kib()
        t0 = time.perf_counter()
        serve(n)
        elapsed = time.perf_counter() - t0
        gc.collect()
        after = C.rss_kib()
    finally:
        client.wait(timeout=60)
        lst.close()
    return before, after, n / elapsed


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--n", type=int, default=1_000_000)
    ap.add_argument("--warmup", type=int, default=20_000)
    ap.add_argument("--variants", default="accept,accept_many,stdlib")
    args = ap.parse_args(argv)
    variants = [v for v in args.variants.split(",") if v]
    C.header("memory: VmRSS around N accept + close cycles (client in another process)",
             N=args.n, warmup=args.warmup, build=fastsock._core.accept_build())
    print(f"{'variant':<12} {'RSS before':>11} {'RSS after':>10} {'growth':>9} {'conn/s':>9}")
    for v in variants:
        before, after, rate = run(v, args.n, args.warmup)
        growth = after - before
        target = "   target < 1024 KiB" if v != "stdlib" else ""
        print(f"{v:<12} {before:>7} KiB {after:>6} KiB {growth:>+5} KiB {rate:>9.0f}{target}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
