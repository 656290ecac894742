"""The non-Linux decisions of fastsock, by table, on any platform.

The code paths below run only on macOS or the BSDs, which these machines cannot
boot; what each decides is a pure function of the platform's facts, so it is
checked here with the platform's name (and its live readings) passed in.  The
C side's per-target compile decisions (which fs_platform.h branch each wheel
target takes) are checked by .ci/cross-compile; the backlog rules themselves by
test_core.test_backlog_rules_by_table.

Sources of the facts: ../shared/notes/listen-semantics.md section 1 and 3;
DragonFly listen(2) (../shared/seeds/003: kern.ipc.somaxconn, negative = the
maximum); FreeBSD listen(2) (kern.ipc.soacceptqueue, alias kern.ipc.somaxconn);
XNU bsd/kern/uipc_socket.c solisten() (kern.ipc.somaxconn); FreeBSD
setsockopt(2) SO_ACCEPTFILTER and accf_data(9) ("dataready", kldload accf_data);
FreeBSD tcp(4) net.inet.tcp.fastopen.server_enable; XNU's net.inet.tcp.fastopen
bit 0x2 (server); Linux tcp(7) net.ipv4.tcp_fastopen bit 0x2.
"""

from __future__ import annotations

import socket

import pytest

from fastsock import _capabilities, _core, _options
from fastsock.errors import UnsupportedOptionError

# platform -> (backlog rule set, the sysctl that holds its limit)
PLATFORM_RULES = {
    "linux": ("linux", "net.core.somaxconn"),
    "freebsd": ("freebsd", "kern.ipc.soacceptqueue"),
    "dragonfly": ("dragonfly", "kern.ipc.somaxconn"),
    "macos": ("macos", "kern.ipc.somaxconn"),
}


@pytest.mark.parametrize("platform", sorted(PLATFORM_RULES))
def test_rule_set_names_the_platforms_own_knob(platform):
    """The knob a BacklogTruncatedWarning tells the user to raise is the sysctl
    that platform really has (DragonFly has no kern.ipc.soacceptqueue)."""
    rules, knob = PLATFORM_RULES[platform]
    assert _core.backlog_rules(rules)["knob"] == knob


def test_running_platform_matches_the_table():
    if _core.PLATFORM not in PLATFORM_RULES:
        pytest.skip(f"no row for {_core.PLATFORM}")
    rules, knob = PLATFORM_RULES[_core.PLATFORM]
    assert _core.BACKLOG_RULES in (rules, "linux-pre-4.1" if rules == "linux" else rules)
    value, source = _core.somaxconn()
    assert value > 0
    assert knob.replace(".", "/") in source or source == knob


@pytest.mark.parametrize("rules,zero_is_maximum,storage_max", [
    ("macos", True, 32767),       # XNU: backlog <= 0 -> somaxconn; short so_qlimit
    ("freebsd", False, 2**31 - 1),
    ("dragonfly", False, 2**31 - 1),
    ("posix", False, 2**31 - 1),
])
def test_rule_set_facts(rules, zero_is_maximum, storage_max):
    r = _core.backlog_rules(rules)
    assert (r["zero_is_maximum"], r["storage_max"]) == (zero_is_maximum, storage_max)
    # 0 always asks for the smallest queue: on XNU that takes passing 1
    assert _core.plan_backlog(rules, 0, 128)[0] == (1 if zero_is_maximum else 0)


# ---- options: what _options plans on each platform ---------------------------------

@pytest.fixture
def as_platform(monkeypatch):
    """Make _options see another platform, with the live readings given."""
    def set_(platform, *, filters=(), tfo=None):
        monkeypatch.setattr(_core, "PLATFORM", platform)
        monkeypatch.setattr(_capabilities._Live, "accept_filters", property(lambda self: filters))
        monkeypatch.setattr(_capabilities, "sysctl_int", lambda name: tfo)
    return set_


@pytest.fixture
def tcp():
    s = socket.socket()
    yield s
    s.close()


DATAREADY = (socket.SOL_SOCKET, 0x1000, _capabilities.accept_filter_arg("dataready"))
FASTOPEN = getattr(socket, "TCP_FASTOPEN", None)


@pytest.mark.parametrize("platform,kw,live,expect", [
    # BSD accept filter for defer_accept, set after listen(2)
    ("freebsd", {"defer_accept": 5}, {"filters": ("dataready",)}, [("after", *DATAREADY)]),
    ("dragonfly", {"defer_accept": 1}, {"filters": ("dataready", "httpready")},
     [("after", *DATAREADY)]),
    ("freebsd", {"defer_accept": 5}, {"filters": ()}, "kldload accf_data"),
    ("macos", {"defer_accept": 5}, {}, "neither TCP_DEFER_ACCEPT nor accept filters"),
    ("macos", {"defer_accept": 0}, {}, []),          # 0: nothing to defer, nothing to set
    # server-side TCP Fast Open: the platform's sysctl and bit
    ("freebsd", {"fast_open": 8}, {"tfo": 1}, [("after", socket.IPPROTO_TCP, FASTOPEN, 8)]),
    ("freebsd", {"fast_open": 8}, {"tfo": 0},
     "sysctl -w net.inet.tcp.fastopen.server_enable=1"),
    ("macos", {"fast_open": 8}, {"tfo": 3}, [("after", socket.IPPROTO_TCP, FASTOPEN, 8)]),
    ("macos", {"fast_open": 8}, {"tfo": 1}, "sysctl -w net.inet.tcp.fastopen=3"),
    ("linux", {"fast_open": 8}, {"tfo": 2}, [("before", socket.IPPROTO_TCP, FASTOPEN, 8)]),
    ("netbsd", {"fast_open": 8}, {"tfo": 3}, "no server-side TCP Fast Open on netbsd"),
])
def test_tcp_option_plan_by_platform(as_platform, tcp, platform, kw, live, expect):
    if FASTOPEN is None and "fast_open" in kw:
        pytest.skip("this Python's socket module has no TCP_FASTOPEN")
    as_platform(platform, **live)
    args = (kw.get("defer_accept"), kw.get("fast_open"))
    if isinstance(expect, str):
        with pytest.raises(UnsupportedOptionError, match=expect.replace(".", r"\.")):
            _options._tcp_plan(tcp, *args)
    else:
        assert [step[:4] for step in _options._tcp_plan(tcp, *args)] == expect


@pytest.mark.parametrize("platform,hint", [
    ("linux", True), ("dragonfly", True),         # plain SO_REUSEPORT balances there
    ("macos", False), ("netbsd", False),
])
def test_reuse_port_lb_refusal_by_platform(as_platform, tcp, platform, hint):
    if getattr(socket, "SO_REUSEPORT_LB", None) is not None:
        pytest.skip("this socket module has SO_REUSEPORT_LB")
    as_platform(platform)
    with pytest.raises(UnsupportedOptionError, match="no SO_REUSEPORT_LB") as info:
        _options.apply_before_bind(tcp, reuse_port_lb=True)
    assert ("already balances load here" in str(info.value)) == hint
