"""``fastsock.listeners()``, ``listen_counters()`` and the sock_diag parser.

The parser (csrc/fs_diag.c, through ``_core.diag_parse``) is tested apart from
the kernel with hand-built buffers: well-formed messages of every kind,
truncated ones, lying lengths, NLMSG_ERROR, and hypothesis-made records that
must come back field by field.  The live tests run against the kernel, the
field-by-field comparisons with ``ss`` (iproute2) inside a private network
namespace where only the test's listeners exist.
"""

from __future__ import annotations

import errno
import json
import os
import pickle
import re
import shutil
import socket
import struct
import sys
import time

import pytest
from _netns import run_in_netns
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import fastsock
from fastsock import _core
from fastsock.errors import ProtocolError, UnsupportedPlatformError

LINUX = sys.platform.startswith("linux")
needs_linux = pytest.mark.skipif(not LINUX, reason="sock_diag is Linux's")

# ---- hand-built sock_diag replies (the Linux wire format) -------------------------

NLMSG_ERROR, NLMSG_DONE, BY_FAMILY = 2, 3, 20
W_UNIX, W_INET, W_INET6 = 1, 2, 10


def _pad(n: int) -> bytes:
    return b"\0" * (-n % 4)


def nlmsg(type_: int, payload: bytes, *, length: int | None = None) -> bytes:
    n = 16 + len(payload)
    return struct.pack("=IHHII", n if length is None else length, type_, 2, 1, 0) \
        + payload + _pad(n)


def rta(type_: int, data: bytes, *, length: int | None = None) -> bytes:
    n = 4 + len(data)
    return struct.pack("=HH", n if length is None else length, type_) + data + _pad(n)


def meminfo(drops: int, nvars: int = 9) -> bytes:
    vals = [0] * nvars
    if nvars > 8:
        vals[8] = drops
    return struct.pack(f"={nvars}I", *vals)


def inet_msg(family: int = W_INET, port: int = 80, addr: bytes = bytes([127, 0, 0, 1]),
             *, state: int = 10, ifindex: int = 0, rq: int = 0, wq: int = 128, uid: int = 0,
             inode: int = 1234, attrs: bytes = b"") -> bytes:
    body = (struct.pack("=BBBB", family, state, 0, 0) + struct.pack(">HH", port, 0)
            + addr.ljust(16, b"\0") + b"\0" * 16 + struct.pack("=I", ifindex) + b"\xff" * 8
            + struct.pack("=IIIII", 0, rq, wq, uid, inode))
    assert len(body) == 72
    return nlmsg(BY_FAMILY, body + attrs)


def unix_msg(name: bytes | None = b"/run/x.sock", *, type_: int = 1, state: int = 10,
             inode: int = 99, rq: int | None = 0, wq: int | None = 5, drops: int | None = 0,
             uid: int | None = 1000) -> bytes:
    attrs = b""
    if name is not None:
        attrs += rta(0, name)
    if rq is not None:
        attrs += rta(4, struct.pack("=II", rq, wq))
    if drops is not None:
        attrs += rta(5, meminfo(drops))
    if uid is not None:
        attrs += rta(7, struct.pack("=I", uid))
    return nlmsg(BY_FAMILY, struct.pack("=BBBBI", W_UNIX, type_, state, 0, inode)
                 + b"\xff" * 8 + attrs)


DONE = nlmsg(NLMSG_DONE, struct.pack("=i", 0))
INET, UNIX = _core.DIAG_INET, _core.DIAG_UNIX


