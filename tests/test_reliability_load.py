"""Load: nothing lost.

1. At least 20,000 connections from a client process against a fastsock echo
   server on 127.0.0.1: every connection is accepted exactly once and every
   byte echoed (counted and checksummed on both sides).  Clients close with
   SO_LINGER 0 after the server's FIN, so no TIME_WAIT piles up and the
   ephemeral port range is never the limit.
2. A listener with a small backlog under a burst holds exactly its capacity
   (Linux: backlog + 1 completed connections, read with ``accept_queue()``);
   the rest wait in SYN_SENT and are retried by the client.  Once the server
   accepts, every connection the client saw established is accepted and
   served (or reset): none is left half-accepted, hanging.

FASTSOCK_LOAD_CONNECTIONS overrides the count of (1) (never below 20,000 in CI).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import threading
import time
import zlib

import pytest

import fastsock
from fastsock import errors as E

LINUX = sys.platform.startswith("linux")
CONNECTIONS = int(os.environ.get("FASTSOCK_LOAD_CONNECTIONS", "20000"))
CLIENT_THREADS = 4


def child_env():
    return dict(os.environ, PYTHONPATH=os.pathsep.join(
        [os.path.dirname(os.path.dirname(fastsock.__file__))] + sys.path))


def payload(token: int) -> bytes:
    """Connection ``token``'s bytes: the token, then 0..3000 bytes of pattern."""
    n = (token * 7919) % 3001
    body = bytes((token + i * 31) & 0xFF for i in range(n)) if n else b""
    return token.to_bytes(8, "big") + body


CLIENT = textwrap.dedent("""
    import json, socket, struct, sys, threading, time, zlib
    port, total, threads = map(int, sys.argv[1:4])
    exec(sys.argv[4])                       # payload()
    linger = struct.pack("ii", 1, 0)
    lock = threading.Lock()
    stats = {"ok": 0, "bytes_sent": 0, "bytes_back": 0, "crc_sent": 0, "crc_back": 0,
             "failures": []}
    def run(first):
        ok = sent = back = crc_s = crc_b = 0
        fails = []
        for token in range(first, total, threads):
            data = payload(token)
            try:
                c = socket.create_connection(("127.0.0.1", port), timeout=30)
                c.sendall(data)
                c.shutdown(socket.SHUT_WR)
                got = []
                while True:
                    chunk = c.recv(65536)
                    if not chunk:
                        break
                    got.append(chunk)
                echo = b"".join(got)
                # the server closed first; an RST now leaves no TIME_WAIT
                c.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, linger)
                c.close()
            except OSError as e:
                fails.append([token, repr(e)])
                continue
            sent += len(data); crc_s = (crc_s + zlib.crc32(data)) % 2**64
            back += len(echo); crc_b = (crc_b + zlib.crc32(echo)) % 2**64
            if echo == data:
                ok += 1
            else:
                fails.append([token, f"echo differs: {len(echo)} of {len(data)} bytes"])
        with lock:
            stats["ok"] += ok
            stats["bytes_sent"] += sent; stats["bytes_back"] += back
            stats["crc_sent"] = (stats["crc_sent"] + crc_s) % 2**64
            stats["crc_back"] = (stats["crc_back"] + crc_b) % 2**64
            stats["failures"] += fails[:20]
    t0 = time.monotonic()
    ts = [threading.Thread(target=run, args=(i,)) for i in range(threads)]
    for t in ts: t.start()
    for t in ts: t.join()
    stats["wall"] = time.monotonic() - t0
    print(json.dumps(stats))
""")


