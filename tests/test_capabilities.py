"""Contract tests: every capability fastsock reports is held against what the
running kernel really does (psutil's test_contracts idea), on loopback and in
private network namespaces with altered sysctls."""

from __future__ import annotations

import dataclasses
import json
import os
import select
import socket
import subprocess
import sys
import time
import warnings

import pytest
from _netns import run_in_netns

from fastsock import _core
from fastsock._capabilities import Capabilities, capabilities, has, queue_capacity

LINUX = sys.platform.startswith("linux")
linux_only = pytest.mark.skipif(not LINUX, reason="reads Linux /proc/sys")


def proc(name: str) -> str:
    with open("/proc/sys/" + name.replace(".", "/")) as f:
        return f.read().strip()


@pytest.fixture(scope="module")
def caps() -> Capabilities:
    return capabilities()


def closing(*socks):
    for s in socks:
        s.close()


# ---- the record --------------------------------------------------------------

def test_record_is_frozen_slotted_and_json(caps):
    assert dataclasses.is_dataclass(caps)
    assert not hasattr(caps, "__dict__")  # slots
    with pytest.raises(dataclasses.FrozenInstanceError):
        caps.somaxconn = 1  # type: ignore[misc]
    d = caps.to_dict()
    assert list(d) == [f.name for f in dataclasses.fields(caps)]
    assert json.loads(json.dumps(d)) == d
    assert d["ephemeral_port_range"] is None or isinstance(d["ephemeral_port_range"], list)


def test_every_field_is_documented():
    for f in dataclasses.fields(Capabilities):
        assert {"section", "label", "doc"} <= set(f.metadata), f.name
        assert len(f.metadata["doc"]) > 20, f.name


def test_import_does_no_work(tmp_path):
    code = (
        "import socket, sys\n"
        "made = []\n"
        "class Counting(socket.socket):\n"
        "    def __init__(self, *a, **k):\n"
        "        made.append(a); super().__init__(*a, **k)\n"
        "socket.socket = Counting\n"
        "import fastsock\n"
        "assert 'fastsock._capabilities' not in sys.modules, 'imported by fastsock'\n"
        "import fastsock._capabilities\n"
        "assert made == [], made\n"
        "fastsock._capabilities.capabilities()\n"
        "assert made, 'the probes should have made sockets'\n"
    )
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                       timeout=60, cwd=tmp_path, check=False)
    assert r.returncode == 0, r.stderr


@linux_only
def test_probes_leave_no_descriptor_open():
    capabilities()  # warm imports
    before = sorted(os.listdir("/proc/self/fd"))
    for _ in range(20):
        capabilities()
        has("abstract_unix")
    assert sorted(os.listdir("/proc/self/fd")) == before


def test_read_at_call_time_not_cached():
    a, b = capabilities(), capabilities()
    assert a == b and a is not b


def test_facade_exports_capabilities_and_has():
    import fastsock

    assert isinstance(fastsock.capabilities(), Capabilities)
    assert fastsock.has("af_unix") is capabilities().af_unix
    assert fastsock.Capabilities is Capabilities


def test_facade_loads_capabilities_lazily(tmp_path):
    code = (
        "import sys\n"
        "import fastsock\n"
        "assert 'fastsock._capabilities' not in sys.modules, 'loaded by import fastsock'\n"
        "caps = fastsock.capabilities()\n"
        "from fastsock._capabilities import Capabilities\n"
        "assert isinstance(caps, Capabilities), type(caps)\n"
    )
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                       timeout=60, cwd=tmp_path, check=False)
    assert r.returncode == 0, r.stderr


# ---- has() -----------------------------------------------------------------

def test_has_agrees_with_the_record_for_every_boolean(caps):
    booleans = [f.name for f in dataclasses.fields(caps) if f.type == "bool"]
    assert len(booleans) >= 15
    for name in booleans:
        assert has(name) is getattr(caps, name), name