def test_parser_reads_each_kind():
    buf = (inet_msg(port=8080, rq=3, wq=64, uid=1000, inode=77, attrs=rta(7, meminfo(12)))
           + inet_msg(W_INET6, 443, socket.inet_pton(socket.AF_INET6, "fe80::1"), ifindex=2,
                      attrs=rta(1, b"\0" * 20))  # another attribute, ignored
           + DONE + b"garbage after DONE is not read")
    recs, done = _core.diag_parse(INET, buf)
    assert done is True
    assert recs == [
        (socket.AF_INET, socket.SOCK_STREAM, ("127.0.0.1", 8080), 64, 3, 12, 77, 1000, 10),
        (socket.AF_INET6, socket.SOCK_STREAM, ("fe80::1", 443, 0, 2), 128, 0, None, 1234, 0, 10),
    ]
    recs, done = _core.diag_parse(UNIX, unix_msg() + unix_msg(b"\0abstract", type_=5, inode=7,
                                                              drops=None, uid=None, rq=2, wq=9))
    assert done is False        # no NLMSG_DONE: more would follow
    assert recs == [(socket.AF_UNIX, 1, "/run/x.sock", 5, 0, 0, 99, 1000, 10),
                    (socket.AF_UNIX, 5, b"\0abstract", 9, 2, None, 7, None, 10)]


def test_parser_leaves_out_what_the_kernel_did_not_say():
    # not LISTEN: rqueue/wqueue mean other things, so no backlog or pending
    [rec], _ = _core.diag_parse(INET, inet_msg(state=1, rq=5, wq=6))
    assert rec[3:5] == (None, None) and rec[8] == 1
    # no RQLEN, no name (an unnamed socket), an old kernel's 8-entry meminfo: no drops
    [rec], _ = _core.diag_parse(UNIX, unix_msg(None, rq=None, drops=None)
                                + b"")
    assert rec[2] == "" and rec[3:6] == (None, None, None)
    [rec], _ = _core.diag_parse(UNIX, nlmsg(BY_FAMILY, struct.pack("=BBBBI", 1, 1, 10, 0, 1)
                                            + b"\0" * 8 + rta(5, meminfo(3, nvars=8))))
    assert rec[5] is None


def test_parser_skips_messages_without_records():
    ack = nlmsg(NLMSG_ERROR, struct.pack("=i", 0) + b"\0" * 16)
    noop = nlmsg(1, b"")
    recs, done = _core.diag_parse(INET, noop + ack + inet_msg() + DONE)
    assert len(recs) == 1 and done
    assert _core.diag_parse(INET, b"") == ([], False)


@pytest.mark.parametrize("buf", [
    b"\x10\0\0",                                    # shorter than a header
    nlmsg(BY_FAMILY, b"", length=15),               # nlmsg_len below the header
    nlmsg(BY_FAMILY, b"\0" * 72, length=200),       # nlmsg_len past the buffer
    inet_msg()[:-1],                                # truncated message
    nlmsg(BY_FAMILY, b"\0" * 71),                   # shorter than inet_diag_msg
    inet_msg(family=7),                             # no such family
    inet_msg(attrs=rta(7, meminfo(1), length=3)),   # attribute shorter than its header
    inet_msg(attrs=rta(7, meminfo(1), length=80)),  # attribute past its message
    nlmsg(NLMSG_ERROR, b"\0\0"),                    # error message without its errno
], ids=["short-header", "len-below-header", "len-past-buffer", "truncated", "short-inet",
        "bad-family", "attr-len-3", "attr-len-lies", "short-error"])
def test_parser_refuses_malformed_inet_buffers(buf):
    with pytest.raises(ProtocolError) as info:
        _core.diag_parse(INET, buf)
    assert info.value.errno == errno.EPROTO and info.value.syscall == "sock_diag"


@pytest.mark.parametrize("buf", [
    nlmsg(BY_FAMILY, struct.pack("=BBBBI", 1, 1, 10, 0, 1)),          # shorter than 16
    unix_msg(b"x" * 109),                                               # name > sun_path
    nlmsg(BY_FAMILY, struct.pack("=BBBBI", 1, 1, 10, 0, 1) + b"\0" * 8 + rta(4, b"\0" * 7)),
    nlmsg(BY_FAMILY, struct.pack("=BBBBI", 1, 1, 10, 0, 1) + b"\0" * 8 + rta(7, b"\0" * 3)),
    nlmsg(BY_FAMILY, struct.pack("=BBBBI", 2, 1, 10, 0, 1) + b"\0" * 8),  # not AF_UNIX
], ids=["short-unix", "long-name", "short-rqlen", "short-uid", "wrong-family"])
def test_parser_refuses_malformed_unix_buffers(buf):
    with pytest.raises(ProtocolError):
        _core.diag_parse(UNIX, buf)


