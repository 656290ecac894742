"""Listener options (fastsock/_options.py): each one really changes what the
kernel does, and each one the platform cannot honour raises
UnsupportedOptionError naming the capability."""

from __future__ import annotations

import errno
import json
import select
import socket
import sys

import pytest
from _netns import run_in_netns

from fastsock import _options
from fastsock._capabilities import capabilities
from fastsock.errors import UnsupportedOptionError

LINUX = sys.platform.startswith("linux")
linux_only = pytest.mark.skipif(not LINUX, reason="Linux socket options")


def tcp_listener(**options) -> socket.socket:
    s = socket.socket()
    try:
        _options.apply_before_bind(s, **options)
        s.bind(("127.0.0.1", 0))
        s.listen(8)
        _options.apply_after_listen(s, **options)
    except BaseException:
        s.close()
        raise
    return s


# ---- argument checking ---------------------------------------------------------

@pytest.mark.parametrize("kwargs, exc", [
    ({"reuse_port": 1}, TypeError),
    ({"reuse_port": None}, TypeError),
    ({"reuse_port_lb": "yes"}, TypeError),
    ({"defer_accept": 1.5}, TypeError),
    ({"defer_accept": True}, TypeError),
    ({"defer_accept": "5"}, TypeError),
    ({"defer_accept": -1}, ValueError),
    ({"defer_accept": 2**31}, ValueError),
    ({"fast_open": 0}, ValueError),
    ({"fast_open": -5}, ValueError),
    ({"fast_open": True}, TypeError),
    ({"fast_open": 2.0}, TypeError),
])
def test_bad_values_rejected_before_touching_the_socket(kwargs, exc):
    s = socket.socket()
    try:
        with pytest.raises(exc):
            _options.apply_before_bind(s, **kwargs)
        with pytest.raises(exc):
            _options.validate(**kwargs)
        assert s.getsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT) == 0
    finally:
        s.close()


def test_defaults_change_nothing():
    with tcp_listener() as s:
        assert s.getsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT) == 0
        if LINUX:
            assert s.getsockopt(socket.IPPROTO_TCP, socket.TCP_DEFER_ACCEPT) == 0
            assert s.getsockopt(socket.IPPROTO_TCP, socket.TCP_FASTOPEN) == 0


# ---- reuse_port ---------------------------------------------------------------

def test_reuse_port_lets_two_listeners_share_a_port():
    if not capabilities().reuse_port:
        with pytest.raises(UnsupportedOptionError) as info:
            tcp_listener(reuse_port=True)
        assert info.value.capability == "reuse_port"
        return
    with tcp_listener(reuse_port=True) as a:
        assert a.getsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT) == 1
        b = socket.socket()
        try:
            _options.apply_before_bind(b, reuse_port=True)
            b.bind(a.getsockname())
            b.listen(8)
        finally:
            b.close()
        plain = socket.socket()  # control: without the option the port is taken
        try:
            with pytest.raises(OSError) as info:
                plain.bind(a.getsockname())
            assert info.value.errno == errno.EADDRINUSE
        finally:
            plain.close()


def test_reuse_port_through_fastsock_listen():
    import fastsock

    if not capabilities().reuse_port:
        pytest.skip("no SO_REUSEPORT here")
    with fastsock.listen(("127.0.0.1", 0), reuse_port=True) as a, \
            fastsock.listen(a.getsockname(), reuse_port=True) as b:
        assert a.getsockname() == b.getsockname()


def test_reuse_port_on_af_unix_raises_where_the_kernel_refuses(tmp_path):
    s = socket.socket(socket.AF_UNIX)
    try:
        if capabilities().reuse_port_unix:
            _options.apply_before_bind(s, reuse_port=True)
            assert s.getsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT) == 1
        else:
            with pytest.raises(UnsupportedOptionError, match="AF_UNIX") as info:
                _options.apply_before_bind(s, reuse_port=True)
            assert info.value.capability == "reuse_port_unix"
            assert isinstance(info.value, ValueError)
            assert isinstance(info.value.__cause__, OSError)
    finally:
        s.close()


@linux_only
def test_reuse_port_lb_is_unsupported_on_linux():
    assert capabilities().reuse_port_lb is False
    s = socket.socket()
    try:
        with pytest.raises(UnsupportedOptionError, match="SO_REUSEPORT_LB") as info:
            _options.apply_before_bind(s, reuse_port_lb=True)
        assert info.value.capability == "reuse_port_lb"
        assert "reuse_port_lb" in str(info.value)
    finally:
        s.close()


