"""Real servers: gunicorn (sync worker), uvicorn, tornado and waitress serving
the same hello-world app on a stdlib listener vs a fastsock listener, driven
by wrk over 127.0.0.1.

    python benchmarks/bench_servers.py [--rounds 5] [--duration 5] [--connections 64]
        [--servers gunicorn,uvicorn,tornado,waitress] [--placement auto|quota|shared|split|none]
        [--server-cpu 0.5]

For each server, side by side in one run (order rotated every round, a fresh
server process for every wrk run):

  stdlib      the listener is a ``socket.socket`` (bind, listen(1024)) handed to
              the server, which accepts on it with the stdlib;
  fastsock    the listener is ``fastsock.listen(("127.0.0.1", 0), 1024)`` handed
              over the way docs/recipes.md shows: tornado (add_sockets),
              uvicorn (Server.serve(sockets=), asyncio accepts on the fastsock
              socket) and waitress (serve(sockets=)) then call fastsock's
              accept(); gunicorn gets it as ``--bind fd://N`` and makes its own
              stdlib socket objects from the descriptor, so for gunicorn the
              module is swapped too (``gunicorn.sock.socket = fastsock``: its
              fromfd, hence its workers' accept, are fastsock's).

One worker, one process per server (gunicorn: arbiter + 1 sync worker;
uvicorn: 1 process, its default loop and HTTP implementation; tornado: 1
process; waitress: its default 4 threads), no access logs.  wrk sends
"Connection: close": every request is a new connection, so requests/s =
connections/s.  The placement rules are bench_e2e.py's (its CpuQuota,
wait-for-idle and CPU accounting are imported from there): by default the
server process tree gets a 0.5-CPU cgroup quota and wrk the rest, so the
server is the bottleneck and connections/s measure the server's CPU per
connection.  Server CPU is summed over the server's process tree
(/proc/PID/schedstat of each process).

Printed per server: medians of connections/s and server CPU per connection
for both listeners, and the medians of the per-round ratios fastsock/stdlib
for connections/s and for connections per server CPU-second (the steadier
of the two when the server's CPU is not what saturates: other load on the
machine, or wrk).  Needs wrk (Debian: apt-get install wrk) and the servers
(pip install 'fastsock[integration]'); a server that is not installed is
skipped, and without wrk the benchmark says so and exits 0.
"""

from __future__ import annotations

import argparse
import importlib.util
import math
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time

import _common as C
import bench_e2e as E

# The app and the server, run as: python -c SERVER <server> <stdlib|fastsock>.
# Prints the port once listening, then serves until killed.
SERVER = r'''
import os, socket, sys
server, kind = sys.argv[1], sys.argv[2]
BODY = b"hello, world\n"

def wsgi(environ, start_response):
    start_response("200 OK", [("Content-Type", "text/plain"),
                              ("Content-Length", str(len(BODY)))])
    return [BODY]

if kind == "stdlib":
    lst = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    lst.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    lst.bind(("127.0.0.1", 0))
    lst.listen(1024)
else:
    import fastsock
    lst = fastsock.listen(("127.0.0.1", 0), 1024)
print(lst.getsockname()[1], flush=True)

if server == "gunicorn":
    import gunicorn.sock
    if kind == "fastsock":
        gunicorn.sock.socket = fastsock     # its fromfd, so its workers' accept
    sys.modules["bench_servers_app"] = sys.modules[__name__]
    fd = lst.detach()                       # gunicorn closes it after its fromfd
    os.set_inheritable(fd, True)
    sys.argv = ["gunicorn", f"--bind=fd://{fd}", "--workers=1", "--worker-class=sync",
                "--backlog=1024", "--log-level=error", "bench_servers_app:wsgi"]
    from gunicorn.app.wsgiapp import run
    run()
elif server == "uvicorn":
    import asyncio, uvicorn
    async def asgi(scope, receive, send):
        await send({"type": "http.response.start", "status": 200,
                    "headers": [(b"content-type", b"text/plain")]})
        await send({"type": "http.response.body", "body": BODY})
    config = uvicorn.Config(asgi, lifespan="off", log_level="error", access_log=False,
                            backlog=1024)
    asyncio.run(uvicorn.Server(config).serve(sockets=[lst]))
elif server == "tornado":
    import asyncio
    import tornado.httpserver, tornado.web
    class Hello(tornado.web.RequestHandler):
        def get(self):
            self.write(BODY)
    async def main():
        lst.setblocking(False)
        tornado.httpserver.HTTPServer(tornado.web.Application([("/", Hello)])).add_sockets([lst])
        await asyncio.Event().wait()
    asyncio.run(main())
elif server == "waitress":
    import logging, waitress
    logging.getLogger("waitress").setLevel(logging.ERROR)
    waitress.serve(wsgi, sockets=[lst], backlog=1024, _quiet=True)
'''