def test_parser_raises_the_kernels_errno_and_failed_dumps():
    with pytest.raises(PermissionError) as info:
        _core.diag_parse(INET, nlmsg(NLMSG_ERROR, struct.pack("=i", -errno.EACCES) + b"\0" * 16))
    assert info.value.errno == errno.EACCES
    with pytest.raises(OSError) as info:   # a dump that failed part-way
        _core.diag_parse(INET, inet_msg() + nlmsg(NLMSG_DONE, struct.pack("=i", -errno.ENOBUFS)))
    assert info.value.errno == errno.ENOBUFS
    for type_ in (NLMSG_ERROR, NLMSG_DONE):    # INT32_MIN has no positive errno
        with pytest.raises(ProtocolError):       # (found by fuzz/fuzz_diag.py under UBSan)
            _core.diag_parse(INET, nlmsg(type_, struct.pack("=i", -2**31) + b"\0" * 16))
    with pytest.raises(fastsock.InvalidArgumentError):
        _core.diag_parse(7, b"")       # no such kind


_inet_rec = st.tuples(st.sampled_from([W_INET, W_INET6]), st.integers(0, 65535),
                      st.binary(min_size=16, max_size=16), st.integers(0, 2**32 - 1),
                      st.integers(0, 2**32 - 1), st.integers(0, 2**32 - 1),
                      st.integers(0, 2**32 - 1), st.one_of(st.none(), st.integers(0, 2**32 - 1)))


@given(st.lists(_inet_rec, max_size=20))
@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
def test_parser_round_trips_inet_records(recs):
    buf = b"".join(inet_msg(f, port, addr, rq=rq, wq=wq, uid=uid, inode=ino,
                            attrs=b"" if drops is None else rta(7, meminfo(drops)))
                   for f, port, addr, rq, wq, uid, ino, drops in recs) + DONE
    got, done = _core.diag_parse(INET, buf)
    assert done and len(got) == len(recs)
    for (f, port, addr, rq, wq, uid, ino, drops), g in zip(recs, got, strict=True):
        fam = socket.AF_INET if f == W_INET else socket.AF_INET6
        host = socket.inet_ntop(fam, addr[:4] if f == W_INET else addr)
        assert g[0] == fam and g[2][:2] == (host, port)
        assert g[3:] == (wq, rq, drops, ino, uid, 10)


@given(st.lists(st.tuples(st.binary(min_size=1, max_size=108).filter(lambda b: b[0] != 0),
                          st.integers(0, 2**32 - 1), st.integers(0, 2**32 - 1)), max_size=10))
@settings(max_examples=100, deadline=None)
def test_parser_round_trips_unix_abstract_names(recs):
    buf = b"".join(unix_msg(b"\0" + name[:107], rq=rq, wq=wq) for name, rq, wq in recs)
    got, _ = _core.diag_parse(UNIX, buf)
    assert [(g[2], g[3], g[4]) for g in got] == [(b"\0" + n[:107], wq, rq) for n, rq, wq in recs]


@given(st.binary(max_size=600), st.sampled_from([INET, UNIX]))
@settings(max_examples=300, deadline=None)
def test_parser_never_crashes_on_arbitrary_bytes(buf, kind):
    try:
        recs, _ = _core.diag_parse(kind, buf)
    except OSError:
        return
    assert all(len(r) == 9 for r in recs)


@given(st.integers(0, 400), st.integers(0, 200))
@settings(max_examples=200, deadline=None)
def test_parser_cut_anywhere_refuses_or_reads_a_prefix(cut, lie):
    whole = inet_msg(attrs=rta(7, meminfo(5))) + unix_msg() + DONE
    for kind in (INET, UNIX):
        for buf in (whole[:cut], struct.pack("=I", lie) + whole[4:cut]):
            try:
                recs, _ = _core.diag_parse(kind, buf)
            except OSError:
                continue
            assert len(recs) <= 2


# ---- the records and the error ------------------------------------------------------

def _record(**kw):
    base = dict(family=socket.AF_UNIX, type=socket.SOCK_STREAM, address=b"\0n\xff",
                backlog=5, pending=0, drops=None, inode=3, uid=None, processes=((1, "init"),))
    base.update(kw)
    return fastsock.Listener(**base)