class EchoServer:
    """Echo until EOF, then close.  ``workers`` threads share the listener,
    half with accept_many(), half with accept()."""

    def __init__(self, workers=2, backlog=None):
        self.lst = fastsock.listen(("127.0.0.1", 0), backlog)
        self.lst.settimeout(0.2)
        self.addr = self.lst.getsockname()
        self.lock = threading.Lock()
        self.tokens: list[int] = []
        self.bytes = 0
        self.crc = 0
        self.errors: list[str] = []
        self.stop = threading.Event()
        self.threads = [threading.Thread(target=self.run, args=(i % 2 == 0,), daemon=True)
                        for i in range(workers)]
        for t in self.threads:
            t.start()

    def serve(self, conn):
        with conn:
            conn.settimeout(30)
            chunks = []
            while True:
                chunk = conn.recv(65536)
                if not chunk:
                    break
                chunks.append(chunk)
            data = b"".join(chunks)
            conn.sendall(data)
        with self.lock:
            self.tokens.append(int.from_bytes(data[:8], "big") if len(data) >= 8 else -1)
            self.bytes += len(data)
            self.crc = (self.crc + zlib.crc32(data)) % 2**64

    def run(self, many):
        while not self.stop.is_set():
            try:
                pairs = self.lst.accept_many(64) if many else [self.lst.accept()]
            except E.SocketTimeout:
                continue
            except OSError as exc:
                with self.lock:
                    self.errors.append(repr(exc))
                continue
            for conn, _ in pairs:
                try:
                    self.serve(conn)
                except OSError as exc:
                    with self.lock:
                        self.errors.append(repr(exc))

    def close(self):
        self.stop.set()
        for t in self.threads:
            t.join(10)
        self.lst.close()


def test_twenty_thousand_connections_every_byte_echoed():
    server = EchoServer(workers=2)
    try:
        src = textwrap.dedent(__import__("inspect").getsource(payload))
        p = subprocess.run(
            [sys.executable, "-c", CLIENT, str(server.addr[1]), str(CONNECTIONS),
             str(CLIENT_THREADS), src],
            capture_output=True, text=True, timeout=600, env=child_env())
        assert p.returncode == 0, p.stderr[-3000:]
        stats = json.loads(p.stdout.strip().splitlines()[-1])
        # the client saw the echo end, so the server recorded it already
        deadline = time.monotonic() + 10
        while len(server.tokens) < CONNECTIONS and time.monotonic() < deadline:
            time.sleep(0.01)
    finally:
        server.close()
    assert stats["failures"] == [], stats["failures"][:5]
    assert stats["ok"] == CONNECTIONS
    assert server.errors == []
    assert sorted(server.tokens) == list(range(CONNECTIONS))   # each accepted once
    assert stats["bytes_sent"] == stats["bytes_back"] == server.bytes
    assert stats["crc_sent"] == stats["crc_back"] == server.crc
    # the expected total, computed independently of both sides
    assert server.bytes == sum(len(payload(t)) for t in range(CONNECTIONS))


def burst_run(backlog):
    """Burst 24 connects at a listener with ``backlog`` from one thread, read
    the accept queue, then serve while each client retries until established
    and waits for its echo.  Returns what was seen, as JSON-able data.

    The burst comes from one thread (non-blocking connects, one after the
    other): handshakes completing on two CPUs at once can overfill a Linux
    accept queue by one (its fullness check and the enqueue are not atomic),
    which is the kernel's doing, not the listener's capacity."""
    import select
    import socket as S
    import threading
    import time

    import fastsock
    from fastsock import _core
    from fastsock import errors as E

    burst = 24
    capacity = _core.plan_backlog(_core.BACKLOG_RULES, backlog, 4096)[2]   # backlog + 1
    lst = fastsock.listen(("127.0.0.1", 0), backlog)
    addr = lst.getsockname()
    lock = threading.Lock()
    outcome: dict[int, str] = {}
    established: set[int] = set()
    attempts = [1] * burst
    connect_wait = 3.5            # covers the SYN retransmits at 1 s and 3 s

    def finish(i, c):
        """``c`` is established (client side): it must be served or reset."""
        with lock:
            established.add(i)
        c.settimeout(30)
        try:
            c.sendall(i.to_bytes(4, "big"))
            echo = c.recv(4)
            outcome[i] = "served" if echo == i.to_bytes(4, "big") else f"bad {echo!r}"
        except ConnectionResetError:
            outcome[i] = "reset"
        except TimeoutError:
            outcome[i] = "HUNG: established but never served"
        finally:
            c.close()

    def client(i, first):
        """The burst's socket first; if it is not established in time (or is
        refused), retry with fresh connects, 5 attempts in all."""
        c = first
        try:
            _, writable, _ = select.select([], [c], [], connect_wait)
            if writable and c.getsockopt(S.SOL_SOCKET, S.SO_ERROR) == 0:
                return finish(i, c)
            c.close()
            for _ in range(4):
                attempts[i] += 1
                c = S.socket()
                c.settimeout(connect_wait)
                try:
                    c.connect(addr)
                except (TimeoutError, ConnectionRefusedError, ConnectionResetError):
                    c.close()
                    continue
                return finish(i, c)
            outcome[i] = "gave up"
        except Exception as exc:     # recorded, asserted below
            outcome[i] = f"client error {exc!r}"

    socks = []
    served_tokens: list[int] = []
    clients = []
    try:
        for _ in range(burst):
            c = S.socket()
            c.setblocking(False)
            c.connect_ex(addr)
            socks.append(c)
        deadline = time.monotonic() + 5
        while lst.accept_queue().pending < capacity and time.monotonic() < deadline:
            time.sleep(0.005)
        time.sleep(0.3)          # the kernel has every chance to over-fill; it must not
        queue = list(lst.accept_queue())
        clients = [threading.Thread(target=client, args=(i, c), daemon=True)
                   for i, c in enumerate(socks)]
        for t in clients:
            t.start()
        # now serve everything, one thread per connection (a connection whose
        # client never speaks must not hold up the others), until every
        # client thread is done
        lst.settimeout(0.1)
        servers = []

        def serve(conn):
            with conn:
                conn.settimeout(25)
                try:
                    data = conn.recv(4)
                except OSError:
                    return               # the client went away: nothing to serve
                if len(data) == 4:
                    conn.sendall(data)
                    with lock:
                        served_tokens.append(int.from_bytes(data, "big"))

        end = time.monotonic() + 90
        while any(t.is_alive() for t in clients) and time.monotonic() < end:
            try:
                conn, _ = lst.accept()
            except E.SocketTimeout:
                continue
            servers.append(threading.Thread(target=serve, args=(conn,), daemon=True))
            servers[-1].start()
        for t in clients + servers:
            t.join(1)
    finally:
        lst.close()
        for c in socks:
            c.close()
    return {"capacity": capacity, "queue": queue, "outcome": outcome,
            "alive": sum(t.is_alive() for t in clients),
            "established": sorted(established), "served": sorted(served_tokens)}


