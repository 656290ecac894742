"""``fastsock.listen_fds()``: socket activation, sd_listen_fds(3) semantics.

Two kinds of test, each in a child process (the descriptors must sit at 3, 4,
... and LISTEN_PID must name the process that calls listen_fds):

- hand-built environments: the child places sockets, pipes or holes at 3..,
  sets LISTEN_* itself, calls listen_fds and reports what it got, which
  descriptors are open before and after, and what is left of the variables;
- the real ``systemd-socket-activate`` (Debian package ``systemd``; skipped
  where it is absent): several listeners, ``--fdname``, AF_UNIX, datagram;
  the child is exec'd by the tool with the tool's own environment.
"""

from __future__ import annotations

import json
import os
import shutil
import socket as S
import subprocess
import sys
import textwrap
import time

import pytest

import fastsock
from fastsock import errors as E

from test_reliability_capacity import child_env

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"),
                                reason="fd placement via /proc/self/fd (Linux)")

ACTIVATE = shutil.which("systemd-socket-activate")
needs_activate = pytest.mark.skipif(
    ACTIVATE is None, reason="no systemd-socket-activate (apt-get install systemd)")

# What every child reports: the result of listen_fds (or its error), the open
# descriptors before and after, and the LISTEN_* variables left.
REPORT = """
import json, os, socket as S, sys
import fastsock

def open_fds():
    def is_open(fd):     # drops the descriptor listdir itself used
        try:
            os.get_inheritable(fd)
            return True
        except OSError:
            return False
    return [fd for fd in sorted(int(f) for f in os.listdir("/proc/self/fd")) if is_open(fd)]

def describe(sock):
    d = {"fd": sock.fileno(), "family": int(sock.family), "type": int(sock.type),
         "proto": sock.proto, "backlog": sock.backlog,
         "inheritable": os.get_inheritable(sock.fileno()),
         "cls": type(sock) is fastsock.socket}
    try:
        name = sock.getsockname()
        d["name"] = name if isinstance(name, str) else list(name)
    except OSError:
        pass
    q = sock.accept_queue() if sock.type == S.SOCK_STREAM else None
    d["queue_limit"] = None if q is None else q.limit
    return d

def report(kwargs, extra=None):
    out = {"before": open_fds(), "pid": os.getpid()}
    try:
        got = fastsock.listen_fds(**kwargs)
    except Exception as exc:
        out["error"] = {"cls": type(exc).__name__, "str": str(exc),
                        "notes": getattr(exc, "__notes__", []),
                        "errno": getattr(exc, "errno", None),
                        "mro": [c.__name__ for c in type(exc).__mro__]}
        got = []
    out["after"] = open_fds()
    out["env"] = {k: v for k, v in os.environ.items() if k.startswith("LISTEN_")}
    pairs = got if kwargs.get("with_names") else [(None, s) for s in got]
    out["socks"] = [dict(describe(s), label=label) for label, s in pairs]
    if extra is not None:
        out["extra"] = extra([s for _, s in pairs])
    for _, s in pairs:
        s.close()
    out["closed"] = open_fds()
    print(json.dumps(out))
"""

# The child of the hand-built tests: put each kind of descriptor at 3 + i,
# set the variables, report.
HAND_BUILT = REPORT + """
import tempfile
spec = json.loads(sys.argv[1])
made = []
tmp = tempfile.mkdtemp()
for i, kind in enumerate(spec["kinds"]):
    if kind == "tcp":
        s = S.socket(S.AF_INET, S.SOCK_STREAM); s.bind(("127.0.0.1", 0)); s.listen(17)
    elif kind == "tcp6":
        s = S.socket(S.AF_INET6, S.SOCK_STREAM); s.bind(("::1", 0)); s.listen(17)
    elif kind == "unix":
        s = S.socket(S.AF_UNIX, S.SOCK_STREAM); s.bind(os.path.join(tmp, str(i))); s.listen(17)
    elif kind == "udp":
        s = S.socket(S.AF_INET, S.SOCK_DGRAM); s.bind(("127.0.0.1", 0))
    elif kind == "pipe":
        r, w = os.pipe(); os.close(w); made.append(r); continue
    else:                        # "closed": a hole
        made.append(None); continue
    made.append(s.detach())
# move them out of the way, then down to 3, 4, ... (inheritable, as a manager leaves them)
high = [None if fd is None else os.dup2(fd, 200 + i) for i, fd in enumerate(made)]
for fd in made:
    if fd is not None:
        os.close(fd)
for i, fd in enumerate(high):
    target = 3 + i
    if fd is None:
        try:
            os.close(target)
        except OSError:
            pass
    else:
        os.dup2(fd, target, inheritable=True)
        os.close(fd)
env = spec["env"]
if env.get("LISTEN_PID") == "self":
    env["LISTEN_PID"] = str(os.getpid())
elif env.get("LISTEN_PID") == "parent":
    env["LISTEN_PID"] = str(os.getppid())
os.environ.update(env)
report(spec["kwargs"])
"""