def test_listener_records_are_frozen_and_json_ready():
    r = _record()
    with pytest.raises(AttributeError):
        r.backlog = 6       # type: ignore[misc]
    d = r.to_dict()
    assert json.loads(json.dumps(d)) == d
    assert d["family"] == "AF_UNIX" and d["address"] == "\0n\xff"
    assert d["address"].encode("latin-1") == r.address
    assert d["processes"] == [[1, "init"]]
    v6 = _record(family=socket.AF_INET6, address=("::1", 80, 0, 0))
    assert v6.to_dict()["address"] == ["::1", 80, 0, 0] and v6.port == 80
    assert pickle.loads(pickle.dumps(v6)) == v6 and r.port is None


def test_unsupported_platform_error():
    e = UnsupportedPlatformError("listeners")
    assert isinstance(e, NotImplementedError) and e.capability == "listeners"
    back = pickle.loads(pickle.dumps(e))
    assert type(back) is UnsupportedPlatformError and str(back) == str(e)
    assert fastsock.UnsupportedPlatformError is UnsupportedPlatformError


@pytest.mark.skipif(LINUX, reason="listeners() works here")
def test_listeners_raise_unsupported_elsewhere():
    assert fastsock.capabilities().listeners is False
    for call in (fastsock.listeners, fastsock.listen_counters):
        with pytest.raises(UnsupportedPlatformError) as info:
            call()
        assert info.value.capability == "listeners"


# ---- live, in this process's namespace ------------------------------------------------

@needs_linux
def test_our_listeners_are_reported_with_processes(tmp_path):
    assert fastsock.capabilities().listeners is True
    path = str(tmp_path / "l.sock")
    with fastsock.listen(("127.0.0.1", 0), 17) as tcp, fastsock.listen(path, 6) as unix:
        port = tcp.getsockname()[1]
        [rec] = fastsock.listeners(port=port, processes=True)
        assert (rec.family, rec.type, rec.address) == (socket.AF_INET, socket.SOCK_STREAM,
                                                       tcp.getsockname())
        assert (rec.backlog, rec.pending, rec.drops) == (17, 0, 0)
        assert rec.inode == os.fstat(tcp.fileno()).st_ino and rec.uid == os.getuid()
        assert (os.getpid(), _comm()) in rec.processes
        [u] = [r for r in fastsock.listeners(family=socket.AF_UNIX) if r.address == path]
        assert (u.backlog, u.pending, u.inode) == (6, 0, os.fstat(unix.fileno()).st_ino)
        assert u.processes == ()            # only with processes=True
        assert all(r.family != socket.AF_UNIX for r in fastsock.listeners(port=port))
    assert fastsock.listeners(port=port) == []


def _comm() -> str:
    with open(f"/proc/{os.getpid()}/comm") as f:
        return f.read().rstrip("\n")


@needs_linux
def test_listen_counters_are_the_kernels():
    c = fastsock.listen_counters()
    assert set(c) <= set(fastsock._listeners.LISTEN_COUNTERS)
    assert "ListenOverflows" in c and "ListenDrops" in c
    assert all(isinstance(v, int) and v >= 0 for v in c.values())


def test_bad_arguments():
    with pytest.raises(ValueError):
        fastsock.listeners(family=socket.AF_PACKET if hasattr(socket, "AF_PACKET") else 12345)
    with pytest.raises(ValueError):
        fastsock.listeners(port=70000)


# ---- in a private network namespace, against ss --------------------------------------

