"""Memory leaks on the accept/bind/listen/connect paths, errors above all.

Each scenario runs in a fresh child interpreter with PYTHONMALLOC=malloc, so
every allocation, Python object or C buffer, goes through malloc(3) and
glibc's ``mallinfo2()`` counts it.  After a warm-up the scenario runs two
windows of the same number of iterations; the bytes in use must not grow
between the end of the first window and the end of the second (a leak of one
16-byte block per call would add tens of kilobytes).  tracemalloc and RSS are
reported alongside.

Skipped under AddressSanitizer (.ci/sanitize), whose allocator hides
mallinfo, and where mallinfo2 is missing (not glibc).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

import pytest

import fastsock

ITERATIONS = 3000          # per window
MAX_GROWTH = 24 * 1024     # bytes allowed between the two windows (noise)

pytestmark = [
    pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc mallinfo2"),
    pytest.mark.skipif("libasan" in os.environ.get("LD_PRELOAD", "")
                       or "ASAN_OPTIONS" in os.environ,
                       reason="AddressSanitizer's allocator hides mallinfo"),
]

CHILD = textwrap.dedent(r"""
    import ctypes, errno, gc, json, os, socket as S, struct, sys, tracemalloc, warnings
    import fastsock
    from fastsock import _core, errors as E

    libc = ctypes.CDLL(None)
    class MallInfo2(ctypes.Structure):
        _fields_ = [(n, ctypes.c_size_t) for n in (
            "arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks", "fsmblks",
            "uordblks", "fordblks", "keepcost")]
    if not hasattr(libc, "mallinfo2"):
        print(json.dumps({"skip": "no mallinfo2"}))
        sys.exit(0)
    libc.mallinfo2.restype = MallInfo2

    def in_use():
        gc.collect()
        m = libc.mallinfo2()
        return m.uordblks + m.hblkhd

    def rss():
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")

    warnings.simplefilter("ignore")
    linger = struct.pack("ii", 1, 0)
    lst = fastsock.listen(("127.0.0.1", 0), 4096)
    addr = lst.getsockname()
    refuser = S.socket(); refuser.bind(("127.0.0.1", 0)); refused = refuser.getsockname()
    quiet = fastsock.socket(); quiet.bind(("127.0.0.1", 0)); quiet.listen(8)
    quiet.setblocking(False)
    unbound = fastsock.socket()
    udp = _core.socket(S.AF_INET, S.SOCK_DGRAM)
    r, w = os.pipe()

    def attempt(call, *args, **kw):
        try:
            call(*args, **kw)
        except (OSError, TypeError, ValueError, OverflowError):
            pass

    def accept_ok():
        c = S.create_connection(addr)
        conn, _ = lst.accept()
        conn.close()
        c.setsockopt(S.SOL_SOCKET, S.SO_LINGER, linger)
        c.close()

    def accept_many_ok():
        cs = [S.create_connection(addr) for _ in range(3)]
        got = []
        while len(got) < 3:
            got += lst.accept_many(8)
        for conn, _ in got:
            conn.close()
        for c in cs:
            c.setsockopt(S.SOL_SOCKET, S.SO_LINGER, linger)
            c.close()

    def new_socket_bind(address, family=S.AF_INET):
        with fastsock.socket(family) as s:
            attempt(s.bind, address)

    def new_socket_connect(address):
        with fastsock.socket() as s:
            attempt(s.connect, address)

    SCENARIOS = {
        "accept EAGAIN": lambda: attempt(quiet.accept),
        "accept_many EAGAIN": lambda: attempt(quiet.accept_many, 8),
        "core accept timeout": lambda: attempt(_core.accept, quiet.fileno(), S.AF_INET, 1e-6),
        "accept EINVAL (not listening)": lambda: attempt(unbound.accept),
        "accept EBADF": lambda: attempt(_core.accept, 999_983, S.AF_INET),
        "accept ENOTSOCK": lambda: attempt(_core.accept, r, S.AF_INET),
        "accept ok": accept_ok,
        "accept_many ok": accept_many_ok,
        "bind EADDRINUSE": lambda: new_socket_bind(addr),
        "bind EADDRNOTAVAIL": lambda: new_socket_bind(("192.0.2.1", 0)),
        "bind bad port": lambda: new_socket_bind(("127.0.0.1", 70000)),
        "bind bad type": lambda: new_socket_bind(["127.0.0.1", 0]),
        "bind unix too long": lambda: new_socket_bind("/" + "x" * 200, S.AF_UNIX),
        "bind unix NUL": lambda: new_socket_bind("/tmp/a\0b", S.AF_UNIX),
        "bind unix ENOENT": lambda: new_socket_bind("/nonexistent-dir/x/y", S.AF_UNIX),
        "encode localhost (getaddrinfo)":
            lambda: _core.encode_address(S.AF_INET, ("localhost", 80)),
        "encode/decode inet6": lambda: _core.decode_address(
            S.AF_INET6, _core.encode_address(S.AF_INET6, ("::1", 80, 1, 2))),
        "decode unix": lambda: _core.decode_address(S.AF_UNIX, b"\x01\x00/tmp/some/path"),
        "listen EOPNOTSUPP": lambda: attempt(_core.listen, udp, 5),
        "listen bad type": lambda: attempt(_core.listen, udp, "5"),
        "listen overflow": lambda: attempt(_core.listen, udp, 2**40),
        "listen ok, negative (warning)": lambda: quiet.listen(-1),
        "listen ok, truncated (warning)": lambda: quiet.listen(10**6),
        "fastsock.listen EADDRINUSE": lambda: attempt(fastsock.listen, addr),
        "connect ECONNREFUSED": lambda: new_socket_connect(refused),
        "connect_ex ECONNREFUSED": lambda: _core.connect_ex(
            _core.socket(S.AF_INET, S.SOCK_STREAM), S.AF_INET, refused) and None,
        "socket EAFNOSUPPORT": lambda: attempt(_core.socket, 12345, S.SOCK_STREAM),
        "socket EPROTONOSUPPORT": lambda: attempt(fastsock.socket, S.AF_INET, S.SOCK_STREAM, 17),
        "make_error": lambda: E.make_error(errno.EMFILE, "accept", fd=3),
    }

    def run(name, n):
        f = SCENARIOS[name]
        for _ in range(n):
            f()

    n = int(sys.argv[1])
    results = {}
    tracemalloc.start()
    for name in (sys.argv[2:] or SCENARIOS):
        if name == "connect_ex ECONNREFUSED":
            # the descriptor is the test's own: close it each time
            def f(_old=SCENARIOS[name]):
                fd = _core.socket(S.AF_INET, S.SOCK_STREAM)
                try:
                    _core.connect_ex(fd, S.AF_INET, refused)
                finally:
                    os.close(fd)
            SCENARIOS[name] = f
        run(name, n // 4)                         # warm-up: caches, free lists
        a, ta, ra = in_use(), tracemalloc.get_traced_memory()[0], rss()
        run(name, n)
        b, tb, rb = in_use(), tracemalloc.get_traced_memory()[0], rss()
        run(name, n)
        c, tc, rc = in_use(), tracemalloc.get_traced_memory()[0], rss()
        results[name] = {"malloc": [b - a, c - b], "traced": [tb - ta, tc - tb],
                         "rss": [rb - ra, rc - rb]}
    print(json.dumps(results))
""")


def test_no_growth_on_error_and_success_paths():
    env = dict(os.environ, PYTHONMALLOC="malloc", PYTHONPATH=os.pathsep.join(
        [os.path.dirname(os.path.dirname(fastsock.__file__))] + sys.path))
    p = subprocess.run([sys.executable, "-c", CHILD, str(ITERATIONS)], capture_output=True,
                       text=True, timeout=600, env=env)
    assert p.returncode == 0, p.stderr[-3000:]
    results = json.loads(p.stdout.strip().splitlines()[-1])
    if "skip" in results:
        pytest.skip(results["skip"])
    grew = {name: r for name, r in results.items()
            if r["malloc"][1] > MAX_GROWTH or r["traced"][1] > MAX_GROWTH
            or r["rss"][1] > 64 * MAX_GROWTH}
    assert not grew, json.dumps(grew, indent=1)
    assert len(results) >= 25
