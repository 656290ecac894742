"""End to end: a minimal HTTP/1.0 server, one request per connection, driven
by wrk over 127.0.0.1: fastsock's accept loop vs the stdlib's.

    python benchmarks/bench_e2e.py [--rounds 7] [--duration 5] [--connections 32]

The server (a separate process, one thread, blocking sockets) runs

    while True:
        conn, addr = listener.accept()
        conn.recv(4096)                  # the request (wrk sends it in one piece)
        conn.sendall(RESPONSE)           # "HTTP/1.0 200 OK", Connection: close
        conn.close()

on a stdlib socket ("stdlib accept()") or a fastsock socket ("fastsock
accept()"); "fastsock accept_many()" serves every connection of
``listener.accept_many(64)`` the same way.  wrk -t1 -cC -dDs sends
"Connection: close" requests, so every request is a new connection:
requests/second = connections/second.  Each round runs every variant once
(fresh server; the order rotates every round).

Printed: median connections/second per variant and the median of the
per-round ratios vs the stdlib server (target for fastsock accept(): at
least 1.25x).  When wrk itself saturates a CPU first (on a 2-CPU machine it
usually does: it needs more CPU per connection than this server), the
connections/second ratio tends to 1 whatever the server costs, so the
server's own CPU time per connection (utime + stime from /proc/PID/stat over
the wrk run, divided by the requests wrk completed) and wrk's CPU use are
printed too: connections per server CPU-second is what the server could
sustain where the load generator is not the limit.  Needs wrk (Debian:
apt-get install wrk); without it the benchmark says so and exits 0.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
import time

import _common as C

RESPONSE = (b"HTTP/1.0 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 3\r\n"
            b"Connection: close\r\n\r\nok\n")

SERVER = r"""
import socket, sys
kind = sys.argv[1]
if kind == "stdlib":
    mod = socket
else:
    import fastsock as mod
RESPONSE = %r
lst = mod.socket(mod.AF_INET, mod.SOCK_STREAM)
lst.setsockopt(mod.SOL_SOCKET, mod.SO_REUSEADDR, 1)
lst.bind(("127.0.0.1", 0))
lst.listen(1024)
print(lst.getsockname()[1], flush=True)

def serve(conn):
    try:
        conn.recv(4096)
        conn.sendall(RESPONSE)
    except OSError:
        pass
    conn.close()

if kind == "fastsock-many":
    acc = lst.accept_many
    while True:
        for conn, addr in acc(64):
            serve(conn)
else:
    acc = lst.accept
    while True:
        conn, addr = acc()
        serve(conn)
""" % (RESPONSE,)

KINDS = {"stdlib accept()": "stdlib", "fastsock accept()": "fastsock",
         "fastsock accept_many()": "fastsock-many"}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rounds", type=int, default=7)
    ap.add_argument("--duration", type=float, default=5.0, help="seconds per wrk run")
    ap.add_argument("--connections", type=int, default=32)
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args(argv)
    C.header("end to end: HTTP/1.0, one request per connection, wrk over 127.0.0.1",
             rounds=args.rounds, wrk=f"-t{args.threads} -c{args.connections} "
             f"-d{args.duration:g}s")
    wrk = shutil.which("wrk")
    if not wrk:
        print("# wrk not found (Debian: apt-get install wrk): end-to-end benchmark skipped")
        return 0
    errors: dict[str, list[str]] = {}
    cpu_per_conn: dict[str, list[float]] = {}
    wrk_cpu: dict[str, list[float]] = {}
    tick = os.sysconf("SC_CLK_TCK")

    def cpu_seconds(pid: int) -> float:
        """utime + stime of a process, from /proc/PID/stat."""
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / tick

    def variant(name: str):
        def go() -> float:
            srv = subprocess.Popen([sys.executable, "-c", SERVER, KINDS[name]],
                                   stdout=subprocess.PIPE, text=True)
            try:
                port = int(srv.stdout.readline())
                c0, t0 = cpu_seconds(srv.pid), time.monotonic()
                w = subprocess.Popen(
                    [wrk, f"-t{args.threads}", f"-c{args.connections}",
                     f"-d{args.duration:g}s", "-H", "Connection: close",
                     f"http://127.0.0.1:{port}/"],
                    stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
                time.sleep(min(0.5, args.duration / 4))
                w0, tw0 = cpu_seconds(w.pid), time.monotonic()
                time.sleep(args.duration / 2)
                w1, tw1 = cpu_seconds(w.pid), time.monotonic()
                out, err = w.communicate()
                c1 = cpu_seconds(srv.pid)
                if w.returncode != 0:
                    raise RuntimeError(f"wrk failed:\n{out}\n{err}")
            finally:
                srv.kill()
                srv.wait()
            m = re.search(r"Requests/sec:\s*([\d.]+)", out)
            total = re.search(r"(\d+) requests in", out)
            if not m or not total:
                raise RuntimeError(f"no Requests/sec in wrk output:\n{out}")
            bad = re.search(r"Socket errors:.*|Non-2xx or 3xx responses:.*", out)
            if bad:
                errors.setdefault(name, []).append(bad.group(0))
            cpu_per_conn.setdefault(name, []).append((c1 - c0) / max(1, int(total.group(1))))
            wrk_cpu.setdefault(name, []).append((w1 - w0) / (tw1 - tw0))
            return float(m.group(1))
        return go

    res = C.interleave(args.rounds, {name: variant(name) for name in KINDS}, warmup=0)
    width = max(map(len, res))
    print(f"{'server':<{width}}  {'connections/s':>13}  {'server CPU us/conn':>18}"
          f"  {'wrk CPU':>7}   (medians)")
    for name, xs in res.items():
        print(f"{name:<{width}}  {C.median(xs):13.0f}  {C.median(cpu_per_conn[name]) * 1e6:18.2f}"
              f"  {C.median(wrk_cpu[name]) * 100:6.0f}%")
    base = res["stdlib accept()"]
    # higher is better: ratio = fastsock rate / stdlib rate, per round
    print(C.ratio_line("fastsock accept()", res["fastsock accept()"], base,
                       "stdlib accept() (connections/s)", ">= 1.25"))
    print(C.ratio_line("fastsock accept_many()", res["fastsock accept_many()"], base,
                       "stdlib accept() (connections/s)"))
    # connections per server CPU-second: stdlib CPU per connection / fastsock's
    std_cpu = cpu_per_conn["stdlib accept()"]
    for name in ("fastsock accept()", "fastsock accept_many()"):
        print(C.ratio_line(name, std_cpu, cpu_per_conn[name],
                           "stdlib accept() (connections per server CPU-second)"))
    for name, errs in errors.items():
        print(f"# {name}: wrk reported {len(errs)}x: {errs[0]}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