_NS_SETUP = r"""
import json, os, socket, subprocess, sys, time
import fastsock
keep = []
def lst(family, addr, backlog, type_=socket.SOCK_STREAM, v6only=None):
    s = socket.socket(family, type_)
    if v6only is not None:
        s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, v6only)
    s.bind(addr); s.listen(backlog); keep.append(s); return s
lst(socket.AF_INET, ("127.0.0.1", 0), 11)
lst(socket.AF_INET, ("0.0.0.0", 0), 12)
lst(socket.AF_INET6, ("::1", 0), 13)
lst(socket.AF_INET6, ("::", 0), 14, v6only=0)
lst(socket.AF_INET6, ("::ffff:127.0.0.1", 0), 15)
lst(socket.AF_UNIX, os.path.abspath("p.sock"), 16)
lst(socket.AF_UNIX, "\0fastsock-abstract", 17)
lst(socket.AF_UNIX, "\0fastsock-seq", 18, socket.SOCK_SEQPACKET)
full = lst(socket.AF_INET, ("127.0.0.2", 0), 1)
clients = []
for _ in range(6):
    c = socket.socket(); c.setblocking(False); c.connect_ex(full.getsockname()); clients.append(c)
other = subprocess.Popen([sys.executable, "-c",
    "import socket,sys; s=socket.socket(); s.bind(('127.0.0.3',0)); s.listen(19);"
    "print(s.getsockname()[1], flush=True); sys.stdin.read()"],
    stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
other_port = int(other.stdout.readline())
deadline = time.monotonic() + 10
while fastsock.socket.accept_queue(full).drops < 3 and time.monotonic() < deadline:
    time.sleep(0.01)
for c in clients:   # no SYN retransmits from here: ss and we see the same drop count
    c.close()
"""

_NS_COMPARE = _NS_SETUP + r"""
recs = fastsock.listeners(processes=True)
ss_t = subprocess.run(["ss", "-ltnmeH"], capture_output=True, text=True, check=True).stdout
ss_x = subprocess.run(["ss", "-lxmH"], capture_output=True, text=True, check=True).stdout
other.stdin.close(); other.wait()
print(json.dumps({"recs": [r.to_dict() for r in recs], "ss_t": ss_t, "ss_x": ss_x,
                  "full_port": full.getsockname()[1], "other_port": other_port,
                  "other_pid": other.pid, "pid": os.getpid()}))
"""


def _ns_json(code: str, timeout: float = 60) -> dict:
    """Run ``code`` in a fresh network namespace; its stdout, one JSON document."""
    r = run_in_netns(code, timeout=timeout)
    assert r.returncode == 0, r.stderr
    return json.loads(r.stdout)


def _ss_tcp(text: str) -> dict[int, dict]:
    out = {}
    for m in re.finditer(r"^LISTEN\s+(\d+)\s+(\d+)\s+(\S+):(\d+)\s+\S+\s+(.*)\n\s+skmem:\((.*?)\)",
                         text, re.M):
        rq, wq, host, port, rest, skmem = m.groups()
        ino = int(re.search(r"\bino:(\d+)", rest).group(1))
        uid = re.search(r"\buid:(\d+)", rest)
        out[ino] = {"host": host.strip("[]"), "port": int(port), "pending": int(rq),
                    "backlog": int(wq), "drops": int(re.search(r"\bd(\d+)", skmem).group(1)),
                    "uid": int(uid.group(1)) if uid else 0}
    return out


def _ss_unix(text: str) -> dict[int, dict]:
    out = {}
    for m in re.finditer(r"^(u_str|u_seq)\s+LISTEN\s+(\d+)\s+(\d+)\s+(.*?)\s+(\d+)\s+\*\s+\d+\s+"
                         r"skmem:\((.*?)\)", text, re.M):
        kind, rq, wq, name, ino, skmem = m.groups()
        out[int(ino)] = {"type": kind, "name": name, "pending": int(rq), "backlog": int(wq),
                         "drops": int(re.search(r"\bd(\d+)", skmem).group(1))}
    return out


def _same_host(ours: str, theirs: str, family: str) -> bool:
    if theirs == "*":
        theirs = "0.0.0.0" if family == "AF_INET" else "::"
    fam = socket.AF_INET if family == "AF_INET" else socket.AF_INET6
    return socket.inet_pton(fam, ours) == socket.inet_pton(fam, theirs.split("%")[0])