def clean_env(**extra):
    env = {k: v for k, v in child_env().items() if not k.startswith("LISTEN_")}
    env.update(extra)
    return env


def hand_built(kinds, env, **kwargs):
    spec = {"kinds": kinds, "env": env, "kwargs": kwargs}
    p = subprocess.run([sys.executable, "-c", HAND_BUILT, json.dumps(spec)],
                       capture_output=True, text=True, timeout=60, env=clean_env())
    assert p.returncode == 0, f"exit {p.returncode}\n{p.stdout}\n{p.stderr}"
    return json.loads(p.stdout.strip().splitlines()[-1])


def activation_env(n, names=None):
    env = {"LISTEN_PID": "self", "LISTEN_FDS": str(n)}
    if names is not None:
        env["LISTEN_FDNAMES"] = names
    return env


# ---- hand-built environments ------------------------------------------------

def test_sockets_of_every_kind_are_adopted_with_kernel_family_type_proto():
    out = hand_built(["tcp", "tcp6", "unix", "udp"], activation_env(4))
    assert "error" not in out, out["error"]
    socks = out["socks"]
    assert [s["fd"] for s in socks] == [3, 4, 5, 6]
    assert [(s["family"], s["type"], s["proto"]) for s in socks] == [
        (S.AF_INET, S.SOCK_STREAM, S.IPPROTO_TCP), (S.AF_INET6, S.SOCK_STREAM, S.IPPROTO_TCP),
        (S.AF_UNIX, S.SOCK_STREAM, 0), (S.AF_INET, S.SOCK_DGRAM, S.IPPROTO_UDP)]
    assert all(s["cls"] for s in socks), "fastsock.socket objects"
    assert not any(s["inheritable"] for s in socks), "FD_CLOEXEC must be set on each"
    assert out["env"] == {}, "unset_environment=True removes the variables"
    assert out["after"] == out["before"], "listen_fds opens and closes nothing"
    assert not set(out["closed"]) & {3, 4, 5, 6}


def test_backlog_is_read_back_from_the_kernel():
    # the child listened with backlog 17 before handing the sockets over
    out = hand_built(["tcp", "tcp6", "unix"], activation_env(3))
    assert "error" not in out, out["error"]
    assert [s["queue_limit"] for s in out["socks"]] == [17, 17, 17]
    assert [s["backlog"] for s in out["socks"]] == [17, 17, 17]


def test_names_from_listen_fdnames_and_unknown_without_it():
    out = hand_built(["tcp", "unix"], activation_env(2, "web:ctl"), with_names=True)
    assert [s["label"] for s in out["socks"]] == ["web", "ctl"]
    out = hand_built(["tcp", "unix"], activation_env(2), with_names=True)
    assert [s["label"] for s in out["socks"]] == ["unknown", "unknown"]
    out = hand_built(["tcp", "unix"], activation_env(2, "web:"), with_names=True)
    assert [s["label"] for s in out["socks"]] == ["web", ""]


def test_names_count_mismatch_is_an_error_only_when_names_are_asked_for():
    out = hand_built(["tcp", "unix"], activation_env(2, "a:b:c"), with_names=True)
    err = out["error"]
    assert err["cls"] == "ListenFdsError" and "ValueError" in err["mro"]
    assert "LISTEN_FDNAMES='a:b:c'" in err["str"] and "3 names" in err["str"]
    assert out["env"] == {}, "variables are unset on the error path too"
    assert out["after"] == out["before"] and {3, 4} <= set(out["after"])
    # sd_listen_fds (no names) does not read LISTEN_FDNAMES
    out = hand_built(["tcp", "unix"], activation_env(2, "a:b:c"))
    assert "error" not in out and len(out["socks"]) == 2
    # "" is no names at all (systemd's split), so 0 names for 1 descriptor
    out = hand_built(["tcp"], activation_env(1, ""), with_names=True)
    assert out["error"]["cls"] == "ListenFdsError" and "0 names" in out["error"]["str"]


