"""CPython's own socket-related test suites, run with ``socket`` replaced by fastsock.

``stdlib_suite.py`` (next to this file) runs the named suites in a subprocess
that does ``sys.modules['socket'] = fastsock`` first; the same suites also
run against the stdlib, both at once.  A test that passes (or skips) with
the stdlib and fails with fastsock is a fastsock bug, unless it is one of
``DOCUMENTED_DIFFERENCES`` (each with its reason, as in the README).  Tests
that fail with the stdlib too do not count.

By default a bounded selection runs (about a minute).  ``FASTSOCK_STDLIB_FULL=1``
runs the whole modules, and more of them (asyncio, ssl, http.client, urllib).
Skips cleanly where the interpreter has no ``test`` package (``test.support``).
"""

from __future__ import annotations

import collections
import contextlib
import json
import os
import signal
import subprocess
import sys
import tempfile

import pytest

import fastsock

pytest.importorskip("test.support", reason="this Python has no test package (Lib/test)")

HERE = os.path.dirname(os.path.abspath(__file__))
FULL = os.environ.get("FASTSOCK_STDLIB_FULL") == "1"

# test.test_socket classes: the ones the facade touches (bind, listen, accept,
# connect, timeouts, AF_UNIX, makefile, sendfile, fd passing) and cheap to run.
SOCKET_CLASSES = [
    "GeneralModuleTests", "BasicTCPTest", "BasicTCPTest2", "NonBlockingTCPTests",
    "NetworkConnectionNoServer", "NetworkConnectionAttributesTest",
    "NetworkConnectionBehaviourTest", "BasicUDPTest", "BasicSocketPairTest",
    "TCPTimeoutTest", "UDPTimeoutTest", "TestUnixDomain", "TestLinuxAbstractNamespace",
    "CreateServerTest", "CreateServerFunctionalTest", "ContextManagersTest",
    "InheritanceTest", "NonblockConstantTest", "TestExceptions", "TCPCloserTest",
    "FileObjectClassTestCase", "SendfileUsingSendfileTest", "RecvmsgUnixStreamTest",
    "SendmsgUnixStreamTest", "RecvmsgSCMRightsStreamTest", "SendRecvFdsTests",
    "InterruptedRecvTimeoutTest",
]

SUITES = [
    "test.test_socket" if FULL else "test.test_socket:" + ",".join(SOCKET_CLASSES),
    "test.test_socketserver",
    "test.test_httpservers",
    "test.test_selectors",
]
if FULL:
    SUITES += [
        "test.test_ssl", "test.test_httplib", "test.test_urllib2_localnet",
        "test.test_asyncio.test_sock_lowlevel", "test.test_asyncio.test_server",
        "test.test_asyncio.test_streams", "test.test_asyncio.test_events",
        "test.test_asyncio.test_base_events", "test.test_asyncio.test_unix_events",
        "test.test_asyncio.test_sendfile", "test.test_asyncio.test_ssl",
    ]

# Tests that cannot work in some environments, left out of both runs.
EXCLUDE = [
    "VSOCK",    # AF_VSOCK sockets exist in VMs without a vsock transport: accept hangs
]

# test id (or a prefix of one) -> why fastsock deliberately behaves differently.
# Empty: with the documented differences (README) no CPython test fails.
DOCUMENTED_DIFFERENCES: dict[str, str] = {}


