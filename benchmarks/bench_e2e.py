"""End to end: a minimal HTTP/1.0 server, one request per connection, driven
by wrk over 127.0.0.1: fastsock's accept loop vs the stdlib's.

    python benchmarks/bench_e2e.py [--rounds 7] [--duration 5] [--connections 64]
        [--threads N] [--placement auto|quota|shared|split|none] [--server-cpu 0.5]

The server (a separate process, one thread, blocking sockets) runs

    while True:
        conn, addr = listener.accept()
        conn.recv(4096)                  # the request (wrk sends it in one piece)
        conn.sendall(RESPONSE)           # "HTTP/1.0 200 OK", Connection: close
        conn.close()

on a stdlib socket ("stdlib accept()") or, with the same code and only the
module swapped, on a fastsock socket ("fastsock accept()": the like-for-like
comparison).  "fastsock accept_many()" serves every connection of
``listener.accept_many(64)`` the same way: a fastsock-only feature, not
like-for-like (without io_uring's accept that cannot wait, a blocking
listener gives it one connection per call).  "C reference"
(benchmarks/e2e_server.c, built when a C compiler is present; --no-c skips
it) is the same loop in C: what the setup
gives a server whose accept loop costs nothing in user space.  wrk sends
"Connection: close" requests, so every request is a new connection:
requests/second = connections/second.  Each round runs every variant once
(fresh server, order rotated every round); wrk must report no socket errors
and no non-2xx responses (printed if it does).

Where the CPUs go decides what connections/second measure.  Over loopback
the kernel work of a packet runs in the sender's context, so wrk pays for the
whole handshake (the server's SYN and ACK processing and child socket
included), for its request's delivery and for the server's TIME_WAIT: on the
2-vCPU machine of the README wrk needs 32-58 us of CPU per connection, more
than any of these servers (12-33 us, mostly kernel).  So with wrk on a CPU of
its own it saturates first and every server, even the C one, gets about the
same connections/second.  --placement chooses:

  quota   (the default where a cgroup can be made, e.g. as root) the server
          gets a fixed CPU budget (--server-cpu, 0.5 CPU: a cgroup CPU quota,
          as a container CPU limit would) and wrk -tNCPU the rest, unpinned:
          the server is the bottleneck, so connections/s = budget / server
          CPU per connection, and the connections/s ratio restates the server
          CPU ratio as throughput at a fixed budget.
  shared  (the default otherwise) the server is pinned to the last CPU and
          wrk -tNCPU runs on all of them: the server's CPU saturates, but it
          shares it with a wrk thread, which dilutes the ratio.
  split   wrk on all CPUs but the last (-t NCPU-1), the server on the last:
          wrk-bound on 2 CPUs (ratio ~1).
  none    no pinning, wrk -t1 unless --threads (the earlier default): wrk-bound
          on 2 CPUs with -t1; with -t2 all CPUs saturate, and the ratio mixes
          wrk's cost into both sides.

On loopback the server's CPU per connection leaves out its share of the
handshake and TIME_WAIT (charged to wrk, as above), which a server behind a
real network card pays itself: there the same code saves the same
microseconds out of a larger total, so expect a smaller ratio than on
loopback.  See benchmarks/e2e_notes.md for the measurements behind this.

Printed: the placement, then per variant the medians of connections/s,
server CPU per connection (from /proc/PID/schedstat over the wrk run, divided
by the requests wrk completed), server and wrk CPU use and which side
saturated (server, the server's CPU, wrk, all CPUs or neither); then the
per-round ratios vs the stdlib server, for connections/s and for connections
per server CPU-second (what the server could sustain wherever the load
generator is not the limit).  A run during which other processes used more
than 0.15 CPU is repeated (up to --retries times); each run first waits
(bounded) for the machine to be idle.  Needs wrk (Debian: apt-get install
wrk); without it the benchmark says so and exits 0.
"""

from __future__ import annotations

import argparse
import ctypes
import importlib.util
import math
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
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

STDLIB, FASTSOCK, MANY, CREF = ("stdlib accept()", "fastsock accept()",
                                "fastsock accept_many()", "C reference")
