"""Hostile input: hypothesis throws arbitrary values at every public entry point.

``fastsock.socket(family, type, proto)``, ``bind``/``connect``/``connect_ex``
with addresses of every shape, ``listen`` with backlogs of every type and size,
``fastsock.listen(...)``, ``_core.encode_address``/``decode_address`` with
random bytes, ``_core.plan_backlog``: every call either succeeds or raises a
documented exception (TypeError, ValueError incl. UnicodeError, OverflowError,
OSError subclasses incl. gaierror and timeouts), never crashes, and leaves the
set of open descriptors as it found it.

Traffic stays local: hosts are IP literals (connects only to loopback or the
unspecified address), '' and 'localhost', or names under ``.invalid``, which
never resolve (RFC 6761).  AF_UNIX paths live in a temporary directory;
abstract names carry a fastsock prefix.  TCP connects have a short timeout.
"""

from __future__ import annotations

import fractions
import os
import pathlib
import socket as S
import sys
import tempfile
import warnings

import pytest

hypothesis = pytest.importorskip("hypothesis")
from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

import fastsock  # noqa: E402
from fastsock import _core  # noqa: E402

# What "documented" means: the only exceptions any entry point may raise.
DOCUMENTED = (TypeError, ValueError, OverflowError, OSError)   # UnicodeError < ValueError
EXAMPLES = int(os.environ.get("FASTSOCK_HYPOTHESIS_EXAMPLES", "300"))
SETTINGS = settings(max_examples=EXAMPLES, deadline=None, database=None,
                    suppress_health_check=[HealthCheck.too_slow,
                                           HealthCheck.function_scoped_fixture,
                                           HealthCheck.filter_too_much])
LINUX = sys.platform.startswith("linux")
ABSTRACT = b"\0fastsock-hypothesis-"

TMP = pathlib.Path(tempfile.mkdtemp(prefix="fastsock-hostile-"))


@pytest.fixture(autouse=True, scope="module")
def _inside_tmp():
    """Random str/bytes addresses become relative AF_UNIX paths: keep them in TMP."""
    old = os.getcwd()
    os.chdir(TMP)
    yield
    os.chdir(old)


def teardown_module():
    for p in sorted(TMP.rglob("*"), reverse=True):
        try:
            p.rmdir() if p.is_dir() and not p.is_symlink() else p.unlink()
        except OSError:
            pass
    try:
        TMP.rmdir()
    except OSError:
        pass


def fd_numbers() -> set[int]:
    fds = set()
    for name in os.listdir("/proc/self/fd" if LINUX else "/dev/fd"):
        try:
            os.fstat(int(name))
            fds.add(int(name))
        except OSError:
            pass
    return fds


class NoLeak:
    """Context manager: the open descriptors are the same on exit; only
    documented exceptions pass (anything else fails the example)."""

    def __enter__(self):
        self.before = fd_numbers()
        self.catch = warnings.catch_warnings()
        self.catch.__enter__()
        warnings.simplefilter("ignore")          # BacklogWarning & co are fine
        return self

    def __exit__(self, typ, exc, tb):
        self.catch.__exit__(None, None, None)
        after = fd_numbers()
        assert after == self.before, f"descriptors changed: {sorted(after ^ self.before)}"
        if exc is None:
            return False
        if isinstance(exc, DOCUMENTED):
            return True                          # a documented refusal
        return False                             # anything else: the example fails


# ---- strategies -------------------------------------------------------------------

huge_ints = st.one_of(st.integers(), st.integers(min_value=-2**70, max_value=2**70),
                      st.sampled_from([2**31 - 1, 2**31, -2**31, -2**31 - 1, 2**32, 2**63,
                                       -2**63 - 1, 2**64, 10**100, -1, 0, 1]))


class Index:
    """An object with __index__, as numpy integers have."""

    def __init__(self, value):
        self.value = value

    def __index__(self):
        return self.value

    def __repr__(self):
        return f"Index({self.value!r})"


class BadIndex:
    """__index__ returning a non-int: Python itself raises TypeError."""

    def __index__(self):
        return "five"

    def __repr__(self):
        return "BadIndex()"


