"""accept_many() on a TCP listener: batches through io_uring.

The connections of a batch (after the first, on a blocking listener) are
taken with io_uring's accept that cannot wait (IORING_ACCEPT_DONTWAIT, Linux
6.10+) on a ring of the calling thread whose descriptor was registered and
closed, so the process's descriptor table never shows it.  These tests hold that to real
kernels: no descriptor appears, a fork() child and a new thread get rings of
their own, a thread's ring is unmapped when it ends, a close-everything
(closerange) does not take the ring away, descriptor exhaustion in the middle
of a batch loses no connection, and FASTSOCK_NO_IO_URING turns it off (one
connection per call).  Where the kernel has no such accept (or io_uring is
forbidden), the tests that need it skip; the one-per-call tests run anyway.
"""

from __future__ import annotations

import contextlib
import json
import os
import socket as S
import sys
import threading
import time

import pytest

import fastsock
from fastsock import _core

from test_reliability_capacity import EXHAUST, run_child

LINUX = sys.platform.startswith("linux")
URING = LINUX and _core.accept_batching() == "io_uring"
needs_uring = pytest.mark.skipif(not URING, reason="no io_uring accept that cannot wait here")


def fds() -> set[str]:
    """The open descriptors (not the one listdir itself had open)."""
    out = set()
    for name in os.listdir("/proc/self/fd"):
        try:
            os.fstat(int(name))
        except OSError:
            continue
        out.add(name)
    return out


def ring_maps() -> int:
    with open("/proc/self/maps") as f:
        return sum("io_uring" in line for line in f)


@contextlib.contextmanager
def queued(lst, n):
    """``n`` client connections to ``lst``, waiting in its accept queue (a
    bounded wait, where the kernel tells the queue's length); yields
    ``(clients, accepted)``: the test puts what it accepts into ``accepted``,
    and both are closed on the way out."""
    addr = lst.getsockname()
    clients: list[S.socket] = []
    accepted: list = []
    try:
        for _ in range(n):
            clients.append(S.socket(lst.family, S.SOCK_STREAM))
            clients[-1].connect(addr if lst.family == S.AF_UNIX else addr[:2])
        if lst.accept_queue() is not None:
            deadline = time.monotonic() + 5
            while lst.accept_queue().pending < n and time.monotonic() < deadline:
                time.sleep(0.005)
            assert lst.accept_queue().pending == n
        yield clients, accepted
    finally:
        for conn, _ in accepted:
            conn.close()
        for c in clients:
            c.close()


@needs_uring
def test_blocking_listener_takes_the_queue_and_leaves_no_descriptor():
    with fastsock.listen(("127.0.0.1", 0), 128) as lst, queued(lst, 80) as (clients, got):
        before, batches = fds(), _core.uring_batches()
        got += lst.accept_many(100)              # 1 by accept4, then 64 + 15
        assert len(got) == 80
        assert _core.uring_batches() == batches + 2
        assert [a for _, a in got] == [c.getsockname() for c in clients]
        assert fds() - before == {str(c.fileno()) for c, _ in got}   # only these
        for i, (conn, _) in enumerate(got):
            assert conn.gettimeout() is None and not conn.get_inheritable()
            clients[i].sendall(b"%d" % i)
            assert conn.recv(8) == b"%d" % i
        assert lst.accept_queue().pending == 0


@needs_uring
@pytest.mark.parametrize("host,timeout", [("127.0.0.1", 0.0), ("127.0.0.1", 5.0), ("::1", 0.0)])
def test_non_blocking_listeners_batch_through_io_uring_too(host, timeout):
    """One io_uring_enter(2) per batch costs less than one accept4(2) per
    connection once the batch is long, so a listener that could use accept4
    takes io_uring's for the rest of a batch whose first 4 came at once and
    whose queue still holds 8 or more."""
    if host == "::1" and not fastsock.has_ipv6:
        pytest.skip("no IPv6 here")
    with fastsock.listen((host, 0), 128) as lst, queued(lst, 70) as (clients, got):
        lst.settimeout(timeout)
        batches = _core.uring_batches()
        got += lst.accept_many(100)
        # 64: 4 by accept4, then (60 still queued) 60 by io_uring; then 6 by accept4
        assert len(got) == 70 and _core.uring_batches() == batches + 1
        assert [a for _, a in got] == [c.getsockname() for c in clients]
        assert all(conn.gettimeout() is None and conn.getblocking() for conn, _ in got)
        if timeout == 0.0:
            with pytest.raises(BlockingIOError):
                lst.accept_many(100)


@needs_uring
def test_a_short_queue_on_a_non_blocking_listener_takes_accept4():
    """For fewer than 8 queued connections accept4 calls cost less than a ring
    round trip: 4 accept4, the queue length (1), and accept4 again."""
    with fastsock.listen(("127.0.0.1", 0), 16) as lst, queued(lst, 5) as (clients, got):
        lst.setblocking(False)
        batches = _core.uring_batches()
        got += lst.accept_many(64)
        assert len(got) == 5 and _core.uring_batches() == batches