KINDS = {STDLIB: "stdlib", FASTSOCK: "fastsock", MANY: "fastsock-many"}
WHAT = {FASTSOCK: "like-for-like: same server code, socket module swapped",
        MANY: "fastsock-only feature: accept_many(64)",
        CREF: "reference: the same loop in C"}
MAX_FOREIGN = 0.15       # CPUs other processes may use during a run before it is repeated
TICK = os.sysconf("SC_CLK_TCK")


# ---- CPU accounting -----------------------------------------------------------

def proc_cpu(pid: int) -> float:
    """CPU seconds of a process: /proc/PID/schedstat (ns), else utime+stime."""
    try:
        with open(f"/proc/{pid}/schedstat") as f:
            return int(f.read().split()[0]) / 1e9
    except (OSError, ValueError, IndexError):
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / TICK


def cpu_times() -> dict[str, tuple[int, int]]:
    """(busy, total) clock ticks per CPU line of /proc/stat ("cpu", "cpu0", ...)."""
    out = {}
    with open("/proc/stat") as f:
        for line in f:
            if not line.startswith("cpu"):
                break
            name, *vals = line.split()
            v = [int(x) for x in vals[:8]]
            out[name] = (sum(v) - v[3] - v[4], sum(v))
    return out


def busy_cpus(a: dict[str, tuple[int, int]], b: dict[str, tuple[int, int]],
              which: str = "cpu") -> float:
    """CPUs kept busy between two cpu_times() samples (all CPUs, or one)."""
    return (b[which][0] - a[which][0]) / TICK


def wait_idle(max_wait: float, limit: float = 0.1) -> None:
    """Wait (at most max_wait seconds) for a half second in which the machine
    used less than ``limit`` CPUs."""
    deadline = time.monotonic() + max_wait
    while time.monotonic() < deadline:
        a, t0 = cpu_times(), time.monotonic()
        time.sleep(0.5)
        if busy_cpus(a, cpu_times()) / (time.monotonic() - t0) < limit:
            return


def die_with_parent() -> None:
    """In a child before exec: get SIGKILL when the benchmark dies (Linux
    PR_SET_PDEATHSIG), so no server outlives an interrupted run."""
    try:
        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL, 0, 0, 0)
    except (OSError, AttributeError):
        pass


# ---- a CPU budget for the server (cgroup) ------------------------------------------

class CpuQuota:
    """A cgroup whose members may use ``cpus`` CPUs (cgroup v2 cpu.max, or the
    v1 cpu controller's CFS quota), created under this process's own cgroup
    and removed by close().  ``error`` says why none could be made."""

    PERIOD_US = 100_000
    PREFIX = "fastsock-bench-e2e-"

    def __init__(self, cpus: float) -> None:
        self.cpus, self.path, self.procs, self.error = cpus, "", "", ""
        errors = []
        for version, base in self._bases():
            self._remove_stale(base)
            path = os.path.join(base, f"{self.PREFIX}{os.getpid()}")
            try:
                os.mkdir(path)
            except OSError as e:
                errors.append(f"{base}: {e.strerror}")
                continue
            try:
                quota = max(1000, int(cpus * self.PERIOD_US))
                if version == 2:
                    self._write(os.path.join(path, "cpu.max"), f"{quota} {self.PERIOD_US}")
                else:
                    self._write(os.path.join(path, "cpu.cfs_period_us"), str(self.PERIOD_US))
                    self._write(os.path.join(path, "cpu.cfs_quota_us"), str(quota))
            except OSError as e:
                os.rmdir(path)
                errors.append(f"{path}: {e.strerror}")
                continue
            self.path, self.procs = path, os.path.join(path, "cgroup.procs")
            self.version = version
            return
        self.error = "; ".join(errors) or "no cgroup cpu controller mounted"

    @classmethod
    def _remove_stale(cls, base: str) -> None:
        """Remove the (empty) cgroups of earlier runs that were killed."""
        try:
            names = [n for n in os.listdir(base) if n.startswith(cls.PREFIX)]
        except OSError:
            return
        for name in names:
            pid = name[len(cls.PREFIX):]
            if pid.isdigit() and not os.path.exists(f"/proc/{pid}"):
                try:
                    os.rmdir(os.path.join(base, name))
                except OSError:
                    pass

    @staticmethod
    def _write(path: str, text: str) -> None:
        with open(path, "w") as f:
            f.write(text)

    @staticmethod
    def _bases() -> list[tuple[int, str]]:
        """(version, directory of this process's cgroup) for each mounted
        hierarchy with a cpu controller that a child cgroup could use."""
        try:
            with open("/proc/self/cgroup") as f:
                own = [line.rstrip("\n").split(":", 2) for line in f]
            with open("/proc/self/mounts") as f:
                mounts = [line.split() for line in f]
        except OSError:
            return []
        out = []
        for _, mnt, fstype, opts, *_ in mounts:
            if fstype == "cgroup2":
                rel = next((p for h, c, p in own if h == "0"), None)
                base = mnt + (rel or "/").rstrip("/")
                try:
                    with open(os.path.join(base, "cgroup.subtree_control")) as f:
                        if "cpu" in f.read().split() and rel is not None:
                            out.append((2, base))
                except OSError:
                    pass
            elif fstype == "cgroup" and "cpu" in opts.split(","):
                rel = next((p for h, c, p in own if "cpu" in c.split(",")), None)
                if rel is not None:
                    out.append((1, mnt + rel.rstrip("/")))
        return out

    def join(self) -> None:
        """Move the calling process into the cgroup (a preexec_fn)."""
        self._write(self.procs, str(os.getpid()))

    def close(self) -> None:
        if self.path:
            for _ in range(50):       # the last member may take a moment to go
                try:
                    os.rmdir(self.path)
                    break
                except OSError:
                    time.sleep(0.02)
            self.path = ""