@needs_linux
def test_namespace_listeners_agree_with_ss_field_by_field():
    if shutil.which("ss") is None:
        pytest.skip("no ss (iproute2) on PATH")
    out = _ns_json(_NS_COMPARE, 60)
    recs, tcp, unix = out["recs"], _ss_tcp(out["ss_t"]), _ss_unix(out["ss_x"])
    inet = [x for x in recs if x["family"] != "AF_UNIX"]
    local = [x for x in recs if x["family"] == "AF_UNIX"]
    assert len(inet) == 7 and len(tcp) == 7, (recs, out["ss_t"])
    assert len(local) == 3 and len(unix) == 3, (recs, out["ss_x"])
    for x in inet:
        s = tcp[x["inode"]]
        assert _same_host(x["address"][0], s["host"], x["family"]), (x, s)
        assert (x["address"][1], x["backlog"], x["pending"], x["drops"], x["uid"]) == \
            (s["port"], s["backlog"], s["pending"], s["drops"], s["uid"]), (x, s)
    for x in local:
        s = unix[x["inode"]]
        name = "@" + x["address"][1:] if x["address"].startswith("\0") else x["address"]
        assert (name, x["backlog"], x["pending"], x["drops"]) == \
            (s["name"], s["backlog"], s["pending"], s["drops"]), (x, s)
        assert s["type"] == ("u_seq" if x["type"] == "SOCK_SEQPACKET" else "u_str")
    by_port = {x["address"][1]: x for x in inet}
    full = by_port[out["full_port"]]
    assert full["backlog"] == 1 and full["pending"] == 2 and full["drops"] >= 3
    assert by_port[out["other_port"]]["backlog"] == 19
    assert [out["other_pid"]] == [p for p, _ in by_port[out["other_port"]]["processes"]]
    assert all(out["pid"] in [p for p, _ in x["processes"]]
               for x in recs if x["address"] != by_port[out["other_port"]]["address"])
    assert {x["address"][0] for x in inet} >= {"127.0.0.1", "0.0.0.0", "::1", "::",
                                               "::ffff:127.0.0.1"}


_NS_DROPS = r"""
import json, socket, time
import fastsock
full = fastsock.listen(("127.0.0.1", 0), 1)
port = full.getsockname()[1]
before = fastsock.listen_counters()["ListenOverflows"]
seen = [fastsock.listeners(port=port)[0].drops]
clients = []
for round_ in range(3):
    for _ in range(4):
        c = socket.socket(); c.setblocking(False); c.connect_ex(("127.0.0.1", port))
        clients.append(c)
    deadline = time.monotonic() + 10
    while fastsock.listeners(port=port)[0].drops <= seen[-1] and time.monotonic() < deadline:
        time.sleep(0.01)
    seen.append(fastsock.listeners(port=port)[0].drops)
print(json.dumps({"seen": seen, "overflows": fastsock.listen_counters()["ListenOverflows"] - before,
                  "queue": list(full.accept_queue()), "drops": full.accept_queue().drops}))
"""


@needs_linux
def test_drops_grow_when_the_queue_overflows_in_a_namespace():
    out = _ns_json(_NS_DROPS, 60)
    seen = out["seen"]
    assert seen[0] == 0 and seen == sorted(seen) and len(set(seen)) == 4, seen
    assert out["queue"] == [2, 1] and out["drops"] == seen[-1]
    assert out["overflows"] >= 1     # the namespace's counter moved too


_NS_MANY = r"""
import json, resource, socket, time
import fastsock
N = 10_000
soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
want = N + 200
resource.setrlimit(resource.RLIMIT_NOFILE, (max(soft, want), max(hard, want)))
socks, ports = [], set()
for i in range(N):
    s = socket.socket()
    s.bind((f"127.0.{1 + i // 250}.{1 + i % 250}", 5000))
    s.listen(3)
    socks.append(s)
t = time.perf_counter()
recs = fastsock.listeners(family=socket.AF_INET)
took = time.perf_counter() - t
got = {r.address for r in recs}
print(json.dumps({"n": len(recs), "all": got == {s.getsockname() for s in socks},
                  "backlogs": sorted({r.backlog for r in recs}), "seconds": took,
                  "port": len(fastsock.listeners(port=5000))}))
"""


@needs_linux
def test_ten_thousand_listeners_are_all_reported():
    out = _ns_json(_NS_MANY, 120)
    assert out["n"] == 10_000 and out["all"] is True and out["backlogs"] == [3]
    assert out["port"] == 10_000


