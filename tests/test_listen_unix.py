"""``fastsock.listen()`` on AF_UNIX paths: who may remove a socket file, and when.

The rules: a stale socket file (no listener behind it) is replaced; a live
listener gives ``AddressInUseError``; a path that is not a socket is never
deleted; on close the path is removed only if it is still the file this
listener created (same device and inode), and only by the process that
created it, so a successor's socket is never removed.  Several tests race
real processes for one path.
"""

from __future__ import annotations

import errno
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import textwrap
import time
import uuid

import pytest

import fastsock
from fastsock import _listen

pytestmark = pytest.mark.skipif(not hasattr(socket, "AF_UNIX"), reason="no AF_UNIX")


@pytest.fixture
def d():
    # short: AF_UNIX paths are limited to ~107 bytes
    path = tempfile.mkdtemp(prefix="fsu")
    yield path
    shutil.rmtree(path, ignore_errors=True)


def _ino(path):
    st = os.lstat(path)
    return st.st_dev, st.st_ino


def _stale(path):
    """A socket file with nothing behind it, as a crashed server leaves it."""
    s = socket.socket(socket.AF_UNIX)
    s.bind(path)
    s.close()
    return _ino(path)


def _reaches(path, listener, timeout=5.0) -> bool:
    """A connection to ``path`` arrives at ``listener``."""
    with socket.socket(socket.AF_UNIX) as c:
        c.settimeout(timeout)
        if c.connect_ex(path) != 0:
            return False
        listener.settimeout(timeout)
        conn, _ = listener.accept()
        conn.close()
        return True