# ---- one wrk run against one fresh server ------------------------------------------

def fmt_cpus(cpus: list[int] | None) -> str:
    if cpus is None:
        return "any CPU"
    return "CPU " + ",".join(map(str, cpus))


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rounds", type=int, default=7)
    ap.add_argument("--duration", type=float, default=5.0,
                    help="seconds per wrk run (wrk takes whole seconds: rounded up)")
    ap.add_argument("--connections", type=int, default=64)
    ap.add_argument("--threads", type=int, default=None,
                    help="wrk threads (default: the placement's: NCPU, NCPU-1 or 1)")
    ap.add_argument("--placement", default="auto",
                    choices=("auto", "quota", "shared", "split", "none"))
    ap.add_argument("--server-cpu", type=float, default=0.5,
                    help="the server's CPU budget with --placement quota")
    ap.add_argument("--retries", type=int, default=2,
                    help="repeat a run this often while other processes used > "
                         f"{MAX_FOREIGN} CPU during it")
    ap.add_argument("--no-c", action="store_true", help="skip the C reference server")
    args = ap.parse_args(argv)
    seconds = max(1, math.ceil(args.duration))

    if hasattr(os, "sched_getaffinity"):
        cpus = sorted(os.sched_getaffinity(0))
    else:                                   # no CPU pinning here (macOS): only quota or none
        cpus = list(range(os.cpu_count() or 1))
    ncpu = len(cpus)
    placement = args.placement
    quota = None
    note = ""
    if placement in ("auto", "quota"):
        quota = CpuQuota(args.server_cpu)
        if not quota.path:
            note = f"# no cgroup for --placement quota ({quota.error}): using shared"
            quota, placement = None, "shared"
        else:
            placement = "quota"
    if placement in ("shared", "split") and (ncpu < 2 or not hasattr(os, "sched_setaffinity")):
        placement = "none"
    threads = args.threads or {"quota": ncpu, "shared": ncpu, "split": max(1, ncpu - 1),
                               "none": 1}[placement]
    threads = max(1, min(threads, args.connections))       # wrk wants connections >= threads
    srv_cpus = {"shared": cpus[-1:], "split": cpus[-1:]}.get(placement)
    wrk_cpus = {"split": cpus[:-1] or cpus}.get(placement)
    # what one side may use at most, to tell which one saturated
    srv_budget = args.server_cpu if placement == "quota" else 1.0
    wrk_budget = float(min(threads, len(wrk_cpus) if wrk_cpus else ncpu))
    if placement == "quota":
        wrk_budget = min(wrk_budget, ncpu - args.server_cpu)

    C.header("end to end: HTTP/1.0, one request per connection, wrk over 127.0.0.1",
             rounds=args.rounds, wrk=f"-t{threads} -c{args.connections} -d{seconds}s",
             placement=placement)
    if note:
        print(note)
    if placement == "quota":
        where = (f"server limited to {args.server_cpu:g} CPU (cgroup v{quota.version} cpu "
                 f"quota), unpinned; wrk -t{threads} on any CPU")
    else:
        where = f"server on {fmt_cpus(srv_cpus)}; wrk -t{threads} on {fmt_cpus(wrk_cpus)}"
    print(f"# placement: {where} ({ncpu} CPUs)")

    wrk = shutil.which("wrk")
    if not wrk:
        print("# wrk not found (Debian: apt-get install wrk): end-to-end benchmark skipped")
        if quota:
            quota.close()
        return 0

    tmp = C.tempdir()
    servers = {name: [sys.executable, "-c", SERVER, kind] for name, kind in KINDS.items()}
    # the servers import the fastsock this process would import (a checkout too)
    spec = importlib.util.find_spec("fastsock")
    env = dict(os.environ)
    if spec and spec.origin:
        pkg_root = os.path.dirname(os.path.dirname(spec.origin))
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [pkg_root, env.get("PYTHONPATH")]))
    if not args.no_c:
        exe = C.compile_c("e2e_server.c", tmp.name)
        if exe:
            servers[CREF] = [exe]

    stats: dict[str, dict[str, list[float]]] = {n: {} for n in servers}
    errors: dict[str, list[str]] = {}
    repeated = 0

    def record(name: str, **kv: float) -> None:
        for k, v in kv.items():
            stats[name].setdefault(k, []).append(v)

    def preexec_server() -> None:
        die_with_parent()
        if srv_cpus:
            os.sched_setaffinity(0, srv_cpus)
        if quota:
            quota.join()

    def preexec_wrk() -> None:
        die_with_parent()
        if wrk_cpus:
            os.sched_setaffinity(0, wrk_cpus)

    def run_once(name: str) -> dict[str, float | str]:
        wait_idle(max_wait=min(10.0, 2 * seconds + 2))
        srv = subprocess.Popen(servers[name], stdout=subprocess.PIPE, text=True, env=env,
                               preexec_fn=preexec_server)
        try:
            port = int(srv.stdout.readline())
            with tempfile.TemporaryFile("w+") as out:
                s0, m0, t0 = proc_cpu(srv.pid), cpu_times(), time.monotonic()
                w = subprocess.Popen(
                    [wrk, f"-t{threads}", f"-c{args.connections}", f"-d{seconds}s",
                     "-H", "Connection: close", f"http://127.0.0.1:{port}/"],
                    stdout=out, stderr=subprocess.STDOUT, text=True, preexec_fn=preexec_wrk)
                _, status, ru = os.wait4(w.pid, 0)
                w.returncode = os.waitstatus_to_exitcode(status)
                s1, m1, t1 = proc_cpu(srv.pid), cpu_times(), time.monotonic()
                out.seek(0)
                text = out.read()
        finally:
            srv.kill()
            srv.wait()
        if w.returncode != 0:
            raise RuntimeError(f"wrk failed:\n{text}")
        rate = re.search(r"Requests/sec:\s*([\d.]+)", text)
        total = re.search(r"(\d+) requests in", text)
        if not rate or not total:
            raise RuntimeError(f"no Requests/sec in wrk output:\n{text}")
        n = max(1, int(total.group(1)))
        wall = t1 - t0
        srv_s, wrk_s = s1 - s0, ru.ru_utime + ru.ru_stime
        srv_cpu_busy = (busy_cpus(m0, m1, f"cpu{srv_cpus[0]}") / wall
                        if srv_cpus and f"cpu{srv_cpus[0]}" in m1 else 0.0)
        return {"rate": float(rate.group(1)), "srv_us": srv_s / n * 1e6,
                "srv_cpu": srv_s / wall, "wrk_us": wrk_s / n * 1e6, "wrk_cpu": wrk_s / wall,
                "srv_cpu_busy": srv_cpu_busy, "busy": busy_cpus(m0, m1) / wall,
                "foreign": max(0.0, busy_cpus(m0, m1) / wall - (srv_s + wrk_s) / wall),
                "bad": "; ".join(re.findall(r"Socket errors:.*|Non-2xx or 3xx responses:.*",
                                            text))}

    def variant(name: str):
        def go() -> float:
            nonlocal repeated
            for attempt in range(args.retries + 1):
                r = run_once(name)
                if r["foreign"] <= MAX_FOREIGN:
                    break
                if attempt < args.retries:
                    repeated += 1
            if r["bad"]:
                errors.setdefault(name, []).append(str(r["bad"]))
            record(name, **{k: float(v) for k, v in r.items() if k != "bad"})
            return float(r["rate"])
        return go

    try:
        res = C.interleave(args.rounds, {name: variant(name) for name in servers}, warmup=0)
    finally:
        if quota:
            quota.close()
        tmp.cleanup()

    def limit(name: str) -> str:
        m = {k: C.median(v) for k, v in stats[name].items()}
        if m["srv_cpu"] >= 0.9 * srv_budget:
            return "server"
        if placement == "shared" and m["srv_cpu_busy"] >= 0.9:
            return "server's CPU"
        if m["wrk_cpu"] >= 0.9 * wrk_budget:
            return "wrk"
        if m["busy"] >= 0.9 * ncpu:
            return "all CPUs"
        return "neither"

    width = max(map(len, res))
    print(f"{'server':<{width}}  {'conn/s':>7}  {'server us/conn':>14}  {'server CPU':>10}"
          f"  {'wrk us/conn':>11}  {'wrk CPU':>7}  {'saturated':>12}   (medians)")
    for name, xs in res.items():
        s = stats[name]
        print(f"{name:<{width}}  {C.median(xs):7.0f}  {C.median(s['srv_us']):14.1f}"
              f"  {C.median(s['srv_cpu']):10.2f}  {C.median(s['wrk_us']):11.1f}"
              f"  {C.median(s['wrk_cpu']):7.2f}  {limit(name):>12}")
    print(f"# CPU columns in CPUs; the server may use {srv_budget:g}, wrk {wrk_budget:g}; "
          "'saturated': the side that used >= 90% of what it may use")

    base = res[STDLIB]
    others = [n for n in servers if n != STDLIB]
    print("per-round ratios vs stdlib accept() (connections/s):")
    for name in others:
        print(f"  {name:<{width}}  " + " ".join(f"{a / b:.2f}" for a, b in zip(res[name], base)))
    # higher is better: ratio = variant rate / stdlib rate, per round
    for name in others:
        target = ">= 1.25" if name == FASTSOCK else ""
        print(C.ratio_line(name, res[name], base, "stdlib accept() (connections/s)", target)
              + f"   [{WHAT[name]}]")
    # connections per server CPU-second: stdlib CPU per connection / the variant's
    std_cpu = stats[STDLIB]["srv_us"]
    for name in others:
        print(C.ratio_line(name, std_cpu, stats[name]["srv_us"],
                           "stdlib accept() (connections per server CPU-second)"))
    print_run_notes(stats, repeated, errors)
    return 0


def print_run_notes(stats: dict, repeated: int, errors: dict) -> None:
    """The closing lines of a wrk benchmark (also bench_servers.py): how much
    CPU other processes took, runs repeated for it, and what wrk reported."""
    foreign = [x for s in stats.values() for x in s["foreign"]]
    print(f"# other processes used a median {C.median(foreign):.2f} CPU during the runs "
          f"(max {max(foreign):.2f}); {repeated} run(s) repeated for using > {MAX_FOREIGN}")
    if errors:
        for name, errs in errors.items():
            print(f"# {name}: wrk reported in {len(errs)} run(s): {errs[0]}")
    else:
        print("# wrk: no socket errors, no non-2xx responses")


if __name__ == "__main__":
    sys.exit(main())