@pytest.mark.parametrize("bad", ["no_such_thing", "somaxconn", "ephemeral_port_range", ""])
def test_has_rejects_unknown_and_non_boolean_names(bad):
    with pytest.raises(ValueError, match="reuse_port") as info:
        has(bad)
    assert repr(bad) in str(info.value)


def test_has_rejects_non_str():
    with pytest.raises(TypeError):
        has(b"reuse_port")  # type: ignore[arg-type]


# ---- platform ----------------------------------------------------------------

def test_platform_facts(caps):
    assert caps.platform == _core.PLATFORM
    assert caps.sys_platform == sys.platform
    assert caps.kernel_release == os.uname().release
    assert caps.compile_time_somaxconn == socket.SOMAXCONN
    assert caps.backlog_rules == _core.BACKLOG_RULES
    assert caps.accept4 is bool(_core.HAVE_ACCEPT4)
    assert caps.sock_cloexec is bool(_core.HAVE_SOCK_CLOEXEC)
    assert caps.sock_nonblock is bool(_core.HAVE_SOCK_NONBLOCK)
    assert caps.io_uring_accept is (_core.accept_batching() == "io_uring")


@pytest.mark.parametrize("flag", ["SOCK_CLOEXEC", "SOCK_NONBLOCK"])
def test_socket_type_flags_work_when_reported(caps, flag):
    reported = getattr(caps, flag.lower())
    value = getattr(socket, flag, None)
    if not reported:
        return  # nothing to hold: the kernel or the build lacks it
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM | value)
    try:
        if flag == "SOCK_NONBLOCK":
            assert s.getblocking() is False
        else:
            assert os.get_inheritable(s.fileno()) is False
    finally:
        s.close()


# ---- backlog ----------------------------------------------------------------