def _env():
    env = dict(os.environ)
    root = os.path.dirname(os.path.dirname(os.path.abspath(fastsock.__file__)))
    env["PYTHONPATH"] = os.pathsep.join([root, env.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    return env


def _python(code, *args, **kw):
    return subprocess.Popen([sys.executable, "-c", textwrap.dedent(code), *map(str, args)],
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=_env(), **kw)


# ---------------------------------------------------------------------------
# the basic rules

def test_listen_on_a_fresh_path(d):
    path = os.path.join(d, "s")
    with fastsock.listen(path) as lst:
        assert lst.family == socket.AF_UNIX and lst.getsockname() == path
        assert lst.backlog >= 1
        assert _reaches(path, lst)
    assert not os.path.exists(path)


@pytest.mark.parametrize("kind", ["str", "bytes", "pathlike", "bytearray"])
def test_path_types(d, kind):
    import pathlib
    path = os.path.join(d, "s")
    address = {"str": path, "bytes": os.fsencode(path), "pathlike": pathlib.Path(path),
               "bytearray": bytearray(os.fsencode(path))}[kind]
    with fastsock.listen(address) as lst:
        assert _reaches(path, lst)
    assert not os.path.exists(path)


def test_stale_socket_file_is_replaced(d):
    path = os.path.join(d, "s")
    _stale(path)
    with fastsock.listen(path) as lst:
        # (not an inode comparison: the stale file's number may be reused)
        assert _reaches(path, lst)
    assert not os.path.exists(path)


def test_live_listener_gives_address_in_use(d):
    path = os.path.join(d, "s")
    with socket.socket(socket.AF_UNIX) as live:
        live.bind(path)
        live.listen()
        before = _ino(path)
        with pytest.raises(fastsock.AddressInUseError) as e:
            fastsock.listen(path)
        assert e.value.errno == errno.EADDRINUSE and isinstance(e.value, OSError)
        assert _ino(path) == before
        assert _reaches(path, live)


def test_live_listener_in_another_process(d):
    path = os.path.join(d, "s")
    p = _python("""
        import socket, sys
        s = socket.socket(socket.AF_UNIX); s.bind(sys.argv[1]); s.listen()
        print("ready", flush=True)
        while True:     # fastsock.listen's probe is one of these connections
            conn, _ = s.accept()
            try:
                conn.sendall(b"live")
            except OSError:     # the probe is gone already
                pass
            conn.close()
    """, path)
    try:
        assert p.stdout.readline().strip() == "ready"
        before = _ino(path)
        with pytest.raises(fastsock.AddressInUseError):
            fastsock.listen(path)
        assert _ino(path) == before
        with socket.socket(socket.AF_UNIX) as c:
            c.settimeout(10)
            c.connect(path)
            assert c.recv(4) == b"live"
    finally:
        p.kill()
        p.wait(10)


def test_live_datagram_socket_is_in_use(d):
    # connect(2) from the stale probe fails with EPROTOTYPE, not ECONNREFUSED
    path = os.path.join(d, "s")
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as live:
        live.bind(path)
        before = _ino(path)
        with pytest.raises(fastsock.AddressInUseError):
            fastsock.listen(path)
        assert _ino(path) == before


@pytest.mark.parametrize("what", ["file", "dir", "fifo", "symlink-to-stale-socket",
                                  "dangling-symlink"])
def test_path_that_is_not_a_socket_is_never_deleted(d, what):
    path = os.path.join(d, "s")
    if what == "file":
        with open(path, "w") as f:
            f.write("precious")
    elif what == "dir":
        os.mkdir(path)
    elif what == "fifo":
        os.mkfifo(path)
    elif what == "symlink-to-stale-socket":
        _stale(os.path.join(d, "target"))
        os.symlink(os.path.join(d, "target"), path)
    else:
        os.symlink(os.path.join(d, "nowhere"), path)
    before = _ino(path)
    with pytest.raises(OSError) as e:
        fastsock.listen(path)
    assert e.value.errno == errno.EADDRINUSE
    assert _ino(path) == before
    if what == "file":
        with open(path) as f:
            assert f.read() == "precious"


def test_missing_directory(d):
    with pytest.raises(FileNotFoundError) as e:
        fastsock.listen(os.path.join(d, "no", "such", "dir"))
    assert isinstance(e.value, fastsock.SocketError)


def test_replaced_file_is_not_removed_on_close(d):
    """Someone removed our file and a successor bound the path: our close
    leaves the successor's socket alone."""
    path = os.path.join(d, "s")
    ours = fastsock.listen(path)
    os.unlink(path)
    with socket.socket(socket.AF_UNIX) as successor:
        successor.bind(path)
        successor.listen()
        theirs = _ino(path)
        ours.close()
        assert _ino(path) == theirs
        assert _reaches(path, successor)


def test_regular_file_put_in_place_is_not_removed_on_close(d):
    path = os.path.join(d, "s")
    ours = fastsock.listen(path)
    os.unlink(path)
    with open(path, "w") as f:
        f.write("x")
    ours.close()
    assert os.path.isfile(path)


def test_path_is_gone_before_the_descriptor_closes(d):
    """The ordering that keeps racing successors safe: while the path still
    exists our socket is listening, so no fastsock successor can take it for
    stale and replace it between our check and our unlink."""
    path = os.path.join(d, "s")
    lst = fastsock.listen(path)
    seen = []

    class Spy:                                  # stands in for _socket.socket
        @staticmethod
        def close(sock):
            seen.append(os.path.exists(path))
            socket._socket.socket.close(sock)

    lst._closed = True
    lst._real_close(Spy)
    assert seen == [False] and lst.fileno() == -1


def test_close_via_makefile_refcount(d):
    path = os.path.join(d, "s")
    lst = fastsock.listen(path)
    f = lst.makefile("rb")
    lst.close()
    assert os.path.exists(path)                 # still open through the file
    f.close()
    assert not os.path.exists(path)


def test_detach_keeps_the_path(d):
    path = os.path.join(d, "s")
    lst = fastsock.listen(path)
    fd = lst.detach()
    lst.close()
    try:
        assert os.path.exists(path)             # the descriptor lives on
    finally:
        os.close(fd)


def test_failure_after_bind_removes_the_new_file(d):
    path = os.path.join(d, "s")
    with pytest.raises(TypeError):
        fastsock.listen(path, backlog=True)     # refused by listen(), after bind()
    assert not os.path.exists(path)


def test_failure_before_bind_touches_nothing(d):
    path = os.path.join(d, "s")
    old = _stale(path)
    with pytest.raises((TypeError, ValueError)):
        fastsock.listen(path, reuse_port="yes")
    assert _ino(path) == old


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="Linux abstract names")
def test_abstract_name():
    name = "\0fastsock-" + uuid.uuid4().hex
    with fastsock.listen(name) as lst:
        assert lst.getsockname() == name.encode()
        with pytest.raises(fastsock.AddressInUseError):
            fastsock.listen(name)
        with pytest.raises(fastsock.AddressInUseError):
            fastsock.listen(name.encode())
    with fastsock.listen(name.encode()):        # free again once closed
        pass


# ---------------------------------------------------------------------------
# other processes

_FORK = """
    import os, sys, socket
    import fastsock
    path = sys.argv[1]
    lst = fastsock.listen(path)
    pid = os.fork()
    if pid == 0:                                # a pre-fork worker exits
        lst.close()
        os._exit(0)
    os.waitpid(pid, 0)
    alive = os.path.exists(path)
    c = socket.socket(socket.AF_UNIX); c.connect(path)
    conn, _ = lst.accept(); conn.close(); c.close()
    lst.close()
    print(alive, os.path.exists(path))
"""


@pytest.mark.skipif(not hasattr(os, "fork"), reason="no fork")
def test_forked_child_closing_leaves_the_path(d):
    path = os.path.join(d, "s")
    p = _python(_FORK, path)
    out, err = p.communicate(timeout=60)
    assert p.returncode == 0, err
    assert out.split() == ["True", "False"]


_HOLDER = """
    import os, sys, time, json
    import fastsock
    path = sys.argv[1]
    lst = fastsock.listen(path)
    st = os.lstat(path)
    print(json.dumps([os.getpid(), st.st_ino]), flush=True)
    sys.stdin.readline()                        # hold until told
    lst.close()
    print("closed", flush=True)
    sys.stdin.readline()
"""


def test_successor_after_predecessor_exits(d):
    """A predecessor process closes, a successor process binds: the
    predecessor's cleanup never removes the successor's file."""
    path = os.path.join(d, "s")
    a = _python(_HOLDER, path)
    try:
        pid_a, ino_a = json.loads(a.stdout.readline())
        with pytest.raises(fastsock.AddressInUseError):
            fastsock.listen(path)               # A is live
        a.stdin.write("\n")
        a.stdin.flush()
        assert a.stdout.readline().strip() == "closed"
        assert not os.path.exists(path)
        b = _python(_HOLDER, path)
        try:
            pid_b, ino_b = json.loads(b.stdout.readline())
            assert os.lstat(path).st_ino == ino_b
        finally:
            b.stdin.write("\n\n")
            b.stdin.close()
            b.wait(30)
    finally:
        a.kill()
        a.wait(30)


_RACER = """
    import os, sys, time, json, socket
    import fastsock
    path, start, until = sys.argv[1], float(sys.argv[2]), float(sys.argv[3])
    wins = in_use = broken = 0
    while time.time() < start:
        pass
    while time.time() < until:
        try:
            lst = fastsock.listen(path)
        except fastsock.AddressInUseError:
            in_use += 1
            continue
        wins += 1
        mine = lst._unix_owner[2]
        time.sleep(0.002)
        # while we hold it, the path is ours and reaches us
        ok = os.lstat(path).st_ino == mine
        c = socket.socket(socket.AF_UNIX)
        c.setblocking(False)
        ok = ok and c.connect_ex(path) == 0
        lst.settimeout(1)
        try:
            conn, _ = lst.accept()
            conn.close()
        except OSError:
            ok = False
        c.close()
        broken += not ok
        lst.close()
    print(json.dumps({"wins": wins, "in_use": in_use, "broken": broken}))
"""


@pytest.mark.parametrize("start", ["fresh", "stale"])
def test_processes_racing_for_one_path(d, start):
    """Four processes take, hold and release one path as fast as they can for
    1.5 seconds.  Whoever holds it must find the file its own and reachable
    (no one replaced a live listener, no one's close removed a successor's
    file), and some attempts must have met a live holder."""
    path = os.path.join(d, "s")
    if start == "stale":
        _stale(path)
    t0 = time.time() + 1.0
    procs = [_python(_RACER, path, t0, t0 + 1.5) for _ in range(4)]
    results = []
    for p in procs:
        out, err = p.communicate(timeout=60)
        assert p.returncode == 0, err
        results.append(json.loads(out))
    assert sum(r["broken"] for r in results) == 0, results
    assert sum(r["wins"] for r in results) > 4, results
    assert sum(r["in_use"] for r in results) > 0, results
    assert not os.path.exists(path)


_SLOTS = """
    import os, sys, time, json
    import fastsock
    import fastsock._listen
    d, t0, rounds, slot = sys.argv[1], float(sys.argv[2]), int(sys.argv[3]), float(sys.argv[4])

    class SlowCore:             # fault injection: descheduled between bind and listen
        def __getattr__(self, name):
            return getattr(real, name)

        @staticmethod
        def listen(*args, **kw):
            time.sleep(0.01)
            return real.listen(*args, **kw)

    real, fastsock._listen._core = fastsock._listen._core, SlowCore()
    out = []
    for k in range(rounds):
        path = os.path.join(d, f"s{k}")
        start = t0 + k * slot
        time.sleep(max(0.0, start - time.time() - 0.005))
        while time.time() < start:              # everyone starts at this instant
            pass
        try:
            lst = fastsock.listen(path)
        except fastsock.AddressInUseError:
            lst = None
        if time.time() > start + 0.3 * slot:    # descheduled: not simultaneous
            out.append("late")
            if lst is not None:
                lst.close()
            continue
        if lst is None:
            out.append(None)
            continue
        while time.time() < start + 0.7 * slot:     # the others have tried by now
            time.sleep(0.002)
        try:
            ours = os.lstat(path).st_ino == lst._unix_owner[2]
        except FileNotFoundError:
            ours = False
        out.append(ours)
        lst.close()
    print(json.dumps(out))
"""


def test_simultaneous_start_has_one_winner(d):
    """Processes starting at the same instant on one path, round after round
    (half of the rounds on a stale file): exactly one gets the listener, the
    others AddressInUseError; none takes the winner's file, bound but not
    yet listening, for a stale one.  A round where a process was descheduled
    past its start does not count; on a loaded machine the experiment runs
    again (up to 4 times) until 6 rounds had at least two simultaneous
    starters."""
    rounds, slot, checked = 12, 0.25, 0
    for attempt in range(4):
        sub = os.path.join(d, f"a{attempt}")
        os.mkdir(sub)
        for k in range(1, rounds, 2):
            _stale(os.path.join(sub, f"s{k}"))
        t0 = time.time() + 1.0
        procs = [_python(_SLOTS, sub, t0, rounds, slot) for _ in range(4)]
        outs = []
        for p in procs:
            out, err = p.communicate(timeout=60)
            assert p.returncode == 0, err
            outs.append(json.loads(out))
        per_round = [sorted(str(x) for x in r if x != "late") for r in zip(*outs)]
        bad = [(k, r) for k, r in enumerate(per_round)
               if r and r != ["None"] * (len(r) - 1) + ["True"]]
        assert not bad, bad
        checked += sum(len(r) >= 2 for r in per_round)
        if checked >= rounds // 2:
            return
    pytest.fail(f"only {checked} rounds with simultaneous starters in 4 attempts")


def test_dir_lock_is_taken(d, monkeypatch):
    """listen() binds and listens under _dir_lock (what the races above rely on)."""
    held = []
    real = _listen._dir_lock

    def spy(path):
        held.append(path)
        return real(path)

    monkeypatch.setattr(_listen, "_dir_lock", spy)
    path = os.path.join(d, "s")
    fastsock.listen(path).close()
    assert held == [path]
