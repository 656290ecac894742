"""Listing every TCP listener: fastsock.listeners() vs ss vs psutil.

    python benchmarks/bench_listeners.py [--n 10000] [--rounds 11] [--cpu last]

Sets up N TCP listeners on 127.0.0.0/8 (RLIMIT_NOFILE raised as needed), in
a private network namespace of its own when it can make one (root on Linux:
it re-runs itself under ``unshare -n``, so only its listeners are there),
then each round, in rotating order, lists the namespace's TCP listeners
(IPv4 and IPv6) with:

  fastsock.listeners()        fastsock.listeners(family=AF_INET) + (AF_INET6):
                              one NETLINK_SOCK_DIAG dump per family, parsed in C;
                              backlog, pending and drops included
  ss -ltnmH + split           subprocess.run(["ss", "-ltnmH"]) and a split of
                              its output into lines and fields (iproute2; what
                              a Python user without fastsock would run)
  psutil                      [c for c in psutil.net_connections("tcp") if
                              c.status == "LISTEN"]: no backlog, queue or drops
                              (skipped when psutil is missing: pip install
                              'fastsock[bench]')
  fastsock processes=True     the same with the owning processes (walks
                              /proc/*/fd, as psutil does for its pids)

Each variant's call must find all N listeners (checked every round); the
garbage collector stays enabled, gc.collect() runs before each call.
Printed: each variant's best and median time, and the medians of the
per-round ratios (targets: <= 0.5x the ss path, <= 0.1x psutil).
"""

from __future__ import annotations

import argparse
import gc
import os
import resource
import shutil
import socket
import subprocess
import sys
import time

import _common as C

import fastsock

try:
    import psutil
except ImportError:
    psutil = None


def _in_namespace(argv: list[str]) -> bool:
    """Re-run this script under unshare -n (lo up); True if that was done."""
    if os.environ.get("FASTSOCK_BENCH_NETNS") or not sys.platform.startswith("linux") \
            or os.geteuid() != 0 or shutil.which("unshare") is None \
            or shutil.which("ip") is None:
        return False
    env = dict(os.environ, FASTSOCK_BENCH_NETNS="1")
    cmd = ["unshare", "-n", "sh", "-c", 'ip link set lo up && exec "$@"', "sh",
           sys.executable, os.path.abspath(__file__), *argv]
    r = subprocess.run(cmd, env=env, check=False)
    if r.returncode != 0:
        sys.exit(r.returncode)
    return True


def _listeners(n: int) -> list[socket.socket]:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = n + 256
    if soft < want:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (want, max(hard, want)))
        except (ValueError, OSError):
            sys.exit(f"need RLIMIT_NOFILE >= {want} (have {soft}/{hard}); run as root "
                     "or raise it with ulimit -n")
    socks = []
    for i in range(n):
        s = socket.socket()
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.bind((f"127.0.{1 + i // 250}.{1 + i % 250}", 7000))
        s.listen(16)
        socks.append(s)
    return socks


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--n", type=int, default=10_000, help="listeners to set up")
    ap.add_argument("--rounds", type=int, default=11)
    ap.add_argument("--cpu", default="last", help="CPU to pin to: a number, last, none")
    args = ap.parse_args(argv)
    if _in_namespace(argv):
        return 0
    where = "a private network namespace" if os.environ.get("FASTSOCK_BENCH_NETNS") \
        else "this network namespace (other listeners included)"
    pinned = C.pin(args.cpu)
    C.header("Listing TCP listeners: fastsock.listeners() vs ss -ltnmH vs psutil",
             n=args.n, rounds=args.rounds, where=where, cpu=pinned,
             psutil=getattr(psutil, "__version__", "missing"))
    socks = _listeners(args.n)
    ours = {s.getsockname() for s in socks}

    def check(found: set[tuple[str, int]], name: str) -> None:
        if not ours <= found:
            sys.exit(f"{name} missed {len(ours - found)} of our {len(ours)} listeners")

    def fs() -> float:
        gc.collect()
        t = time.perf_counter()
        recs = (fastsock.listeners(family=socket.AF_INET)
                + fastsock.listeners(family=socket.AF_INET6))
        dt = time.perf_counter() - t
        check({r.address[:2] for r in recs}, "fastsock.listeners()")
        return dt

    def fs_processes() -> float:
        gc.collect()
        t = time.perf_counter()
        recs = (fastsock.listeners(family=socket.AF_INET, processes=True)
                + fastsock.listeners(family=socket.AF_INET6, processes=True))
        dt = time.perf_counter() - t
        check({r.address[:2] for r in recs if r.processes}, "processes=True")
        return dt

    def ss() -> float:
        gc.collect()
        t = time.perf_counter()
        out = subprocess.run(["ss", "-ltnmH"], capture_output=True, text=True,
                             check=True).stdout
        rows = [ln.split() for ln in out.splitlines() if ln.startswith("LISTEN")]
        dt = time.perf_counter() - t
        check({(a.rpartition(":")[0], int(a.rpartition(":")[2])) for a in
               (r[3] for r in rows)}, "ss")
        return dt

    def ps() -> float:
        gc.collect()
        t = time.perf_counter()
        rows = [c for c in psutil.net_connections("tcp") if c.status == psutil.CONN_LISTEN]
        dt = time.perf_counter() - t
        check({(c.laddr.ip, c.laddr.port) for c in rows}, "psutil")
        return dt

    variants = {"fastsock.listeners()": fs}
    if shutil.which("ss"):
        variants["ss -ltnmH + split"] = ss
    else:
        print("# no ss (iproute2): that row skipped", file=sys.stderr)
    if psutil is not None:
        variants["psutil"] = ps
    variants["fastsock processes=True"] = fs_processes
    samples = C.interleave(args.rounds, variants)
    for s in socks:
        s.close()
    width = max(len(n) for n in samples)
    print(f"{'variant':<{width}}  {'best ms':>9}  {'median ms':>9}")
    for name, xs in samples.items():
        print(f"{name:<{width}}  {min(xs) * 1e3:9.2f}  {C.median(xs) * 1e3:9.2f}")
    f = samples["fastsock.listeners()"]
    if "ss -ltnmH + split" in samples:
        print(C.ratio_line("fastsock.listeners()", f, samples["ss -ltnmH + split"],
                           "ss -ltnmH + split", "<= 0.5x"))
    if "psutil" in samples:
        print(C.ratio_line("fastsock.listeners()", f, samples["psutil"], "psutil", "<= 0.1x"))
        print(C.ratio_line("fastsock processes=True", samples["fastsock processes=True"],
                           samples["psutil"], "psutil"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