def test_core_rule_table_agrees_with_the_core_plan():
    assert {_core.backlog_rules(r)["name"] for r in _core.RULES} == set(_core.RULES)
    for rules in _core.RULES:
        passed = _core.plan_backlog(rules, None, 2**62)[0]
        assert passed == _core.backlog_rules(rules)["storage_max"], rules
        num, den, add = _core.backlog_rules(rules)["capacity"]
        for backlog in (0, 1, 2, 3, 100, 4096):
            expected = _core.plan_backlog(rules, backlog, 2**30)[2]
            assert queue_capacity(backlog, rules) == expected, (rules, backlog)
            if backlog:
                assert expected == max(1, backlog * num // den + add), (rules, backlog)


def test_core_backlog_rules_default_and_errors(caps):
    running = _core.backlog_rules()
    assert running == _core.backlog_rules(_core.BACKLOG_RULES)
    assert set(running) == {"name", "storage_max", "zero_is_maximum", "capacity", "knob"}
    assert running["name"] == caps.backlog_rules
    assert running["storage_max"] == caps.backlog_storage_max
    if caps.somaxconn_knob is not None:
        assert caps.somaxconn_knob == running["knob"]
    with pytest.raises(ValueError, match="windows"):
        _core.backlog_rules("windows")
    with pytest.raises(TypeError):
        _core.backlog_rules(b"linux")  # type: ignore[arg-type]


@linux_only
def test_somaxconn_is_proc_and_what_listen_applies(caps):
    assert caps.somaxconn == int(proc("net.core.somaxconn"))
    assert caps.somaxconn_source == "/proc/sys/net/core/somaxconn"
    assert caps.somaxconn_knob == "net.core.somaxconn"
    assert (caps.somaxconn, caps.somaxconn_source) == _core.somaxconn()
    assert caps.default_backlog == min(caps.somaxconn, caps.backlog_storage_max)
    fd = _core.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        _core.bind(fd, socket.AF_INET, ("127.0.0.1", 0))
        assert _core.listen(fd, None) == caps.default_backlog
        if caps.backlog_readback:
            assert _core.effective_backlog(fd) == caps.default_backlog
    finally:
        os.close(fd)


@linux_only
def test_linux_backlog_facts(caps):
    release = tuple(int(x) for x in os.uname().release.split(".")[:2])
    assert caps.backlog_storage_max == (2147483647 if release >= (4, 1) else 65535)
    assert caps.zero_backlog_meaning == "queue of 1"
    assert caps.negative_backlog_meaning == "maximum (net.core.somaxconn)"
    assert caps.queue_capacity == "backlog + 1"
    assert caps.tcp_max_syn_backlog == int(proc("net.ipv4.tcp_max_syn_backlog"))
    assert caps.tcp_syncookies == int(proc("net.ipv4.tcp_syncookies"))
    first, last = (int(x) for x in proc("net.ipv4.ip_local_port_range").split())
    assert caps.ephemeral_port_range == (first, last)


def test_ephemeral_port_is_in_the_reported_range(caps):
    if caps.ephemeral_port_range is None:
        pytest.skip("no ephemeral port range on this platform")
    first, last = caps.ephemeral_port_range
    s = socket.socket()
    try:
        s.bind(("127.0.0.1", 0))
        assert first <= s.getsockname()[1] <= last
    finally:
        s.close()


def test_accept_queue_holds_what_is_reported(caps):
    """Fill a listener's accept queue and read back how many it admitted."""
    if not (caps.accept_queue_readback and caps.backlog_readback):
        pytest.skip("the kernel does not report the accept queue")
    backlog = 2
    listener = socket.socket()
    clients = []
    try:
        listener.bind(("127.0.0.1", 0))
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            assert _core.listen(listener.fileno(), backlog) == backlog
        for _ in range(backlog + 3):
            c = socket.socket()
            c.setblocking(False)
            c.connect_ex(listener.getsockname())
            clients.append(c)
        expected = queue_capacity(backlog, caps.backlog_rules)
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline:
            pending, limit = _core.accept_queue(listener.fileno())
            if pending >= expected:
                break
            time.sleep(0.01)
        time.sleep(0.1)  # anything past capacity would show by now
        pending, limit = _core.accept_queue(listener.fileno())
        assert (pending, limit) == (expected, backlog)
    finally:
        closing(listener, *clients)


# ---- listener options ----------------------------------------------------------

def _same_port_with_reuseport() -> bool:
    a = socket.socket()
    b = socket.socket()
    try:
        for s in (a, b):
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        a.bind(("127.0.0.1", 0))
        a.listen()
        b.bind(a.getsockname())
        b.listen()
        return True
    except (OSError, AttributeError):
        return False
    finally:
        closing(a, b)


def test_reuse_port_matches_two_listeners_on_one_port(caps):
    assert caps.reuse_port is _same_port_with_reuseport()


def test_reuse_port_balancing_spreads_connections(caps):
    if not (caps.reuse_port and caps.platform == "linux"):
        assert caps.reuse_port_balancing is (caps.reuse_port_lb or
                                              (caps.reuse_port and caps.platform == "dragonfly"))
        return
    assert caps.reuse_port_balancing is True
    listeners = [socket.socket() for _ in range(2)]
    clients = []
    try:
        for s in listeners:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        listeners[0].bind(("127.0.0.1", 0))
        listeners[1].bind(listeners[0].getsockname())
        for s in listeners:
            s.listen(64)
        for _ in range(32):
            clients.append(socket.create_connection(listeners[0].getsockname(), timeout=5))
        time.sleep(0.05)
        got = [_core.accept_queue(s.fileno())[0] for s in listeners]
        assert sum(got) == 32 and min(got) > 0, got  # 2**-31 chance of a false failure
    finally:
        closing(*listeners, *clients)


def test_reuse_port_lb_matches_the_kernel(caps):
    opt = getattr(socket, "SO_REUSEPORT_LB", None)
    if caps.platform == "linux":
        assert opt is None and caps.reuse_port_lb is False
    elif opt is None:
        pytest.skip("this Python does not name SO_REUSEPORT_LB")
    else:
        s = socket.socket()
        try:
            s.setsockopt(socket.SOL_SOCKET, opt, 1)
            real = True
        except OSError:
            real = False
        finally:
            s.close()
        assert caps.reuse_port_lb is real


def test_reuse_port_on_af_unix_matches_the_kernel(caps):
    s = socket.socket(socket.AF_UNIX)
    try:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        real = True
    except OSError:
        real = False
    finally:
        s.close()
    assert caps.reuse_port_unix is real


@linux_only
def test_defer_accept_reported_and_holds_back_silent_clients(caps):
    assert caps.defer_accept is True
    assert caps.accept_filters == ()
    listener = socket.socket()
    client = socket.socket()
    try:
        listener.setsockopt(socket.IPPROTO_TCP, socket.TCP_DEFER_ACCEPT, 5)
        listener.bind(("127.0.0.1", 0))
        listener.listen(8)
        client.connect(listener.getsockname())
        assert select.select([listener], [], [], 0.3)[0] == []  # connected, but no data
        client.sendall(b"x")
        assert select.select([listener], [], [], 5)[0] == [listener]
    finally:
        closing(listener, client)


@linux_only
def test_fast_open_server_follows_the_sysctl_bit(caps):
    value = int(proc("net.ipv4.tcp_fastopen"))
    assert caps.tcp_fastopen_sysctl == value
    assert caps.tcp_fastopen is True
    assert caps.tcp_fastopen_server is bool(value & 0x2)


# ---- address families -----------------------------------------------------------

def _echo_once(family, address, type_=socket.SOCK_STREAM) -> bytes:
    srv = socket.socket(family, type_)
    cli = socket.socket(family, type_)
    try:
        srv.bind(address)
        srv.listen(1)
        cli.settimeout(5)
        cli.connect(srv.getsockname())
        srv.settimeout(5)
        conn, _ = srv.accept()
        with conn:
            cli.sendall(b"ab")
            cli.sendall(b"cd")
            time.sleep(0.05)
            return conn.recv(100)
    finally:
        closing(srv, cli)


def test_ipv6_reported_iff_loopback_v6_works(caps):
    try:
        real = _echo_once(socket.AF_INET6, ("::1", 0)) == b"abcd"
    except OSError:
        real = False
    assert caps.ipv6 is real


def test_dualstack_ipv6_takes_ipv4(caps):
    assert caps.dualstack_ipv6 is socket.has_dualstack_ipv6()
    if not caps.dualstack_ipv6:
        return
    srv = socket.socket(socket.AF_INET6)
    cli = socket.socket(socket.AF_INET)
    try:
        srv.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
        srv.bind(("::ffff:127.0.0.1", 0))
        srv.listen(1)
        cli.settimeout(5)
        cli.connect(("127.0.0.1", srv.getsockname()[1]))
    finally:
        closing(srv, cli)


def test_af_unix_and_abstract_names(caps, tmp_path):
    assert caps.af_unix is True
    assert _echo_once(socket.AF_UNIX, str(tmp_path / "s")) == b"abcd"
    name = b"\0fastsock-test-%d" % os.getpid()
    try:
        real = _echo_once(socket.AF_UNIX, name) == b"abcd"
    except OSError:
        real = False
    assert caps.abstract_unix is real
    assert caps.abstract_unix is (caps.platform == "linux")


def test_seqpacket_keeps_message_boundaries(caps, tmp_path):
    try:
        got = _echo_once(socket.AF_UNIX, str(tmp_path / "q"), socket.SOCK_SEQPACKET)
        real = True
    except OSError:
        real = False
    assert caps.unix_seqpacket is real
    if real:
        assert got == b"ab"  # one message per recv


# ---- inside private network namespaces with altered sysctls ------------------------

_NS_SYSCTLS = {
    "net.core.somaxconn": "16",
    "net.ipv4.ip_local_port_range": "40000 40010",
    "net.ipv4.tcp_max_syn_backlog": "77",
    "net.ipv4.tcp_syncookies": "2",
    "net.ipv4.tcp_fastopen": "3",
}

_NS_SNIPPET = r"""
import json, os, socket, warnings
from fastsock import _core
from fastsock._capabilities import capabilities
caps = capabilities()
fd = _core.socket(socket.AF_INET, socket.SOCK_STREAM)
_core.bind(fd, socket.AF_INET, ("127.0.0.1", 0))
s = socket.socket(fileno=fd)
port = s.getsockname()[1]
default = _core.listen(fd, None)
with warnings.catch_warnings(record=True) as w:
    warnings.simplefilter("always")
    big = _core.listen(fd, 17)
s.close()
print(json.dumps({"caps": caps.to_dict(), "port": port, "default": default, "big": big,
                  "warned": [type(x.message).__name__ for x in w]}))
"""


def test_namespace_report_follows_its_sysctls():
    r = run_in_netns(_NS_SNIPPET, sysctls=_NS_SYSCTLS)
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout)
    c = out["caps"]
    assert c["somaxconn"] == 16
    assert c["somaxconn_source"] == "/proc/sys/net/core/somaxconn"
    assert c["default_backlog"] == 16
    assert c["ephemeral_port_range"] == [40000, 40010]
    assert 40000 <= out["port"] <= 40010
    assert c["tcp_max_syn_backlog"] == 77
    assert c["tcp_syncookies"] == 2
    assert c["tcp_fastopen_sysctl"] == 3 and c["tcp_fastopen_server"] is True
    assert (out["default"], out["big"]) == (16, 16)
    assert out["warned"] == ["BacklogTruncatedWarning"]