@pytest.mark.parametrize("env", [
    {},                                                     # nothing passed
    {"LISTEN_FDS": "1"},                                    # no LISTEN_PID
    {"LISTEN_PID": "parent", "LISTEN_FDS": "1"},            # meant for another process
    {"LISTEN_PID": "self"},                                 # no LISTEN_FDS
    {"LISTEN_PID": "self", "LISTEN_FDS": "0"},
], ids=["none", "no-pid", "other-pid", "no-fds", "zero"])
def test_nothing_passed_gives_an_empty_list_and_touches_no_descriptor(env):
    out = hand_built(["tcp"], env)
    assert "error" not in out and out["socks"] == []
    assert out["env"] == {}
    assert out["after"] == out["before"] and 3 in out["after"]


def test_unset_environment_false_keeps_the_variables():
    out = hand_built(["tcp"], activation_env(1, "x"), unset_environment=False)
    assert len(out["socks"]) == 1
    assert out["env"] == {"LISTEN_PID": str(out["pid"]), "LISTEN_FDS": "1",
                          "LISTEN_FDNAMES": "x"}
    out = hand_built(["tcp"], {"LISTEN_PID": "parent", "LISTEN_FDS": "1"},
                     unset_environment=False)
    assert out["socks"] == [] and out["env"]["LISTEN_FDS"] == "1"


@pytest.mark.parametrize("variable,value,words", [
    ("LISTEN_FDS", "two", "not a non-negative decimal number"),
    ("LISTEN_FDS", "-1", "not a non-negative decimal number"),
    ("LISTEN_FDS", " 1", "not a non-negative decimal number"),
    ("LISTEN_FDS", "1_0", "not a non-negative decimal number"),
    ("LISTEN_FDS", "\u0661", "not a non-negative decimal number"),   # ARABIC-INDIC ONE
    ("LISTEN_FDS", "2147483645", "more descriptors than an int can number"),
    ("LISTEN_FDS", "9" * 40, "more descriptors than an int can number"),
    ("LISTEN_PID", "0", "not a process id"),
    ("LISTEN_PID", "pid", "not a non-negative decimal number"),
    ("LISTEN_PID", "-5", "not a non-negative decimal number"),
])
def test_malformed_variables_raise_listen_fds_error(variable, value, words):
    env = activation_env(1)
    env[variable] = value
    out = hand_built(["tcp"], env)
    err = out["error"]
    assert err["cls"] == "ListenFdsError", err
    assert err["str"] == f"{variable}={value!r}: {words}"
    assert out["env"] == {}, "sd_listen_fds unsets the variables on errors too"
    assert out["after"] == out["before"] and 3 in out["after"]


def test_huge_count_stops_at_the_first_descriptor_that_is_not_open():
    out = hand_built(["tcp", "unix"], activation_env(1_000_000))
    err = out["error"]
    assert err["cls"] == "BadDescriptorError" and err["errno"] == 9
    assert err["notes"] == ["LISTEN_FDS=1000000 names descriptor 5, which is not open"]
    assert out["after"] == out["before"], "nothing closed, nothing adopted"


def test_a_closed_descriptor_in_the_range_is_a_bad_descriptor_error():
    out = hand_built(["tcp", "closed", "unix"], activation_env(3))
    err = out["error"]
    assert err["cls"] == "BadDescriptorError" and "OSError" in err["mro"]
    assert err["str"] == "[Errno 9] Bad file descriptor"    # the stdlib's words; the call in the note
    assert out["after"] == out["before"] and {3, 5} <= set(out["after"])
    assert out["env"] == {}


def test_a_descriptor_that_is_not_a_socket_is_a_not_socket_error():
    out = hand_built(["tcp", "pipe"], activation_env(2))
    err = out["error"]
    assert err["cls"] == "NotSocketError" and err["errno"] == 88
    assert err["notes"] == ["LISTEN_FDS=2 names descriptor 4, which is not a socket"]
    assert out["after"] == out["before"] and {3, 4} <= set(out["after"])