odd_values = st.one_of(
    st.none(), st.booleans(), st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=8), st.binary(max_size=8), st.complex_numbers(),
    st.builds(fractions.Fraction, st.integers(-100, 100), st.integers(1, 100)),
    st.builds(Index, huge_ints), st.just(BadIndex()), st.just(object()),
    st.lists(st.integers(0, 300), max_size=4), st.tuples(st.integers()),
)
anything = st.one_of(huge_ints, odd_values)

invalid_names = st.one_of(
    st.from_regex(r"[a-z0-9][a-z0-9-]{0,20}\.invalid", fullmatch=True),
    st.text(max_size=12).map(lambda s: s + ".invalid"),
    st.binary(max_size=12).map(lambda b: b + b".invalid"),
)
local_v4 = st.one_of(st.sampled_from(["127.0.0.1", "0.0.0.0", "", "localhost", "127.0.0.2"]),
                     st.integers(0, 2**24 - 1).map(
                         lambda n: f"127.{n >> 16}.{(n >> 8) & 255}.{n & 255}"))
any_v4 = st.one_of(local_v4, st.ip_addresses(v=4).map(str),
                   st.sampled_from(["255.255.255.255", "<broadcast>", "224.0.0.1"]))
local_v6 = st.sampled_from(["::1", "::", "", "::ffff:127.0.0.1", "localhost", "0::1"])
any_v6 = st.one_of(local_v6, st.ip_addresses(v=6).map(str))


def hosts(literals):
    """Host values: safe literals as str/bytes/bytearray, .invalid names,
    NULs, non-ASCII, and values of the wrong type."""
    return st.one_of(
        literals, literals.map(str.encode), literals.map(lambda h: bytearray(h.encode())),
        invalid_names,
        st.sampled_from(["127.0.0.1\0", "\0", "::1\0x", "ünïcode.invalid", "a" * 300 + ".invalid",
                         "127.0.0.1 ", " 127.0.0.1", "1.2.3.4.5.invalid", "-.invalid"]),
        odd_values)


ports = st.one_of(st.integers(0, 65535), huge_ints, odd_values)


def inet_addresses(literals):
    return st.one_of(
        st.tuples(hosts(literals), ports),
        st.tuples(hosts(literals), ports, huge_ints),
        st.tuples(hosts(literals), ports, huge_ints, huge_ints),
        st.lists(st.one_of(hosts(literals), ports), max_size=5).map(tuple),
        st.lists(st.one_of(hosts(literals), ports), max_size=3),    # a list, not a tuple
        odd_values)


def unix_addresses(base: pathlib.Path):
    names = st.text(max_size=40)
    raw = st.binary(max_size=40)
    return st.one_of(
        names.map(lambda n: str(base / n) if n else str(base / "empty")),
        raw.map(lambda b: os.fsencode(base) + b"/" + b),
        names.map(lambda n: base / (n.replace("\0", "") or "p")),          # os.PathLike
        st.integers(90, 120).map(lambda k: str(base) + "/" + "x" * k),     # near the limit
        st.integers(0, 200).map(lambda k: ABSTRACT + b"a" * k),            # abstract names
        raw.map(lambda b: ABSTRACT + b),
        raw.map(lambda b: bytearray(ABSTRACT + b)),
        st.just(""), st.just(b""), st.just(str(base / "with\0nul")),
        odd_values)


def addresses(base, literals_v4=any_v4, literals_v6=any_v6):
    return st.one_of(inet_addresses(literals_v4), inet_addresses(literals_v6),
                     unix_addresses(base))


core_families = st.sampled_from([S.AF_INET, S.AF_INET6, S.AF_UNIX])
families = st.one_of(core_families, huge_ints,
                     st.sampled_from([getattr(S, n) for n in ("AF_PACKET", "AF_NETLINK",
                                      "AF_UNSPEC", "AF_APPLETALK", "AF_TIPC", "AF_VSOCK")
                                      if hasattr(S, n)]))
types_ = st.one_of(st.sampled_from([S.SOCK_STREAM, S.SOCK_DGRAM, S.SOCK_SEQPACKET,
                                    S.SOCK_RAW, S.SOCK_STREAM | getattr(S, "SOCK_NONBLOCK", 0),
                                    S.SOCK_DGRAM | getattr(S, "SOCK_CLOEXEC", 0)]), huge_ints)