def test_namespace_cli_json_agrees_with_its_proc_sys():
    snippet = r"""
import json, subprocess, sys
r = subprocess.run([sys.executable, "-m", "fastsock", "--json"], capture_output=True,
                   text=True, timeout=60)
assert r.returncode == 0, r.stderr
proc = {}
for name in ("net/core/somaxconn", "net/ipv4/ip_local_port_range",
             "net/ipv4/tcp_max_syn_backlog", "net/ipv4/tcp_syncookies",
             "net/ipv4/tcp_fastopen"):
    with open("/proc/sys/" + name) as f:
        proc[name] = f.read().split()
print(json.dumps({"cli": json.loads(r.stdout), "proc": proc}))
"""
    sysctls = dict(_NS_SYSCTLS, **{"net.core.somaxconn": "23",
                                   "net.ipv4.ip_local_port_range": "41000 41020",
                                   "net.ipv4.tcp_fastopen": "1"})
    r = run_in_netns(snippet, sysctls=sysctls)
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout)
    c, proc_ = out["cli"]["capabilities"], out["proc"]
    assert c["somaxconn"] == int(proc_["net/core/somaxconn"][0]) == 23
    assert c["ephemeral_port_range"] == [int(x) for x in proc_["net/ipv4/ip_local_port_range"]]
    assert c["tcp_max_syn_backlog"] == int(proc_["net/ipv4/tcp_max_syn_backlog"][0])
    assert c["tcp_syncookies"] == int(proc_["net/ipv4/tcp_syncookies"][0])
    assert c["tcp_fastopen_sysctl"] == 1 and c["tcp_fastopen_server"] is False
    default, big = out["cli"]["self_check"]
    assert (default["requested"], default["effective"], default["truncated"]) == (None, 23, False)
    assert (big["requested"], big["effective"], big["truncated"]) == (1_000_000, 23, True)
    assert big["queue_capacity"] == 24
    assert big["raise_with"] == "sysctl -w net.core.somaxconn=1000000"
    assert 41000 <= big["address"][1] <= 41020