def test_descriptors_past_the_count_are_left_alone():
    out = hand_built(["tcp", "tcp"], activation_env(1))
    assert [s["fd"] for s in out["socks"]] == [3]
    assert 4 in out["closed"], "fd 4 was not passed: not adopted, not closed"


def test_in_process_without_variables_and_for_another_pid(monkeypatch):
    for name in ("LISTEN_PID", "LISTEN_FDS", "LISTEN_FDNAMES"):
        monkeypatch.delenv(name, raising=False)
    assert fastsock.listen_fds() == []
    assert fastsock.listen_fds(with_names=True) == []
    monkeypatch.setenv("LISTEN_PID", str(os.getpid() + 1))
    monkeypatch.setenv("LISTEN_FDS", "1")
    assert fastsock.listen_fds(unset_environment=False) == []
    assert os.environ["LISTEN_FDS"] == "1"
    assert fastsock.listen_fds() == []
    assert "LISTEN_FDS" not in os.environ and "LISTEN_PID" not in os.environ


def test_listen_fds_error_pickles_and_is_exported():
    import pickle
    err = E.ListenFdsError("LISTEN_FDS", "x", "not a non-negative decimal number")
    again = pickle.loads(pickle.dumps(err))
    assert (type(again), str(again), again.variable, again.value) == (
        E.ListenFdsError, str(err), "LISTEN_FDS", "x")
    assert fastsock.ListenFdsError is E.ListenFdsError
    assert "listen_fds" in fastsock.__all__ and "ListenFdsError" in fastsock.__all__


# ---- the real systemd-socket-activate -------------------------------------------

# The tool waits for a first connection (or datagram) before it execs the child.
ACTIVATED = REPORT + """
import json, sys
def serve(socks):
    # the connection that woke the tool is queued on one of them: answer it
    seen = []
    for s in socks:
        if s.type == S.SOCK_STREAM:
            s.settimeout(0.0)
            try:
                conn, _ = s.accept()
            except BlockingIOError:
                continue
            with conn:
                conn.settimeout(10)
                conn.sendall(b"hello from fd %d" % s.fileno())
            seen.append(s.fileno())
        else:
            s.settimeout(10)
            data, peer = s.recvfrom(100)
            s.sendto(b"hello from fd %d" % s.fileno(), peer)
            seen.append([s.fileno(), data.decode()])
    return seen
report(json.loads(sys.argv[1]), serve)
"""


def free_port(family=S.AF_INET, host="127.0.0.1", kind=S.SOCK_STREAM):
    with S.socket(family, kind) as s:
        s.bind((host, 0))
        return s.getsockname()[1]


_CHILD_NEEDS = ("LD_PRELOAD", "ASAN_OPTIONS", "UBSAN_OPTIONS", "LSAN_OPTIONS",
                "PYTHONMALLOC", "PYTHONPATH")


def activate(listen, args, kwargs, wake, tmp_path):
    """Run the child under systemd-socket-activate -l each of ``listen``,
    wake it with ``wake()``, and return its report and what wake() read."""
    # the tool gives its child only the variables named with --setenv: pass on
    # what the interpreter needs to start (.ci/sanitize preloads libasan)
    keep = [f"--setenv={v}" for v in _CHILD_NEEDS if v in os.environ]
    cmd = [ACTIVATE, *[f"--listen={a}" for a in listen], *keep, *args,
           sys.executable, "-c", ACTIVATED, json.dumps(kwargs)]
    err = open(tmp_path / "stderr", "w+")
    with err, subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=err, text=True,
                               env=clean_env(), start_new_session=True) as p:
        try:
            deadline = time.monotonic() + 10
            while True:      # until the tool listens
                try:
                    answer = wake()
                    break
                except (ConnectionRefusedError, FileNotFoundError):
                    assert p.poll() is None, f"tool exited {p.returncode}"
                    assert time.monotonic() < deadline, "tool never listened"
                    time.sleep(0.02)
            out, _ = p.communicate(timeout=30)
        finally:
            if p.poll() is None:
                os.killpg(p.pid, 9)
                p.wait()
        err.seek(0)
        assert p.returncode == 0, f"exit {p.returncode}\n{out}\n{err.read()}"
        return json.loads(out.strip().splitlines()[-1]), answer, err.read()


