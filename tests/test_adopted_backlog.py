"""Adopted listeners report their backlog; ``accept_queue()`` has ``drops``.

A fastsock socket object wrapping a listening descriptor it did not listen
itself (``fromfd``, ``socket(fileno=)``, ``dup``, a descriptor received with
SCM_RIGHTS, one listened by another process) reads ``.backlog`` from the
kernel: Linux TCP_INFO (TCP) and unix_diag (AF_UNIX), FreeBSD
SO_LISTENQLIMIT.  Real sockets on loopback and AF_UNIX; nothing mocked.
"""

from __future__ import annotations

import os
import pickle
import socket
import subprocess
import sys
import time

import pytest

import fastsock
from fastsock import _core

LINUX = sys.platform.startswith("linux")
READS_BACK = LINUX or sys.platform.startswith("freebsd")
needs_readback = pytest.mark.skipif(not READS_BACK, reason="no per-socket backlog query here")
needs_linux = pytest.mark.skipif(not LINUX, reason="unix_diag and SO_MEMINFO are Linux's")


def _stdlib_listener(kind: str, tmp_path, backlog: int = 77) -> socket.socket:
    if kind == "tcp4":
        s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        s.bind(("127.0.0.1", 0))
    elif kind == "tcp6":
        if not socket.has_ipv6:
            pytest.skip("no IPv6")
        s = socket.socket(socket.AF_INET6, socket.SOCK_STREAM)
        try:
            s.bind(("::1", 0))
        except OSError:
            s.close()
            pytest.skip("no ::1")
    else:
        if kind == "unix-abstract" and not LINUX:
            pytest.skip("abstract AF_UNIX names are Linux's")
        if kind.startswith("unix") and not LINUX and not READS_BACK:
            pytest.skip("no AF_UNIX backlog query here")
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.bind(str(tmp_path / "l.sock") if kind == "unix-path"
               else f"\0fastsock-adopt-{os.getpid()}-{id(s)}")
    s.listen(backlog)
    return s


KINDS = ["tcp4", "tcp6", "unix-path", "unix-abstract"]


@needs_readback
@pytest.mark.parametrize("kind", KINDS)
def test_every_way_of_adopting_a_listener_reads_its_backlog(kind, tmp_path):
    with _stdlib_listener(kind, tmp_path) as lst:
        adopted = [
            fastsock.fromfd(lst.fileno(), lst.family, lst.type),
            fastsock.socket(fileno=os.dup(lst.fileno())),
            fastsock.socket(lst.family, lst.type, 0, os.dup(lst.fileno())),
        ]
        adopted.append(adopted[0].dup())
        a, b = socket.socketpair(socket.AF_UNIX)
        with a, b:
            socket.send_fds(a, [b"x"], [lst.fileno()])
            _, fds, _, _ = socket.recv_fds(b, 1, 1)
        adopted.append(fastsock.socket(fileno=fds[0]))
        try:
            for s in adopted:
                assert s.backlog == 77, s
                q = s.accept_queue()
                assert q is not None and q.limit == 77 and q.pending == 0
        finally:
            for s in adopted:
                s.close()


@needs_readback
def test_a_listener_made_by_another_process(tmp_path):
    """The descriptor comes from a child that listened with backlog 41 and
    sent it over SCM_RIGHTS; the child has exited by the time we read."""
    a, b = socket.socketpair(socket.AF_UNIX)
    code = ("import socket, sys\n"
            "c = socket.socket(fileno=int(sys.argv[1]))\n"
            "l = socket.socket(); l.bind(('127.0.0.1', 0)); l.listen(41)\n"
            "socket.send_fds(c, [b'x'], [l.fileno()])\n")
    with a, b:
        r = subprocess.run([sys.executable, "-c", code, str(b.fileno())],
                           pass_fds=[b.fileno()], timeout=60, capture_output=True, text=True)
        assert r.returncode == 0, r.stderr
        _, fds, _, _ = socket.recv_fds(a, 1, 1)
    with fastsock.socket(fileno=fds[0]) as s:
        assert s.backlog == 41
        assert s.accept_queue() == (0, 41)


def test_sockets_that_do_not_listen_have_no_backlog(tmp_path):
    with socket.socket() as lst:
        lst.bind(("127.0.0.1", 0))
        with fastsock.fromfd(lst.fileno(), lst.family, lst.type) as s:
            assert s.backlog is None and s.accept_queue() is None     # bound only
        lst.listen(5)
        with fastsock.create_connection(lst.getsockname()) as c:
            conn, _ = lst.accept()
            with conn, fastsock.socket(fileno=conn.detach()) as acc:
                assert c.backlog is None and acc.backlog is None
    u = fastsock.socket(socket.AF_UNIX)
    with u:
        assert u.backlog is None
        u.bind(str(tmp_path / "u.sock"))
        assert u.backlog is None
    assert u.backlog is None        # closed


@needs_readback
def test_listen_still_wins_and_the_kernel_figure_follows_a_relisten():
    with fastsock.socket() as s:
        s.bind(("127.0.0.1", 0))
        assert s.listen(9) == 9 == s.backlog
        with fastsock.fromfd(s.fileno(), s.family, s.type) as other:
            assert other.backlog == 9
            socket.socket.listen(s, 12)     # re-listened behind fastsock's back
            assert other.backlog == 12      # read afresh on each access


@needs_linux
def test_accept_queue_counts_pending_on_unix_listeners(tmp_path):
    path = str(tmp_path / "q.sock")
    with fastsock.listen(path, 8) as lst:
        clients = [socket.socket(socket.AF_UNIX) for _ in range(3)]
        try:
            for c in clients:
                c.connect(path)
            assert lst.accept_queue() == (3, 8)
            assert lst.accept_queue().drops == 0
            conn, _ = lst.accept()
            conn.close()
            assert lst.accept_queue().pending == 2
        finally:
            for c in clients:
                c.close()


@needs_linux
def test_drops_grow_when_the_queue_overflows():
    """Backlog 1 holds 2 completed connections (Linux: backlog + 1); the
    SYNs of the rest are dropped, and SO_MEMINFO counts each drop."""
    with fastsock.listen(("127.0.0.1", 0), 1) as lst:
        assert lst.accept_queue().drops == 0
        clients = []
        try:
            for _ in range(8):
                c = socket.socket()
                c.setblocking(False)
                c.connect_ex(lst.getsockname())
                clients.append(c)
            deadline = time.monotonic() + 10
            while lst.accept_queue().drops < 6 and time.monotonic() < deadline:
                time.sleep(0.01)
            q = lst.accept_queue()
            assert q.pending == 2 and q.limit == 1
            assert q.drops >= 6, q
            assert q.drops == _core.listener_drops(lst.fileno())
        finally:
            for c in clients:
                c.close()


def test_accept_queue_record_stays_a_pair():
    q = fastsock.AcceptQueue(3, 10, drops=4)
    pending, limit = q
    assert (pending, limit, q.pending, q.limit, q.drops) == (3, 10, 3, 10, 4)
    assert q == (3, 10) and len(q) == 2 and list(q) == [3, 10]
    assert repr(q) == "AcceptQueue(pending=3, limit=10, drops=4)"
    assert fastsock.AcceptQueue(1, 2).drops is None
    back = pickle.loads(pickle.dumps(q))
    assert type(back) is fastsock.AcceptQueue and back == q and back.drops == 4
    with pytest.raises(AttributeError):
        q.drops = 5     # type: ignore[misc]