def test_refused_option_binds_nothing(tmp_path):
    """listen() checks every option before bind(2): a refused one leaves no
    socket file behind."""
    import fastsock

    path = tmp_path / "sock"
    with pytest.raises(UnsupportedOptionError):
        fastsock.listen(str(path), defer_accept=5)
    assert not path.exists()


# ---- defer_accept ---------------------------------------------------------------

@linux_only
def test_defer_accept_sets_tcp_defer_accept_and_defers():
    with tcp_listener(defer_accept=5) as srv:
        # the kernel rounds to whole SYN-ACK retransmissions, so only > 0 is certain
        assert srv.getsockopt(socket.IPPROTO_TCP, socket.TCP_DEFER_ACCEPT) > 0
        with socket.create_connection(srv.getsockname(), timeout=5) as cli:
            assert select.select([srv], [], [], 0.3)[0] == []  # no data yet: not accepted
            cli.sendall(b"GET")
            assert select.select([srv], [], [], 5)[0] == [srv]
            conn, _ = srv.accept()
            with conn:
                assert conn.recv(3) == b"GET"


@linux_only
def test_defer_accept_zero_turns_it_off():
    with tcp_listener(defer_accept=0) as srv:
        assert srv.getsockopt(socket.IPPROTO_TCP, socket.TCP_DEFER_ACCEPT) == 0
        with socket.create_connection(srv.getsockname(), timeout=5):
            assert select.select([srv], [], [], 5)[0] == [srv]


@pytest.mark.parametrize("option", [{"defer_accept": 5}, {"fast_open": 5}])
def test_tcp_options_on_af_unix_raise(option):
    s = socket.socket(socket.AF_UNIX)
    try:
        with pytest.raises(UnsupportedOptionError, match="TCP"):
            _options.apply_before_bind(s, **option)
    finally:
        s.close()


# ---- fast_open --------------------------------------------------------------------

@linux_only
def test_fast_open_refused_while_the_server_bit_is_off():
    with open("/proc/sys/net/ipv4/tcp_fastopen") as f:
        value = int(f.read())
    if value & 0x2:
        pytest.skip("server-side TCP Fast Open is on here; the namespace test covers it")
    with pytest.raises(UnsupportedOptionError, match="net.ipv4.tcp_fastopen") as info:
        tcp_listener(fast_open=16)
    assert info.value.capability == "tcp_fastopen_server"
    assert f"sysctl -w net.ipv4.tcp_fastopen={value | 2}" in str(info.value)


_TFO_SNIPPET = r"""
import json, socket
from fastsock import _options
from fastsock.errors import UnsupportedOptionError

def passive():
    with open("/proc/net/netstat") as f:
        lines = [l.split() for l in f if l.startswith("TcpExt:")]
    return int(dict(zip(lines[0][1:], lines[1][1:]))["TCPFastOpenPassive"])

def serve(fast_open):
    srv = socket.socket()
    _options.apply_before_bind(srv, fast_open=fast_open)
    srv.bind(("127.0.0.1", 0))
    srv.listen(8)
    _options.apply_after_listen(srv, fast_open=fast_open)
    qlen = srv.getsockopt(socket.IPPROTO_TCP, socket.TCP_FASTOPEN)
    before, got = passive(), []
    for _ in range(3):  # the first exchange fetches the cookie
        c = socket.socket()
        c.sendto(b"hello", socket.MSG_FASTOPEN, srv.getsockname())
        conn, _ = srv.accept()
        conn.settimeout(5)
        got.append(conn.recv(5).decode())
        conn.close()
        c.close()
    srv.close()
    return {"qlen": qlen, "passive": passive() - before, "got": got}

with open("/proc/sys/net/ipv4/tcp_fastopen", "w") as f:
    f.write("3")
on = serve(7)
plain = serve(None)
with open("/proc/sys/net/ipv4/tcp_fastopen", "w") as f:
    f.write("1")
try:
    _options.apply_before_bind(socket.socket(), fast_open=7)
    refused = None
except UnsupportedOptionError as e:
    refused = e.capability
print(json.dumps({"on": on, "plain": plain, "refused": refused}))
"""


@linux_only
def test_fast_open_sets_tcp_fastopen_and_the_kernel_uses_it():
    r = run_in_netns(_TFO_SNIPPET)
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout)
    assert out["on"]["qlen"] == 7
    assert out["on"]["got"] == ["hello"] * 3
    assert out["on"]["passive"] >= 1  # data accepted in the SYN
    assert out["plain"]["qlen"] == 0 and out["plain"]["passive"] == 0  # control
    assert out["refused"] == "tcp_fastopen_server"