# ---- the CLI ---------------------------------------------------------------------------

_NS_CLI = r"""
import json, os, pty, select, signal, socket, subprocess, sys, time
import fastsock
CLI = [sys.executable, "-m", "fastsock"]
def run(*args):
    return subprocess.run([*CLI, *args], capture_output=True, text=True, timeout=60)
full = fastsock.listen(("127.0.0.1", 0), 1)
port = full.getsockname()[1]
quiet = fastsock.listen("\0fastsock-cli", 4)
res = {"port": port}
res["json"] = json.loads(run("listeners", "--json", "--port", str(port)).stdout)
res["table"] = run("listeners").stdout
# watch, not a terminal: one line per change; Ctrl-C ends it with a summary
w = subprocess.Popen([*CLI, "listeners", "--watch", "0.05"], stdout=subprocess.PIPE,
                     stderr=subprocess.PIPE, text=True)
lines = [w.stdout.readline(), w.stdout.readline()]
clients = []
for _ in range(6):
    c = socket.socket(); c.setblocking(False); c.connect_ex(("127.0.0.1", port)); clients.append(c)
deadline = time.monotonic() + 10
while full.accept_queue().drops < 3 and time.monotonic() < deadline:
    time.sleep(0.01)
time.sleep(0.3)
w.send_signal(signal.SIGINT)
out, err = w.communicate(timeout=30)
res["watch"] = {"rc": w.returncode, "out": "".join(lines) + out, "err": err}
for c in clients:   # no more SYN retransmits: the drop count stays put from here
    c.close()
res["drops"] = full.accept_queue().drops
# watch on a terminal: redrawn in place, drops/s column
m, s = pty.openpty()
t = subprocess.Popen([*CLI, "listeners", "--watch", "0.05", "--count", "2"], stdout=s,
                     stderr=subprocess.PIPE, text=True)
os.close(s)
buf = b""
while True:
    r, _, _ = select.select([m], [], [], 30)
    if not r:
        break
    try:
        chunk = os.read(m, 65536)
    except OSError:
        break
    if not chunk:
        break
    buf += chunk
t.wait(timeout=30)
os.close(m)
res["tty"] = {"rc": t.returncode, "out": buf.decode("utf-8", "replace")}
res["report"] = run().stdout
res["report_json"] = json.loads(run("--json").stdout)["listeners_dropping"]
res["bad"] = [run("listeners", "--port", "x").returncode, run("listeners", "--watch", "0").returncode]
print(json.dumps(res))
"""


@needs_linux
def test_cli_in_a_namespace():
    out = _ns_json(_NS_CLI, 120)
    port = out["port"]
    [rec] = out["json"]
    assert rec["address"] == ["127.0.0.1", port] and rec["backlog"] == 1
    table = out["table"].splitlines()
    assert table[0].split() == ["address", "backlog", "pending", "fill", "drops"]
    assert any(ln.startswith("@fastsock-cli ") for ln in table) and table[-1] == "2 listener(s)"
    w = out["watch"]
    assert w["rc"] == 0, w["err"]
    lines = w["out"].splitlines()
    assert any(f"127.0.0.1:{port} listening backlog=1 pending=0 drops=0" in ln for ln in lines)
    assert any(re.search(rf"127\.0\.0\.1:{port} backlog=1 pending=2 drops=\d+ "
                         r"\(\+\d+ drops, [\d.]+/s\)$", ln) for ln in lines), lines
    assert lines[-1].startswith("watched ") and f"127.0.0.1:{port} dropped " in lines[-1]
    assert int(lines[-1].split("dropped ")[1].split(";")[0]) >= 3
    tty = out["tty"]
    assert tty["rc"] == 0 and tty["out"].count("\x1b[H\x1b[2J") == 2
    assert "drops/s" in tty["out"] and "Ctrl-C to stop" in tty["out"]
    # the main report names the dropping listener
    assert f"127.0.0.1:{port}: {out['drops']} drops, queue 2/1" in out["report"]
    assert "1 dropping:" in out["report"]
    assert [d["address"] for d in out["report_json"]] == [["127.0.0.1", port]]
    assert out["bad"] == [2, 2]