protos = st.one_of(st.sampled_from([0, 6, 17, 132, 255]), huge_ints)


# ---- socket() ---------------------------------------------------------------------

@SETTINGS
@given(family=st.one_of(families, odd_values), type=st.one_of(types_, odd_values),
       proto=st.one_of(protos, odd_values), core=st.booleans())
def test_socket_constructor_hostile(family, type, proto, core):
    with NoLeak():
        if core:
            fd = _core.socket(family, type, proto)
            os.close(fd)
        else:
            with fastsock.socket(family, type, proto):
                pass


@SETTINGS
@given(fileno=st.one_of(st.sampled_from([-1, -5, 2**31, 2**40, 10**20, 999_983]), odd_values))
def test_socket_from_bad_fileno_hostile(fileno):
    with NoLeak():
        fastsock.socket(fileno=fileno).close()


# ---- bind / connect / connect_ex ------------------------------------------------------

socket_kinds = st.sampled_from([(S.AF_INET, S.SOCK_STREAM), (S.AF_INET, S.SOCK_DGRAM),
                                (S.AF_INET6, S.SOCK_STREAM), (S.AF_INET6, S.SOCK_DGRAM),
                                (S.AF_UNIX, S.SOCK_STREAM), (S.AF_UNIX, S.SOCK_DGRAM),
                                (S.AF_UNIX, S.SOCK_SEQPACKET)])


@SETTINGS
@given(kind=socket_kinds, address=addresses(TMP / "bind"), twice=st.booleans())
def test_bind_hostile(kind, address, twice):
    (TMP / "bind").mkdir(exist_ok=True)
    with NoLeak():
        with fastsock.socket(*kind) as s:
            s.bind(address)
            if twice:
                s.bind(address)


@SETTINGS
@given(kind=socket_kinds,
       address=addresses(TMP / "connect", local_v4, local_v6),
       timeout=st.sampled_from([0.0, 0.2]), ex=st.booleans())
def test_connect_and_connect_ex_hostile(kind, address, timeout, ex):
    (TMP / "connect").mkdir(exist_ok=True)
    with NoLeak():
        with fastsock.socket(*kind) as s:
            s.settimeout(timeout)
            if ex:
                assert isinstance(s.connect_ex(address), int)
            else:
                s.connect(address)


@SETTINGS
@given(family=st.one_of(core_families, huge_ints, odd_values),
       address=addresses(TMP / "core", local_v4, local_v6),
       call=st.sampled_from(["bind", "connect", "connect_ex"]))
def test_core_bind_connect_with_mismatched_family_hostile(family, address, call):
    with NoLeak():
        fd = _core.socket(S.AF_INET, S.SOCK_DGRAM)   # UDP: connect sends nothing
        try:
            getattr(_core, call)(fd, family, address)
        finally:
            os.close(fd)


# ---- listen ------------------------------------------------------------------------------

backlogs = st.one_of(huge_ints, odd_values, st.none())


@SETTINGS
@given(backlog=backlogs, kind=st.sampled_from(["tcp", "unix", "udp", "unbound", "connected"]),
       stacklevel=st.one_of(st.integers(-5, 5), huge_ints), core=st.booleans())
def test_listen_backlog_hostile(backlog, kind, stacklevel, core):
    with NoLeak():
        family = S.AF_UNIX if kind == "unix" else S.AF_INET
        type = S.SOCK_DGRAM if kind == "udp" else S.SOCK_STREAM
        with fastsock.socket(family, type) as s:
            if kind == "unix":
                s.bind(ABSTRACT + b"listen")
            elif kind in ("tcp", "udp"):
                s.bind(("127.0.0.1", 0))
            if kind == "connected":
                with fastsock.listen(("127.0.0.1", 0), 1) as lst:
                    s.connect(lst.getsockname())
            if core:
                got = _core.listen(s.fileno(), backlog, stacklevel=stacklevel)
            else:
                got = s.listen(backlog)
            assert isinstance(got, int) and got >= 0