@pytest.mark.skipif(not LINUX, reason="AF_UNIX accept queue checks use Linux paths")
def test_unix_listeners_take_accept4(tmp_path):
    with fastsock.listen(str(tmp_path / "s"), 16) as lst, queued(lst, 5) as (clients, got):
        lst.setblocking(False)
        batches = _core.uring_batches()
        got += lst.accept_many(8)
        assert len(got) == 5 and _core.uring_batches() == batches


@needs_uring
def test_turned_off_for_a_thread_a_blocking_listener_gives_one_per_call():
    with fastsock.listen(("127.0.0.1", 0), 16) as lst, queued(lst, 4) as (clients, got):
        _core.thread_uring(False)
        try:
            got += lst.accept_many(8)
            assert len(got) == 1
        finally:
            _core.thread_uring(True)
        got += lst.accept_many(8)
        assert len(got) == 4


@needs_uring
def test_each_thread_has_its_own_ring_unmapped_when_it_ends():
    with fastsock.listen(("127.0.0.1", 0), 64) as lst:
        before = ring_maps()
        result = {}

        def worker():
            with queued(lst, 5) as (clients, got):
                got += lst.accept_many(8)
                result["n"] = len(got)
                result["maps"] = ring_maps()

        t = threading.Thread(target=worker)
        t.start()
        t.join(30)
        assert result["n"] == 5
        assert result["maps"] > before          # the thread's own ring
        # join() returns before the OS thread has run its exit destructors
        deadline = time.monotonic() + 5
        while ring_maps() != before and time.monotonic() < deadline:
            time.sleep(0.01)
        assert ring_maps() == before            # gone with the thread


CHILD_PRELUDE = """
import json, os, socket as S, time
import fastsock
from fastsock import _core
lst = fastsock.listen(("127.0.0.1", 0), 64)
def batch(n):
    clients = [S.create_connection(lst.getsockname()) for _ in range(n)]
    deadline = time.monotonic() + 5
    while lst.accept_queue().pending < n and time.monotonic() < deadline:
        time.sleep(0.005)
    got = lst.accept_many(64)
    addrs_ok = [a for _, a in got] == [c.getsockname() for c in clients[:len(got)]]
    for conn, _ in got:
        conn.close()
    for c in clients:
        c.close()
    return len(got), addrs_ok
"""


@needs_uring
def test_fork_child_sets_up_its_own_ring():
    out = run_child(CHILD_PRELUDE + """
    first = batch(6)
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:
        os.close(r)
        b = _core.uring_batches()
        res = batch(7)
        os.write(w, json.dumps([res, _core.uring_batches() - b]).encode())
        os._exit(0)
    os.close(w)
    in_child = json.loads(os.read(r, 1000))
    os.waitpid(pid, 0)
    b = _core.uring_batches()
    print(json.dumps({"first": first, "child": in_child, "after": batch(5),
                      "parent_batches": _core.uring_batches() - b}))
    """.replace("\n    ", "\n"))
    assert out["first"] == [6, True]
    assert out["child"] == [[7, True], 1]
    assert out["after"] == [5, True] and out["parent_batches"] == 1


@needs_uring
def test_closing_every_descriptor_does_not_take_the_ring():
    """What a daemonizing close-everything does: every descriptor but the
    listener's closed, then new descriptors take the low numbers again."""
    out = run_child(CHILD_PRELUDE + """
    first = batch(4)
    fd = lst.fileno()
    os.closerange(3, fd)
    os.closerange(fd + 1, 4096)
    b = _core.uring_batches()
    second = batch(9)
    print(json.dumps({"first": first, "second": second,
                      "batches": _core.uring_batches() - b}))
    """.replace("\n    ", "\n"))
    assert out == {"first": [4, True], "second": [9, True], "batches": 1}


@needs_uring
def test_descriptors_running_out_mid_batch_lose_nothing():
    out = run_child(CHILD_PRELUDE + EXHAUST + """
    from fastsock import errors as E
    batch(2)                                   # the ring exists
    clients = [S.create_connection(lst.getsockname()) for _ in range(6)]
    time.sleep(0.05)
    held = exhaust(limit=128)
    for _ in range(3):                         # three free: one accept4, two io_uring
        os.close(held.pop())
    got = lst.accept_many(64)
    try:
        lst.accept_many(64)
        error = None
    except E.AcceptCapacityError as e:
        error = [type(e).__name__, e.syscall]
    pending = lst.accept_queue().pending
    for h in held:
        os.close(h)
    rest = lst.accept_many(64)
    peers = [a for _, a in got + rest]
    print(json.dumps({"got": len(got), "error": error, "pending": pending,
                      "rest": len(rest),
                      "in_order": peers == [c.getsockname() for c in clients]}))
    """.replace("\n    ", "\n"))
    assert out == {"got": 3, "error": ["AcceptTooManyOpenFilesError", "accept"],
                   "pending": 3, "rest": 3, "in_order": True}


@pytest.mark.skipif(not LINUX, reason="the switch is read on Linux")
def test_switched_off_a_blocking_listener_gives_one_per_call():
    out = run_child(CHILD_PRELUDE + """
    print(json.dumps({"how": _core.accept_batching(), "got": batch(3)[0],
                      "batches": _core.uring_batches()}))
    """.replace("\n    ", "\n"), FASTSOCK_NO_IO_URING="1")
    assert out == {"how": "single", "got": 1, "batches": 0}