SERVERS = ("gunicorn", "uvicorn", "tornado", "waitress")
KINDS = ("stdlib", "fastsock")


def tree_cpu(pid: int) -> float:
    """CPU seconds of ``pid`` and its live descendants."""
    total, todo = 0.0, [pid]
    while todo:
        p = todo.pop()
        try:
            total += E.proc_cpu(p)
        except OSError:
            continue
        try:
            for task in os.listdir(f"/proc/{p}/task"):
                with open(f"/proc/{p}/task/{task}/children") as f:
                    todo.extend(int(c) for c in f.read().split())
        except OSError:
            pass
    return total


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--duration", type=float, default=5.0)
    ap.add_argument("--connections", type=int, default=64)
    ap.add_argument("--servers", default=",".join(SERVERS))
    ap.add_argument("--placement", default="auto",
                    choices=("auto", "quota", "shared", "split", "none"))
    ap.add_argument("--server-cpu", type=float, default=0.5)
    ap.add_argument("--retries", type=int, default=2)
    args = ap.parse_args(argv)
    seconds = max(1, math.ceil(args.duration))

    wanted = [s for s in args.servers.split(",") if s]
    missing = [s for s in wanted if importlib.util.find_spec(s) is None]
    servers = [s for s in wanted if s not in missing]

    cpus = sorted(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else \
        list(range(os.cpu_count() or 1))
    ncpu = len(cpus)
    placement, quota, note = args.placement, None, ""
    if placement in ("auto", "quota"):
        quota = E.CpuQuota(args.server_cpu)
        if not quota.path:
            note = f"# no cgroup for --placement quota ({quota.error}): using shared"
            quota, placement = None, "shared"
        else:
            placement = "quota"
    if placement in ("shared", "split") and (ncpu < 2 or not hasattr(os, "sched_setaffinity")):
        placement = "none"
    threads = {"quota": ncpu, "shared": ncpu, "split": max(1, ncpu - 1), "none": 1}[placement]
    srv_cpus = {"shared": cpus[-1:], "split": cpus[-1:]}.get(placement)
    wrk_cpus = {"split": cpus[:-1] or cpus}.get(placement)

    C.header("real servers: hello world, one request per connection, wrk over 127.0.0.1",
             rounds=args.rounds, wrk=f"-t{threads} -c{args.connections} -d{seconds}s",
             placement=placement)
    if note:
        print(note)
    if placement == "quota":
        print(f"# placement: server process tree limited to {args.server_cpu:g} CPU "
              f"(cgroup v{quota.version} cpu quota); wrk -t{threads} on any CPU ({ncpu} CPUs)")
    else:
        print(f"# placement: server on {E.fmt_cpus(srv_cpus)}; wrk -t{threads} on "
              f"{E.fmt_cpus(wrk_cpus)} ({ncpu} CPUs)")
    versions = {}
    for s in servers:
        try:
            from importlib.metadata import version
            versions[s] = version(s)
        except Exception:
            versions[s] = "?"
    print("# servers: " + ", ".join(f"{s} {v}" for s, v in versions.items())
          + (f"; not installed, skipped: {', '.join(missing)}" if missing else ""))
    wrk = shutil.which("wrk")
    if not wrk:
        print("# wrk not found (Debian: apt-get install wrk): benchmark skipped")
        if quota:
            quota.close()
        return 0
    if not servers:
        print("# no server installed (pip install 'fastsock[integration]'): benchmark skipped")
        if quota:
            quota.close()
        return 0

    env = dict(os.environ)
    spec = importlib.util.find_spec("fastsock")
    if spec and spec.origin:
        root = os.path.dirname(os.path.dirname(spec.origin))
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [root, env.get("PYTHONPATH")]))
    stats: dict[str, dict[str, list[float]]] = {}
    errors: dict[str, list[str]] = {}
    repeated = 0

    def preexec_server() -> None:
        E.die_with_parent()
        os.setsid()                       # one group: the kill takes the workers too
        if srv_cpus:
            os.sched_setaffinity(0, srv_cpus)
        if quota:
            quota.join()

    def preexec_wrk() -> None:
        E.die_with_parent()
        if wrk_cpus:
            os.sched_setaffinity(0, wrk_cpus)

    def run_once(server: str, kind: str) -> dict[str, float | str]:
        E.wait_idle(max_wait=min(10.0, 2 * seconds + 2))
        srv = subprocess.Popen([sys.executable, "-c", SERVER, server, kind],
                               stdout=subprocess.PIPE, text=True, env=env,
                               preexec_fn=preexec_server)
        try:
            port = int(srv.stdout.readline())
            # warm up: wait until it answers (gunicorn forks its worker first)
            deadline = time.monotonic() + 20
            while True:
                probe = subprocess.run([wrk, "-t1", "-c1", "-d1s", "-H", "Connection: close",
                                        f"http://127.0.0.1:{port}/"],
                                       capture_output=True, text=True)
                if re.search(r"[1-9]\d* requests in", probe.stdout):
                    break
                if time.monotonic() > deadline or srv.poll() is not None:
                    raise RuntimeError(f"{server} ({kind}) never answered")
            with tempfile.TemporaryFile("w+") as out:
                s0, m0, t0 = tree_cpu(srv.pid), E.cpu_times(), time.monotonic()
                w = subprocess.Popen(
                    [wrk, f"-t{threads}", f"-c{args.connections}", f"-d{seconds}s",
                     "-H", "Connection: close", f"http://127.0.0.1:{port}/"],
                    stdout=out, stderr=subprocess.STDOUT, text=True, preexec_fn=preexec_wrk)
                _, status, ru = os.wait4(w.pid, 0)
                w.returncode = os.waitstatus_to_exitcode(status)
                s1, m1, t1 = tree_cpu(srv.pid), E.cpu_times(), time.monotonic()
                out.seek(0)
                text = out.read()
        finally:
            try:
                os.killpg(srv.pid, 9)
            except ProcessLookupError:
                pass
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
        return {"rate": float(rate.group(1)), "srv_us": srv_s / n * 1e6,
                "srv_cpu": srv_s / wall,
                "foreign": max(0.0, E.busy_cpus(m0, m1) / wall - (srv_s + wrk_s) / wall),
                "bad": "; ".join(re.findall(r"Socket errors:.*|Non-2xx or 3xx responses:.*",
                                            text))}

    def variant(server: str, kind: str):
        name = f"{server} {kind}"
        stats[name] = {}

        def go() -> float:
            nonlocal repeated
            for attempt in range(args.retries + 1):
                r = run_once(server, kind)
                if r["foreign"] <= E.MAX_FOREIGN:
                    break
                if attempt < args.retries:
                    repeated += 1
            if r["bad"]:
                errors.setdefault(name, []).append(str(r["bad"]))
            for k, v in r.items():
                if k != "bad":
                    stats[name].setdefault(k, []).append(float(v))
            return float(r["rate"])
        return name, go

    variants = dict(variant(s, k) for s in servers for k in KINDS)
    try:
        res = C.interleave(args.rounds, variants, warmup=0)
    finally:
        if quota:
            quota.close()

    width = max(map(len, res))
    print(f"{'server, listener':<{width}}  {'conn/s':>7}  {'server us/conn':>14}  "
          f"{'server CPU':>10}   (medians)")
    for name, xs in res.items():
        s = stats[name]
        print(f"{name:<{width}}  {C.median(xs):7.0f}  {C.median(s['srv_us']):14.1f}  "
              f"{C.median(s['srv_cpu']):10.2f}")
    for s in servers:
        a, b = res[f"{s} fastsock"], res[f"{s} stdlib"]
        print(C.ratio_line(f"{s} fastsock", a, b, f"{s} stdlib (connections/s)", ">= 0.98"))
    # connections per server CPU-second: stdlib CPU per connection / fastsock's,
    # per round; steadier than connections/s where the server's CPU is not
    # what saturates (other load, wrk)
    for s in servers:
        a, b = stats[f"{s} stdlib"]["srv_us"], stats[f"{s} fastsock"]["srv_us"]
        print(C.ratio_line(f"{s} fastsock", a, b, f"{s} stdlib (connections per server "
                                                   "CPU-second)"))
    E.print_run_notes(stats, repeated, errors)
    return 0


if __name__ == "__main__":
    sys.exit(main())