@SETTINGS
@given(address=addresses(TMP / "listen", local_v4, local_v6), backlog=backlogs,
       family=st.one_of(st.none(), core_families, huge_ints),
       reuse_port=st.one_of(st.booleans(), odd_values),
       dualstack_ipv6=st.one_of(st.booleans(), odd_values),
       defer_accept=st.one_of(st.none(), huge_ints, odd_values),
       fast_open=st.one_of(st.none(), huge_ints, odd_values))
def test_fastsock_listen_hostile(address, backlog, family, reuse_port, dualstack_ipv6,
                                 defer_accept, fast_open):
    (TMP / "listen").mkdir(exist_ok=True)
    with NoLeak():
        with fastsock.listen(address, backlog, family=family, reuse_port=reuse_port,
                             dualstack_ipv6=dualstack_ipv6, defer_accept=defer_accept,
                             fast_open=fast_open) as lst:
            assert lst.backlog is not None and lst.backlog >= 0


@SETTINGS
@given(rules=st.one_of(st.sampled_from(list(_core.RULES)), st.text(max_size=10), odd_values),
       backlog=backlogs, maximum=st.one_of(huge_ints, odd_values))
def test_plan_backlog_hostile(rules, backlog, maximum):
    with NoLeak():
        passed, effective, capacity, flags = _core.plan_backlog(rules, backlog, maximum)
        assert all(isinstance(v, int) for v in (passed, effective, capacity, flags))


# ---- the address codec ---------------------------------------------------------------------

@SETTINGS
@given(family=st.one_of(core_families, huge_ints, odd_values),
       address=addresses(TMP / "codec"))
def test_encode_address_hostile(family, address):
    with NoLeak():
        raw = _core.encode_address(family, address)
        assert isinstance(raw, bytes) and 2 <= len(raw) <= 128
        decoded = _core.decode_address(family, raw)
        if family in (S.AF_INET, S.AF_INET6):
            assert decoded[1] == address[1]                 # the port survives


raw_sockaddrs = st.one_of(
    st.binary(max_size=140),
    st.tuples(st.sampled_from([S.AF_INET, S.AF_INET6, S.AF_UNIX, 0, 255, 65535]),
              st.binary(max_size=126)).map(
        lambda t: t[0].to_bytes(2, sys.byteorder) + t[1]),
    st.binary(max_size=140).map(bytearray), st.binary(max_size=140).map(memoryview),
    st.integers(-5, 300), st.text(max_size=5), st.none(),
    st.lists(st.integers(-1, 256), max_size=20))


@SETTINGS
@given(family=st.one_of(core_families, huge_ints, odd_values), raw=raw_sockaddrs)
def test_decode_address_hostile(family, raw):
    with NoLeak():
        out = _core.decode_address(family, raw)
        assert isinstance(out, (tuple, str, bytes))


@SETTINGS
@given(host=st.one_of(st.ip_addresses(v=4).map(str)), port=st.integers(0, 65535))
def test_inet_round_trip_matches_stdlib(host, port):
    raw = _core.encode_address(S.AF_INET, (host, port))
    assert _core.decode_address(S.AF_INET, raw) == (host, port)
    assert raw[4:8] == S.inet_aton(host)


@SETTINGS
@given(host=st.ip_addresses(v=6), port=st.integers(0, 65535),
       flowinfo=st.integers(0, 0xFFFFF))
def test_inet6_round_trip_matches_stdlib(host, port, flowinfo):
    raw = _core.encode_address(S.AF_INET6, (str(host), port, flowinfo, 0))
    got = _core.decode_address(S.AF_INET6, raw)
    assert got == (S.inet_ntop(S.AF_INET6, host.packed), port, flowinfo, 0)


@SETTINGS
@given(name=st.binary(min_size=0, max_size=100))
def test_unix_abstract_round_trip(name):
    if not LINUX:
        pytest.skip("abstract AF_UNIX names are Linux only")
    raw = _core.encode_address(S.AF_UNIX, b"\0" + name)
    assert _core.decode_address(S.AF_UNIX, raw) == b"\0" + name


def test_invalid_names_fail_fast_here():
    """The .invalid names above go to the resolver: it must answer quickly."""
    import time
    t0 = time.monotonic()
    for i in range(5):
        with pytest.raises(S.gaierror):
            _core.encode_address(S.AF_INET, (f"fastsock-{i}.invalid", 1))
    assert time.monotonic() - t0 < 10