def tcp_wake(host, port, family=S.AF_INET):
    def wake():
        with S.socket(family, S.SOCK_STREAM) as c:
            c.settimeout(10)
            c.connect((host, port))
            try:
                return c.recv(100).decode()
            except ConnectionResetError:    # the child failed: its report says why
                return "reset"
    return wake


@needs_activate
def test_systemd_socket_activate_several_sockets_with_names(tmp_path):
    p4, p6 = free_port(), free_port(S.AF_INET6, "::1")
    path = str(tmp_path / "ctl.sock")
    out, answer, log = activate(
        [f"127.0.0.1:{p4}", f"[::1]:{p6}", path], ["--fdname=web:web6:ctl"],
        {"with_names": True}, tcp_wake("::1", p6, S.AF_INET6), tmp_path)
    assert "error" not in out, out["error"]
    socks = out["socks"]
    assert [(s["label"], s["fd"], s["family"], s["type"]) for s in socks] == [
        ("web", 3, S.AF_INET, S.SOCK_STREAM), ("web6", 4, S.AF_INET6, S.SOCK_STREAM),
        ("ctl", 5, S.AF_UNIX, S.SOCK_STREAM)]
    assert socks[0]["name"] == ["127.0.0.1", p4] and socks[1]["name"][:2] == ["::1", p6]
    assert socks[2]["name"] == path
    assert not any(s["inheritable"] for s in socks)
    assert out["env"] == {} and out["after"] == out["before"]
    assert out["extra"] == [4] and answer == "hello from fd 4"
    # what the tool's listen(2) really gave (it asks for more than somaxconn)
    assert socks[0]["queue_limit"] == socks[1]["queue_limit"] == fastsock._core.somaxconn()[0]
    assert [s["backlog"] for s in socks[:2]] == [socks[0]["queue_limit"]] * 2
    assert isinstance(socks[2]["backlog"], int) and socks[2]["backlog"] > 0


@needs_activate
def test_systemd_socket_activate_unix_only(tmp_path):
    path = str(tmp_path / "only.sock")

    def wake():
        with S.socket(S.AF_UNIX, S.SOCK_STREAM) as c:
            c.settimeout(10)
            c.connect(path)
            return c.recv(100).decode()
    out, answer, _ = activate([path], [], {}, wake, tmp_path)
    assert [(s["fd"], s["family"], s["name"]) for s in out["socks"]] == [(3, S.AF_UNIX, path)]
    assert answer == "hello from fd 3" and out["env"] == {}


@needs_activate
def test_systemd_socket_activate_datagram(tmp_path):
    port = free_port(kind=S.SOCK_DGRAM)

    def wake():
        # connected UDP: a ping sent before the tool binds comes back as
        # ICMP port unreachable, i.e. ConnectionRefusedError, and is retried
        with S.socket(S.AF_INET, S.SOCK_DGRAM) as c:
            c.settimeout(10)
            c.connect(("127.0.0.1", port))
            c.send(b"ping")
            return c.recv(100).decode()
    out, answer, _ = activate([f"127.0.0.1:{port}"], ["--datagram"], {}, wake, tmp_path)
    assert [(s["family"], s["type"], s["proto"]) for s in out["socks"]] == [
        (S.AF_INET, S.SOCK_DGRAM, S.IPPROTO_UDP)]
    assert out["extra"] == [[3, "ping"]] and answer == "hello from fd 3"


@needs_activate
def test_systemd_socket_activate_names_mismatch_is_passed_through(tmp_path):
    # the tool itself passes 2 names for 3 descriptors (it warns and goes on)
    p1, p2 = free_port(), free_port()
    path = str(tmp_path / "m.sock")
    out, _, log = activate([f"127.0.0.1:{p1}", f"127.0.0.1:{p2}", path], ["--fdname=a:b"],
                           {"with_names": True}, tcp_wake("127.0.0.1", p1), tmp_path)
    assert out["error"]["cls"] == "ListenFdsError"
    assert out["error"]["str"] == \
        "LISTEN_FDNAMES='a:b': 2 names for LISTEN_FDS=3 descriptors"
    assert out["env"] == {} and {3, 4, 5} <= set(out["after"])
    assert out["after"] == out["before"]