def _run(side: str, out: str) -> subprocess.Popen:
    env = dict(os.environ)
    root = os.path.dirname(os.path.dirname(os.path.abspath(fastsock.__file__)))
    env["PYTHONPATH"] = os.pathsep.join([root, env.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    args = [sys.executable, os.path.join(HERE, "stdlib_suite.py"), "--out", out,
            "--resources", "network", "--per-test-timeout", "60"]
    for x in EXCLUDE:
        args += ["--exclude", x]
    if side == "fastsock":
        args.append("--fastsock")
    # stderr to a file, not a pipe, and a session of its own: a process the
    # suite forked (socketserver's forking servers) and left behind -- e.g.
    # deadlocked in the sanitizer's allocator after fork() in a threaded
    # process -- must not keep the run open by holding a pipe, and is killed
    # with the session when the run ends
    with open(out + ".stderr", "w") as err:
        return subprocess.Popen(args + SUITES, stdout=subprocess.DEVNULL, stderr=err, text=True,
                                env=env, cwd=tempfile.gettempdir(), start_new_session=True)


def _read(path: str) -> tuple[dict, dict[str, tuple[str, str]], list[str]]:
    header, results, started = {}, {}, []
    with open(path) as f:
        for line in f:
            o = json.loads(line)
            if "socket_module" in o:
                header = o
            elif "start" in o:
                started.append(o["start"])
            else:
                results[o["id"]] = (o["outcome"], o["detail"])
    return header, results, [t for t in started if t not in results]


def _documented(test_id: str) -> str | None:
    for key, why in DOCUMENTED_DIFFERENCES.items():
        if test_id == key or test_id.startswith(key + "."):
            return why
    return None


# A run takes about a minute (under the sanitizers too); every test and what
# runs between tests is bounded by --per-test-timeout, so this only catches a
# process that its own watchdog could not end.
RUN_LIMIT = 300


def _finish(p: subprocess.Popen, path: str) -> dict:
    killed = ""
    try:
        p.wait(timeout=RUN_LIMIT)
    except subprocess.TimeoutExpired:
        p.kill()
        p.wait()
        killed = f"\n(killed after {RUN_LIMIT} s)"
    with contextlib.suppress(ProcessLookupError):
        os.killpg(p.pid, signal.SIGKILL)        # whatever the run left behind
    with open(path + ".stderr") as f:
        err = f.read() + killed
    header, results, hung = _read(path)
    if not hung and ("Timeout (" in err or p.returncode == -9):
        hung = ["(between tests: set-up, tear-down or exit)"]
    return {"rc": p.returncode, "stderr": err[-5000:], "header": header,
            "results": results, "hung": hung}


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """Both runs at once.  A run that hung (a test, or what runs between
    tests, over the per-test timeout ends its process) runs once more:
    CPython's signal tests (e.g. test_sendall_interrupted, where SIGALRM must
    interrupt the main thread's send()) have hung once on a loaded CI machine;
    a hang that repeats fails test_both_runs_completed, and the first one is
    printed."""
    d = tmp_path_factory.mktemp("stdlib")
    paths = {side: str(d / f"{side}.jsonl") for side in ("socket", "fastsock")}
    procs = {side: _run(side, path) for side, path in paths.items()}
    out = {side: _finish(p, paths[side]) for side, p in procs.items()}
    again = {}
    for side, r in out.items():
        if r["hung"]:
            print(f"\n{side} run hung in {r['hung']}; running it again. Its stderr:\n"
                  f"{r['stderr']}")
            again[side] = (_run(side, paths[side] + ".again"), paths[side] + ".again")
    for side, (p, path) in again.items():
        out[side] = _finish(p, path)
    return out


def _summary(results) -> str:
    return ", ".join(f"{k} {v}" for k, v in
                     sorted(collections.Counter(o for o, _ in results.values()).items()))


def test_both_runs_completed(runs):
    for side in ("socket", "fastsock"):
        r = runs[side]
        assert r["rc"] == 0 and not r["hung"], (side, r["hung"], r["stderr"])
    assert runs["socket"]["header"]["socket_class"] == "socket.socket"
    assert runs["fastsock"]["header"]["socket_module"] == "fastsock"
    assert runs["fastsock"]["header"]["socket_class"] == "fastsock.socket"
    std, ours = runs["socket"]["results"], runs["fastsock"]["results"]
    assert set(std) == set(ours)
    ok = sum(o == "ok" for o, _ in ours.values())
    assert ok >= 200, _summary(ours)       # the suites really ran
    print(f"\nstdlib:   {_summary(std)}\nfastsock: {_summary(ours)}")


def test_no_fastsock_only_failures(runs):
    std, ours = runs["socket"]["results"], runs["fastsock"]["results"]
    bad = []
    for tid, (outcome, detail) in sorted(ours.items()):
        if outcome in ("fail", "error") and std.get(tid, ("",))[0] not in ("fail", "error"):
            if not _documented(tid):
                bad.append(f"{tid}: {outcome}\n{detail}")
    assert not bad, "\n\n".join(bad)


def test_documented_differences_still_differ(runs):
    """An entry whose test now passes with fastsock is stale: remove it."""
    ours = runs["fastsock"]["results"]
    stale = [k for k in DOCUMENTED_DIFFERENCES
             if any((t == k or t.startswith(k + ".")) and o == "ok" for t, (o, _) in ours.items())]
    assert not stale