# Linux's defaults leave half-open connections no server can accept: with
# net.ipv4.tcp_syncookies=1 the SYNs beyond a tiny queue are answered with
# cookies, the clients see the connection established, and the completing
# ACK (and later the data) is dropped while the accept queue is full; on
# Linux 6.18 many such clients wait in ESTABLISHED, their data unacked, long
# after the queue has emptied.  That is the kernel's, not the listener's, so
# the burst runs in a private network namespace without syncookies, where
# Linux keeps the request and completes it later, or (tcp_abort_on_overflow)
# resets it instead of dropping the ACK.  (tcp_abort_on_overflow alone does
# not help: the cookie path drops without a reset.)
SYSCTLS = {
    "no-syncookies": {"net.ipv4.tcp_syncookies": "0"},
    "abort-on-overflow": {"net.ipv4.tcp_syncookies": "0",
                          "net.ipv4.tcp_abort_on_overflow": "1"},
}


@pytest.mark.skipif(not LINUX, reason="accept_queue() read-back and SYN dropping are Linux's")
@pytest.mark.parametrize("mode", sorted(SYSCTLS))
@pytest.mark.parametrize("backlog", [0, 3])
def test_small_backlog_burst_holds_capacity_and_half_accepts_nothing(backlog, mode):
    from _netns import run_in_netns

    code = "import json\n" + textwrap.dedent(__import__("inspect").getsource(burst_run)) + \
        f"\nprint(json.dumps(burst_run({backlog})))\n"
    r = run_in_netns(code, sysctls=SYSCTLS[mode], timeout=150)
    assert r.returncode == 0, r.stderr[-3000:]
    seen = json.loads(r.stdout.strip().splitlines()[-1])
    outcome = {int(k): v for k, v in seen["outcome"].items()}
    # the queue held exactly its capacity, backlog + 1 on Linux
    assert seen["queue"] == [seen["capacity"], backlog]
    assert seen["alive"] == 0, "client threads still waiting"
    # "gave up": never established in 5 attempts (refused or unanswered while
    # the queue was full), which a client may do; anything else is a failure
    bad = {i: o for i, o in outcome.items() if o not in ("served", "reset", "gave up")}
    assert not bad, bad
    assert sorted(outcome) == list(range(24))
    # every connection a client saw established was accepted (served or reset)
    assert seen["established"] == sorted(i for i, o in outcome.items() if o != "gave up")
    assert sorted(i for i, o in outcome.items() if o == "served") == seen["served"]
    assert len(seen["served"]) >= seen["capacity"]
