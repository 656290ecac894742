"""``import fastsock as socket``: the stdlib surface, and behaviour parity.

The surface tests derive what to expect from the running stdlib, so a new
Python version cannot silently break the drop-in promise.  The parity tests
are written once and run against both modules through the ``sm`` fixture (as
uvloop runs one test body against uvloop and asyncio): whatever holds for
``socket`` must hold for ``fastsock``, apart from the documented differences,
which have their own tests at the end.  Real sockets only: 127.0.0.1, ::1,
AF_UNIX paths in a temporary directory, Linux abstract names.
"""

from __future__ import annotations

import copy
import errno
import gc
import inspect
import io
import json
import os
import pickle
import select
import socket
import subprocess
import sys
import textwrap
import threading
import time
import uuid
import warnings
import weakref

import pytest

import fastsock

LINUX = sys.platform.startswith("linux")
REBOUND = {"socket", "create_connection", "create_server", "fromfd", "socketpair",
           "has_dualstack_ipv6", "_fallback_socketpair"}


def _ipv6_loopback() -> bool:
    if not socket.has_ipv6:
        return False
    try:
        with socket.socket(socket.AF_INET6) as s:
            s.bind(("::1", 0))
        return True
    except OSError:
        return False


HAVE_IPV6 = _ipv6_loopback()
needs_ipv6 = pytest.mark.skipif(not HAVE_IPV6, reason="no IPv6 loopback here")
needs_linux = pytest.mark.skipif(not LINUX, reason="Linux only")


@pytest.fixture(params=["socket", "fastsock"])
def sm(request):
    """The module under test: the stdlib, then fastsock, same test body."""
    return {"socket": socket, "fastsock": fastsock}[request.param]


@pytest.fixture(autouse=True)
def _default_timeout_restored():
    yield
    socket.setdefaulttimeout(None)


@pytest.fixture
def short_dir(tmp_path_factory):
    # AF_UNIX paths are limited to ~107 bytes: keep the directory short
    import tempfile
    d = tempfile.mkdtemp(prefix="fsd")
    yield d
    import shutil
    shutil.rmtree(d, ignore_errors=True)


def _listener(sm, family=socket.AF_INET, address=None, backlog=None):
    s = sm.socket(family, socket.SOCK_STREAM)
    s.bind(address if address is not None else
           {socket.AF_INET: ("127.0.0.1", 0), socket.AF_INET6: ("::1", 0)}[family])
    s.listen() if backlog is None else s.listen(backlog)
    return s


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# ---------------------------------------------------------------------------
# the surface

STDLIB_NAMES = sorted(n for n in dir(socket) if not n.startswith("__"))


def test_every_stdlib_name_is_there():
    missing = [n for n in STDLIB_NAMES if not hasattr(fastsock, n)]
    assert not missing, f"fastsock lacks these names of socket: {missing}"


def test_stdlib_all_is_in_fastsock_all():
    assert set(socket.__all__) <= set(fastsock.__all__)
    assert [n for n in fastsock.__all__ if not hasattr(fastsock, n)] == []


def test_names_are_the_stdlib_objects_except_the_rebound_functions():
    differ = {n for n in STDLIB_NAMES if getattr(fastsock, n) is not getattr(socket, n)}
    # e.g. fastsock._socket must stay the C module the stdlib's code uses
    assert differ <= REBOUND, differ - REBOUND
    assert fastsock._socket is socket._socket
    assert fastsock.timeout is socket.timeout and fastsock.error is OSError


@pytest.mark.parametrize("name", sorted(REBOUND - {"socket", "fromfd"}))
def test_rebound_functions_run_the_stdlib_code(name):
    std = getattr(socket, name, None)
    if std is None:
        pytest.skip(f"socket.{name} does not exist on this platform")
    ours = getattr(fastsock, name)
    code = getattr(ours, "__wrapped__", ours)   # wrapped to type its errors
    assert code.__code__ is std.__code__          # not a copy: the running Python's
    assert code.__globals__ is vars(fastsock)     # builds fastsock sockets
    assert inspect.signature(ours) == inspect.signature(std)
    assert ours.__doc__ == std.__doc__


def test_fromfd_closes_its_duplicate_when_the_socket_cannot_be_made():
    """The stdlib's fromfd leaves the dup(2) it made open when the socket
    constructor fails; fastsock's raises the same error, typed, and closes it."""
    def open_fds():
        if not os.path.isdir("/proc/self/fd"):
            return None
        fds = set()
        for name in os.listdir("/proc/self/fd"):
            try:
                os.fstat(int(name))
                fds.add(int(name))
            except OSError:
                pass        # the listing's own descriptor, closed by now
        return fds

    r, w = os.pipe()
    try:
        before = open_fds()
        with pytest.raises(OSError) as std:
            socket.fromfd(r, socket.AF_INET, socket.SOCK_STREAM)
        if before is not None:
            for fd in open_fds() - before:
                os.close(fd)        # what the stdlib left open
        with pytest.raises(fastsock.NotSocketError) as ours:
            fastsock.fromfd(r, socket.AF_INET, socket.SOCK_STREAM)
        assert isinstance(ours.value, type(std.value))
        assert ours.value.args == std.value.args and str(ours.value) == str(std.value)
        if before is not None:
            assert open_fds() == before
    finally:
        os.close(r)
        os.close(w)


@pytest.mark.parametrize("name", [
    "timeout", "error", "herror", "gaierror", "SocketType", "SocketIO", "AddressFamily",
    "SocketKind", "MsgFlag", "AddressInfo", "has_ipv6", "has_dualstack_ipv6",
    "create_connection", "create_server", "fromfd", "socketpair", "send_fds", "recv_fds",
    "getfqdn", "CMSG_LEN", "getaddrinfo", "inet_pton", "setdefaulttimeout",
    "_GLOBAL_DEFAULT_TIMEOUT", "SOMAXCONN"])
def test_names_code_uses_outside_all(name):
    if not hasattr(socket, name):
        pytest.skip(f"socket.{name} does not exist on this platform")
    assert hasattr(fastsock, name)


def test_socket_class_is_a_stdlib_socket():
    assert issubclass(fastsock.socket, socket.socket)
    assert issubclass(fastsock.socket, socket.SocketType)
    def params(cls):
        return [(p.name, p.kind, p.default) for p in inspect.signature(cls).parameters.values()]
    assert params(fastsock.socket) == params(socket.socket)
    assert fastsock.socket.__name__ == "socket" and fastsock.socket.__module__ == "fastsock"


def test_fastsock_additions():
    for name in ("listen", "capabilities", "has", "Capabilities", "AcceptQueue",
                 "SocketError", "AddressInUseError", "AcceptRetryError",
                 "AcceptCapacityError", "BacklogWarning", "errors"):
        assert name in fastsock.__all__ and hasattr(fastsock, name), name
    assert not set(fastsock.errors.__all__) & set(STDLIB_NAMES)


# ---------------------------------------------------------------------------
# created sockets

@pytest.mark.parametrize("kind, flags, timeout", [
    (socket.SOCK_STREAM, 0, None),
    (socket.SOCK_DGRAM, 0, None),
    pytest.param(socket.SOCK_STREAM, getattr(socket, "SOCK_NONBLOCK", 0), 0.0,
                 marks=pytest.mark.skipif(not hasattr(socket, "SOCK_NONBLOCK"),
                                          reason="no SOCK_NONBLOCK")),
    pytest.param(socket.SOCK_DGRAM, getattr(socket, "SOCK_CLOEXEC", 0), None,
                 marks=pytest.mark.skipif(not hasattr(socket, "SOCK_CLOEXEC"),
                                          reason="no SOCK_CLOEXEC")),
])
@pytest.mark.parametrize("family", [socket.AF_INET, socket.AF_UNIX])
def test_created_socket_attributes(sm, family, kind, flags, timeout):
    with sm.socket(family, kind | flags) as s:
        assert type(s) is sm.socket
        assert s.family == family and type(s.family) is socket.AddressFamily
        assert s.type == kind and type(s.type) is socket.SocketKind
        assert s.proto == 0
        assert s.gettimeout() == timeout
        assert s.getblocking() is (timeout is None)
        assert os.get_blocking(s.fileno()) is (timeout is None)
        assert s.get_inheritable() is False


def test_default_constructor(sm):
    with sm.socket() as s:
        assert (s.family, s.type, s.proto) == (socket.AF_INET, socket.SOCK_STREAM, 0)
    with sm.socket(socket.AF_INET, socket.SOCK_DGRAM, 0, None) as s:
        assert s.type == socket.SOCK_DGRAM


@pytest.mark.parametrize("default", [0.0, 1.5])
def test_default_timeout_applies_to_new_sockets(sm, default):
    sm.setdefaulttimeout(default)
    with sm.socket() as s:
        assert s.gettimeout() == default
        assert os.get_blocking(s.fileno()) is False


def test_fileno_is_detected(sm):
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as orig:
        with sm.socket(fileno=os.dup(orig.fileno())) as s:
            assert type(s) is sm.socket
            assert (s.family, s.type, s.proto) == (orig.family, orig.type, orig.proto)


def test_bad_constructor_arguments(sm):
    with pytest.raises(TypeError):
        sm.socket("AF_INET")
    with pytest.raises(OSError) as e:
        sm.socket(0xFFFF, socket.SOCK_STREAM)       # no such family
    assert e.value.errno in (errno.EAFNOSUPPORT, errno.EINVAL)


# ---------------------------------------------------------------------------
# accept

def _accept_case(sm, case, tmpdir):
    """(listener, client) for one family/address shape; the client connected."""
    if case == "inet":
        lst = _listener(sm)
        cli = sm.socket()
    elif case == "inet6":
        lst = _listener(sm, socket.AF_INET6)
        cli = sm.socket(socket.AF_INET6)
    elif case == "inet6-mapped":
        if not socket.has_dualstack_ipv6():
            pytest.skip("no dual-stack IPv6 here")
        lst = sm.create_server(("", 0), family=socket.AF_INET6, dualstack_ipv6=True)
        cli = sm.socket()
        cli.connect(("127.0.0.1", lst.getsockname()[1]))
        return lst, cli
    elif case in ("unix-path", "unix-unnamed"):
        lst = _listener(sm, socket.AF_UNIX, os.path.join(tmpdir, "srv"))
        cli = sm.socket(socket.AF_UNIX)
        if case == "unix-path":
            cli.bind(os.path.join(tmpdir, "cli"))
    elif case == "unix-abstract":
        lst = _listener(sm, socket.AF_UNIX, b"\0fastsock-test-" + uuid.uuid4().hex.encode())
        cli = sm.socket(socket.AF_UNIX)
        cli.bind("\0fastsock-cli-" + uuid.uuid4().hex)
    cli.connect(lst.getsockname())
    return lst, cli


@pytest.mark.parametrize("case", [
    "inet",
    pytest.param("inet6", marks=needs_ipv6),
    pytest.param("inet6-mapped", marks=needs_ipv6),
    "unix-path", "unix-unnamed",
    pytest.param("unix-abstract", marks=needs_linux),
])
def test_accept_address_shape(sm, case, short_dir):
    lst, cli = _accept_case(sm, case, short_dir)
    with lst, cli:
        conn, addr = lst.accept()
        with conn:
            # getpeername() is the stdlib's own decoding of the same sockaddr
            expected = conn.getpeername()
            assert addr == expected and type(addr) is type(expected)
            if case.startswith("inet6"):
                assert len(addr) == 4 and isinstance(addr[0], str)
            if case == "inet6-mapped":
                assert addr == ("::ffff:127.0.0.1", cli.getsockname()[1], 0, 0)
            else:
                assert addr == cli.getsockname()
            if case == "unix-unnamed":
                assert addr == ""
            if case == "unix-abstract":
                assert isinstance(addr, bytes) and addr.startswith(b"\0fastsock-cli-")


_SCOPED = textwrap.dedent("""
    import json, os, shutil, socket, subprocess, sys
    import fastsock
    if not shutil.which("ip") or subprocess.run(
            ["ip", "addr", "add", "fe80::1/64", "dev", "lo", "nodad"]).returncode:
        print(json.dumps(None)); sys.exit()
    import errno, time
    out = {}
    for sm in (socket, fastsock):
        lst = sm.socket(sm.AF_INET6); lst.bind(("fe80::1", 0, 0, 1)); lst.listen()
        cli = sm.socket(sm.AF_INET6); cli.bind(("fe80::1", 0, 0, 1))
        # the new namespace's IPv6 set-up of lo runs in the kernel's workqueue and
        # can still be installing the link-local route: ENETUNREACH for a moment
        for attempt in range(100):
            err = cli.connect_ex(lst.getsockname())
            if err != errno.ENETUNREACH:
                break
            time.sleep(0.02)
        assert err == 0, os.strerror(err)
        conn, addr = lst.accept()
        out[sm.__name__] = [addr, conn.getpeername(), cli.getsockname()]
    print(json.dumps(out))
""")


@needs_linux
def test_accept_address_with_scope_id():
    """A link-local peer (scope_id != 0) in a private network namespace: the
    address accept() gives is the one the stdlib decodes (no "%lo" suffix)."""
    from _netns import run_in_netns
    r = run_in_netns(_SCOPED)
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout)
    if out is None:
        pytest.skip("cannot add a link-local address to lo here")
    addr, peer, cli = out["socket"]
    assert addr == peer == cli and addr[3] == 1
    addr, peer, cli = out["fastsock"]
    assert peer == cli and addr[3] == 1
    assert addr == peer


def test_accept_returns_a_module_socket(sm):
    class Sub(sm.socket):
        pass

    with Sub() as lst:
        lst.bind(("127.0.0.1", 0))
        lst.listen()
        with sm.create_connection(lst.getsockname()) as cli:
            conn, addr = lst.accept()
            with conn:
                assert type(conn) is sm.socket          # never the subclass
                assert (conn.family, conn.type, conn.proto) == \
                    (lst.family, lst.type, lst.proto)
                assert conn.gettimeout() is None and conn.getblocking()
                assert conn.get_inheritable() is False
                cli.sendall(b"ping")
                assert conn.recv(4) == b"ping"
                conn.sendall(b"pong")
                assert cli.recv(4) == b"pong"


def test_accept_timeout(sm):
    with _listener(sm) as lst:
        lst.settimeout(0.2)
        t0 = time.monotonic()
        with pytest.raises(sm.timeout) as e:
            lst.accept()
        took = time.monotonic() - t0
        assert 0.15 <= took < 5
        assert str(e.value) == "timed out"
        assert isinstance(e.value, TimeoutError) and isinstance(e.value, OSError)


def test_accept_nonblocking(sm):
    with _listener(sm) as lst:
        lst.setblocking(False)
        with pytest.raises(BlockingIOError) as e:
            lst.accept()
        assert e.value.errno in (errno.EAGAIN, errno.EWOULDBLOCK)


@pytest.mark.parametrize("listener_timeout", [None, 0.0, 3.0])
@pytest.mark.parametrize("default", [None, 0.0, 2.0])
def test_accept_default_timeout_rule(sm, default, listener_timeout):
    """The accepted socket gets the default timeout; with none, it blocks
    whatever the listener's timeout (the stdlib's bpo-7995 rule)."""
    with _listener(sm) as lst, socket.socket() as cli:
        cli.settimeout(None)
        cli.connect(lst.getsockname())
        lst.settimeout(listener_timeout)
        sm.setdefaulttimeout(default)
        if listener_timeout == 0.0:
            select.select([lst], [], [], 5)
        conn, _ = lst.accept()
        with conn:
            assert conn.gettimeout() == default
            assert os.get_blocking(conn.fileno()) is (default is None)


def test_accept_on_a_socket_that_does_not_listen(sm):
    with sm.socket() as s:
        s.bind(("127.0.0.1", 0))
        with pytest.raises(OSError) as e:
            s.accept()
        assert e.value.errno == errno.EINVAL


def test_accept_on_a_closed_socket(sm):
    lst = _listener(sm)
    lst.close()
    with pytest.raises(OSError) as e:
        lst.accept()
    assert e.value.errno == errno.EBADF


# ---------------------------------------------------------------------------
# connect

@pytest.mark.parametrize("timeout", [None, 2.0])
def test_connect_refused(sm, timeout):
    port = _closed_port()
    with sm.socket() as s:
        s.settimeout(timeout)
        assert s.connect_ex(("127.0.0.1", port)) == errno.ECONNREFUSED
    with sm.socket() as s:
        s.settimeout(timeout)
        with pytest.raises(ConnectionRefusedError) as e:
            s.connect(("127.0.0.1", port))
        assert e.value.errno == errno.ECONNREFUSED


@pytest.mark.parametrize("timeout", [None, 2.0])
def test_connect_ex_success(sm, timeout):
    with _listener(sm) as lst, sm.socket() as s:
        s.settimeout(timeout)
        assert s.connect_ex(lst.getsockname()) == 0
        assert s.getpeername() == lst.getsockname()
        assert s.gettimeout() == timeout


def _full_listener(sm):
    """A listener whose accept queue is full: the kernel drops further SYNs."""
    lst = _listener(sm, backlog=0)
    held = []
    for _ in range(8):
        c = socket.socket()
        c.setblocking(False)
        c.connect_ex(lst.getsockname())
        held.append(c)
    time.sleep(0.05)
    return lst, held


@needs_linux
def test_connect_timeout(sm):
    lst, held = _full_listener(sm)
    try:
        with sm.socket() as s:
            s.settimeout(0.3)
            t0 = time.monotonic()
            with pytest.raises(sm.timeout) as e:
                s.connect(lst.getsockname())
            assert 0.25 <= time.monotonic() - t0 < 5
            assert str(e.value) == "timed out"
        with sm.socket() as s:
            s.settimeout(0.3)
            assert s.connect_ex(lst.getsockname()) in (errno.EAGAIN, errno.EWOULDBLOCK)
    finally:
        for c in held:
            c.close()
        lst.close()


def test_nonblocking_connect(sm):
    with _listener(sm) as lst, sm.socket() as s:
        s.setblocking(False)
        try:
            s.connect(lst.getsockname())
        except BlockingIOError as e:
            assert e.errno == errno.EINPROGRESS
            assert select.select([], [s], [], 5)[1] == [s]
        assert s.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR) == 0
        assert s.getpeername() == lst.getsockname()


def test_connect_unix_missing_path(sm, short_dir):
    with sm.socket(socket.AF_UNIX) as s:
        with pytest.raises(FileNotFoundError):
            s.connect(os.path.join(short_dir, "nobody"))


# ---------------------------------------------------------------------------
# bad addresses: fastsock raises an instance of the very class the stdlib raises

_LONG = "/tmp/" + "x" * 200
BAD_ADDRESSES = [
    (socket.AF_INET, ("127.0.0.1", 70000)),
    (socket.AF_INET, ("127.0.0.1", -1)),
    (socket.AF_INET, ("127.0.0.1", 2**70)),
    (socket.AF_INET, ("127.0.0.1", "80")),
    (socket.AF_INET, ("127.0.0.1", 1.0)),
    (socket.AF_INET, ("127.0.0.1",)),
    (socket.AF_INET, ("127.0.0.1", 0, 0)),
    (socket.AF_INET, ["127.0.0.1", 0]),
    (socket.AF_INET, "127.0.0.1"),
    (socket.AF_INET, (None, 0)),
    (socket.AF_INET, (1, 0)),
    (socket.AF_INET, ("127.0.0.1\0", 0)),
    (socket.AF_INET, ("1.2.3.4.5", 0)),
    (socket.AF_INET, ("::1", 0)),
    (socket.AF_INET, ("nonexistent.invalid", 0)),
    (socket.AF_INET6, ("::1", 0, 1 << 20)),
    (socket.AF_INET6, ("::1", 0, -1)),
    (socket.AF_INET6, ("::1", 70000)),
    (socket.AF_INET6, ("::1",)),
    (socket.AF_INET6, ("::1", 0, 0, 0, 0)),
    (socket.AF_INET6, ("127.0.0.1", 0)),
    (socket.AF_INET6, ("<broadcast>", 0)),
    (socket.AF_INET6, "::1"),
    (socket.AF_UNIX, 123),
    (socket.AF_UNIX, None),
    (socket.AF_UNIX, ("/tmp/x",)),
    (socket.AF_UNIX, _LONG),
    (socket.AF_UNIX, _LONG.encode()),
]


def _raised(mod, family, method, address):
    with mod.socket(family, socket.SOCK_STREAM) as s:
        try:
            getattr(s, method)(address)
        except Exception as e:   # noqa: BLE001 - the class is what is compared
            return e
    return None


@pytest.mark.parametrize("method", ["bind", "connect", "connect_ex"])
@pytest.mark.parametrize("family, address", BAD_ADDRESSES,
                         ids=[f"{f.name}-{a!r}"[:60] for f, a in BAD_ADDRESSES])
def test_bad_address_raises_what_the_stdlib_raises(family, address, method):
    if family == socket.AF_INET6 and not HAVE_IPV6:
        pytest.skip("no IPv6 here")
    std = _raised(socket, family, method, address)
    assert std is not None, "the stdlib accepted it: not a bad address"
    ours = _raised(fastsock, family, method, address)
    assert isinstance(ours, type(std)), (ours, std)
    assert getattr(ours, "errno", None) == getattr(std, "errno", None) or \
        type(std) is OSError  # AF_UNIX "path too long": stdlib OSError without errno


def test_bind_errors(sm):
    with _listener(sm) as a, sm.socket() as b:
        with pytest.raises(OSError) as e:
            b.bind(a.getsockname())
        assert e.value.errno == errno.EADDRINUSE
        with pytest.raises(OSError) as e:
            a.bind(("127.0.0.1", 0))                # bound already
        assert e.value.errno == errno.EINVAL
    with sm.socket() as c:
        with pytest.raises(OSError) as e:
            c.bind(("192.0.2.1", 0))                # TEST-NET-1: not ours
        assert e.value.errno == errno.EADDRNOTAVAIL


def test_listen_on_udp(sm):
    with sm.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        with pytest.raises(OSError) as e:
            s.listen()
        assert e.value.errno == errno.EOPNOTSUPP


# ---------------------------------------------------------------------------
# dup, fromfd, socketpair, create_connection, create_server

def test_dup(sm):
    with _listener(sm) as s:
        s.settimeout(1.25)
        with s.dup() as d:
            assert type(d) is sm.socket
            assert d.fileno() != s.fileno()
            assert (d.family, d.type, d.proto) == (s.family, s.type, s.proto)
            assert d.gettimeout() == 1.25
            assert d.getsockname() == s.getsockname()


def test_fromfd(sm):
    with _listener(sm) as lst:
        with sm.fromfd(lst.fileno(), socket.AF_INET, socket.SOCK_STREAM) as f:
            assert type(f) is sm.socket and f.fileno() != lst.fileno()
            with sm.create_connection(f.getsockname()):
                conn, _ = f.accept()
                assert type(conn) is sm.socket
                conn.close()


@pytest.mark.parametrize("kind", [socket.SOCK_STREAM, socket.SOCK_DGRAM])
def test_socketpair(sm, kind):
    a, b = sm.socketpair(socket.AF_UNIX, kind)
    with a, b:
        assert type(a) is sm.socket and type(b) is sm.socket
        assert a.family == socket.AF_UNIX and a.type == kind
        a.sendall(b"x")
        assert b.recv(1) == b"x"
    a, b = sm.socketpair()
    with a, b:
        assert type(a) is sm.socket


def test_create_connection(sm):
    with _listener(sm) as lst:
        with sm.create_connection(lst.getsockname(), timeout=1.5) as c:
            assert type(c) is sm.socket
            assert c.gettimeout() == 1.5
            assert c.getpeername() == lst.getsockname()
        with sm.create_connection(lst.getsockname(),
                                  source_address=("127.0.0.1", 0)) as c:
            assert c.gettimeout() is None
    with pytest.raises(ConnectionRefusedError):
        sm.create_connection(("127.0.0.1", _closed_port()), timeout=2)


@pytest.mark.parametrize("kw", [
    {},
    {"reuse_port": True},
    pytest.param({"family": socket.AF_INET6, "dualstack_ipv6": True}, marks=needs_ipv6),
])
def test_create_server(sm, kw):
    if kw.get("dualstack_ipv6") and not sm.has_dualstack_ipv6():
        pytest.skip("no dual-stack IPv6 here")
    if kw.get("reuse_port") and not hasattr(socket, "SO_REUSEPORT"):
        pytest.skip("no SO_REUSEPORT")
    host = "" if kw.get("dualstack_ipv6") else "127.0.0.1"
    with sm.create_server((host, 0), **kw) as srv:
        assert type(srv) is sm.socket
        assert srv.family == kw.get("family", socket.AF_INET)
        port = srv.getsockname()[1]
        with sm.create_connection(("127.0.0.1", port)):
            conn, addr = srv.accept()
            conn.close()
        if sm is fastsock:
            assert isinstance(srv.backlog, int) and srv.backlog >= 1


def test_create_server_explicit_backlog(sm):
    with sm.create_server(("127.0.0.1", 0), backlog=5) as srv:
        with sm.create_connection(srv.getsockname()):
            srv.accept()[0].close()


# ---------------------------------------------------------------------------
# the rest of the stdlib class: repr, pickling, makefile, sendfile, detach

def _fd_free(r: str, s) -> str:
    return r.replace(f"fd={s.fileno()}", "fd=N")


def test_repr_is_the_stdlib_repr():
    """Word for word the stdlib's (the unclosed-socket ResourceWarning quotes
    it, and warning filters written for the stdlib match on it)."""
    with socket.socket() as a, fastsock.socket() as b:
        assert _fd_free(repr(a), a) == _fd_free(repr(b), b)
        assert repr(b).startswith("<socket.socket fd=")
        assert type(b) is fastsock.socket and type(b).__module__ == "fastsock"
        a.bind(("127.0.0.1", 0))
        b.bind(("127.0.0.1", 0))
        ra = _fd_free(repr(a), a).replace(str(a.getsockname()[1]), "PORT")
        rb = _fd_free(repr(b), b).replace(str(b.getsockname()[1]), "PORT")
        assert ra == rb and "laddr=('127.0.0.1', PORT)" in rb
    assert repr(a) == repr(b) == "<socket.socket [closed] fd=-1, family=2, type=1, proto=0>"


def test_repr_of_accepted_and_connected_sockets(sm):
    lst = _listener(sm)
    with lst, sm.create_connection(lst.getsockname()) as cli:
        conn, _ = lst.accept()
        with conn:
            for s in (cli, conn):
                r = repr(s)
                assert r.startswith("<socket.socket fd=") and "raddr=" in r
                assert r == socket.socket.__repr__(s).replace("<fastsock.socket", "<socket.socket")


class _Sub(fastsock.socket):
    pass


def test_repr_of_a_subclass_names_the_subclass():
    """As with a subclass of the stdlib's class: its own module and name."""
    with _Sub() as s:
        assert repr(s).startswith(f"<{__name__}._Sub fd=")


def test_unclosed_socket_warning_matches_stdlib_filters():
    """CPython's finalizer says ``unclosed %R``: the filter pytest
    configurations carry for the stdlib matches a fastsock socket too."""
    code = textwrap.dedent("""
        import gc, warnings
        import fastsock
        warnings.filterwarnings("error")
        warnings.filterwarnings("ignore", "unclosed <socket.socket fd=", ResourceWarning)
        s = fastsock.socket()
        del s
        gc.collect()
        warnings.resetwarnings()
        warnings.simplefilter("always")
        with warnings.catch_warnings(record=True) as seen:
            s = fastsock.socket(); del s; gc.collect()
        print(seen[0].category.__name__, str(seen[0].message)[:27])
    """)
    r = subprocess.run([sys.executable, "-X", "dev", "-c", code], capture_output=True,
                       text=True, timeout=60)
    assert r.returncode == 0 and r.stderr == "", r.stderr
    assert r.stdout.strip() == "ResourceWarning unclosed <socket.socket fd="


def test_pickling_is_refused(sm):
    with sm.socket() as s:
        with pytest.raises(TypeError):
            pickle.dumps(s)
        with pytest.raises(TypeError):
            copy.copy(s)


def _tcp_pair(sm):
    lst = _listener(sm)
    cli = sm.create_connection(lst.getsockname())
    conn, _ = lst.accept()
    lst.close()
    return cli, conn


def test_makefile(sm):
    cli, conn = _tcp_pair(sm)
    with cli, conn:
        w = cli.makefile("wb")
        r = conn.makefile("r", encoding="ascii", newline="")
        w.write(b"one\r\ntwo\r\n")
        w.flush()
        assert r.readline() == "one\r\n" and r.readline() == "two\r\n"
        # the socket lives on while a file made from it is open
        conn.close()
        assert conn.fileno() != -1
        w.close()
        cli.close()
        assert r.read() == ""
        r.close()
        assert conn.fileno() == -1
        assert isinstance(r.buffer.raw, socket.SocketIO)


def test_sendfile(sm, tmp_path):
    data = os.urandom(300_000)
    path = tmp_path / "payload"
    path.write_bytes(data)
    cli, conn = _tcp_pair(sm)
    got = io.BytesIO()

    def read():
        while chunk := conn.recv(65536):
            got.write(chunk)

    t = threading.Thread(target=read)
    t.start()
    with cli, conn:
        with open(path, "rb") as f:
            assert cli.sendfile(f, 1000) == len(data) - 1000
        cli.shutdown(socket.SHUT_WR)
        t.join(10)
    assert not t.is_alive()
    assert got.getvalue() == data[1000:]


def test_detach(sm):
    s = sm.socket()
    fd = s.detach()
    assert s.fileno() == -1 and "[closed]" in repr(s)
    with sm.socket(fileno=fd) as t:
        assert type(t) is sm.socket and t.fileno() == fd
        t.bind(("127.0.0.1", 0))


def test_context_manager_closes(sm):
    with sm.socket() as s:
        pass
    assert s.fileno() == -1 and s._closed


# ---------------------------------------------------------------------------
# families the core does not encode still work, with typed errors

def _netlink(sm):
    try:
        return sm.socket(socket.AF_NETLINK, socket.SOCK_RAW, socket.NETLINK_ROUTE)
    except (AttributeError, OSError) as e:
        pytest.skip(f"no AF_NETLINK here: {e}")


@needs_linux
def test_weak_references(sm):
    """Created and accepted sockets take weak references (the __weakref__
    slot of socket.socket), which die with the object."""
    with _listener(sm) as lst, sm.create_connection(lst.getsockname()) as cli:
        conn, _ = lst.accept()
        dead = []
        refs = [weakref.ref(s, dead.append) for s in (conn, cli, lst)]
        assert [r() for r in refs] == [conn, cli, lst]
        conn.close()
        del conn
        assert refs[0]() is None and len(dead) == 1
        assert refs[1]() is cli and refs[2]() is lst


def test_netlink(sm):
    with _netlink(sm) as a, _netlink(sm) as b:
        assert type(a) is sm.socket
        a.bind((0, 0))
        pid, groups = a.getsockname()
        assert pid != 0 and groups == 0
        with pytest.raises(OSError) as e:
            b.bind((pid, 0))                        # that port id is taken
        assert e.value.errno == errno.EADDRINUSE
        if sm is fastsock:
            assert isinstance(e.value, fastsock.AddressInUseError)
        with pytest.raises(TypeError):
            b.bind(("not", "numbers"))
        assert b.connect_ex((0, 0)) == 0
        with pytest.raises(OSError):
            b.listen()                              # netlink does not listen


@needs_linux
def test_packet(sm):
    try:
        s = sm.socket(socket.AF_PACKET, socket.SOCK_RAW, 0)
    except (AttributeError, OSError) as e:
        if sm is fastsock and isinstance(e, OSError):
            assert isinstance(e, fastsock.SocketError)
        pytest.skip(f"no AF_PACKET here: {e}")
    with s:
        s.bind(("lo", 0))
        assert s.getsockname()[0] == "lo"
        with pytest.raises(OSError) as e:
            s.bind(("nosuchif0", 0))
        assert e.value.errno == errno.ENODEV
        if sm is fastsock:
            assert isinstance(e.value, fastsock.SocketError)


def _vsock(sm):
    try:
        s = sm.socket(socket.AF_VSOCK, socket.SOCK_STREAM)
        s.bind((socket.VMADDR_CID_ANY, socket.VMADDR_PORT_ANY))
        s.listen()
        return s
    except (AttributeError, OSError) as e:
        pytest.skip(f"no AF_VSOCK listener here: {e}")


@needs_linux
def test_vsock_listener(sm):
    """accept() on a family the core does not decode takes the stdlib path."""
    with _vsock(sm) as lst:
        lst.settimeout(0.1)
        with pytest.raises(sm.timeout):
            lst.accept()
        lst.setblocking(False)
        with pytest.raises(BlockingIOError):
            lst.accept()
        lst.setblocking(True)
        port = lst.getsockname()[1]
        with sm.socket(socket.AF_VSOCK, socket.SOCK_STREAM) as c:
            c.settimeout(1)
            if c.connect_ex((getattr(socket, "VMADDR_CID_LOCAL", 1), port)) != 0:
                pytest.skip("no VSOCK loopback transport here")
            conn, addr = lst.accept()
            with conn:
                assert type(conn) is sm.socket
                assert addr == c.getsockname()


# ---------------------------------------------------------------------------
# audit events (PEP 578): the ones the stdlib raises, fastsock raises

_AUDIT = textwrap.dedent("""
    import sys
    events = []
    sys.addaudithook(lambda e, a: events.append(e) if e.startswith("socket.") else None)
    sm = __import__(sys.argv[1])
    s = sm.socket(); s.bind(("127.0.0.1", 0)); s.listen()
    c = sm.socket(); c.connect(s.getsockname()); c.connect_ex(s.getsockname())
    a, _ = s.accept()
    d = sm.socket(); d.settimeout(1); d.connect(s.getsockname())
    u = sm.socket(sm.AF_UNIX); u.bind("")
    print(" ".join(events))
""")


def test_audit_events_match():
    def events(mod):
        out = subprocess.run([sys.executable, "-c", _AUDIT, mod], capture_output=True,
                             text=True, timeout=60, check=True)
        return out.stdout.split()
    std = events("socket")
    assert "socket.bind" in std and "socket.connect" in std
    assert events("fastsock") == std


# ---------------------------------------------------------------------------
# the documented differences (README): each one is asserted, so the list stays true

def test_difference_listen_returns_the_backlog():
    with socket.socket() as a, fastsock.socket() as b:
        a.bind(("127.0.0.1", 0))
        b.bind(("127.0.0.1", 0))
        assert a.listen() is None
        n = b.listen()
        assert isinstance(n, int) and n == b.backlog and n >= 1


@needs_linux
def test_difference_default_backlog_is_the_system_maximum():
    with open("/proc/sys/net/core/somaxconn") as f:
        somaxconn = int(f.read())
    with _listener(socket) as a, _listener(fastsock) as b:
        assert fastsock.socket.accept_queue(a).limit == min(128, somaxconn)
        assert b.accept_queue().limit == b.backlog == somaxconn


def test_difference_negative_backlog_warns():
    with socket.socket() as a, fastsock.socket() as b:
        a.bind(("127.0.0.1", 0))
        b.bind(("127.0.0.1", 0))
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            a.listen(-1)
            with pytest.raises(fastsock.BacklogWarning):
                b.listen(-1)


@pytest.mark.parametrize("backlog", [True, 1.0])
def test_difference_bool_and_float_backlog(backlog):
    with socket.socket() as a, fastsock.socket() as b:
        if isinstance(backlog, bool):
            a.listen(backlog)                       # the stdlib takes True as 1
        else:
            with pytest.raises(TypeError):
                a.listen(backlog)
        with pytest.raises(TypeError):
            b.listen(backlog)


def test_difference_typed_errors_are_subclasses():
    port = _closed_port()
    with fastsock.socket() as s:
        with pytest.raises(fastsock.RefusedError) as e:
            s.connect(("127.0.0.1", port))
    assert isinstance(e.value, ConnectionRefusedError)
    assert type(e.value) is not ConnectionRefusedError
    assert e.value.syscall == "connect" and e.value.address == ("127.0.0.1", port)


def test_difference_nul_in_unix_path(short_dir):
    path = os.path.join(short_dir, "a\0b")
    with socket.socket(socket.AF_UNIX) as a:
        a.bind(path)                                # the kernel sees ".../a"
        assert a.getsockname() == os.path.join(short_dir, "a")
    with fastsock.socket(socket.AF_UNIX) as b:
        with pytest.raises(ValueError):
            b.bind(path)


def test_difference_unix_pathlike(short_dir):
    import pathlib
    path = pathlib.Path(short_dir) / "p"
    with socket.socket(socket.AF_UNIX) as a:
        with pytest.raises(TypeError):
            a.bind(path)
    with fastsock.socket(socket.AF_UNIX) as b:
        b.bind(path)
        assert b.getsockname() == str(path)


@needs_ipv6
def test_difference_scope_id_beyond_32_bits():
    with socket.socket(socket.AF_INET6) as a:
        a.bind(("::1", 0, 0, 2**32))                # the stdlib wraps it to 0
    with fastsock.socket(socket.AF_INET6) as b:
        with pytest.raises(OverflowError):
            b.bind(("::1", 0, 0, 2**32))


def test_difference_not_tracked_by_the_cycle_collector():
    """fastsock.socket objects (that class exactly) are left out of the
    cycle collector: no __dict__, slots holding numbers, None and a path, so
    no cycle can go through them.  Subclasses, which have a __dict__, and the
    stdlib's sockets are tracked as usual."""
    class Sub(fastsock.socket):
        pass

    with _listener(fastsock) as lst:
        clients = [socket.create_connection(lst.getsockname()) for _ in range(3)]
        conn, _ = lst.accept()
        lst.setblocking(False)
        time.sleep(0.05)
        batch = lst.accept_many(8)
        a, b = fastsock.socketpair()
        ours = [lst, conn, a, b, fastsock.create_connection(lst.getsockname()),
                fastsock.socket(fileno=os.dup(a.fileno()))] + [s for s, _ in batch]
        try:
            assert len(batch) == 2
            assert not any(gc.is_tracked(s) for s in ours)
            with Sub() as sub, socket.socket() as std:
                assert gc.is_tracked(sub) and gc.is_tracked(std)
                sub.cycle = sub            # what a __dict__ allows; collected
                ref = weakref.ref(sub)
            del sub
            gc.collect()
            assert ref() is None
        finally:
            for s in ours + clients:
                s.close()


@pytest.mark.parametrize("timeout", [None, 5.0, 0.0])
def test_accept_many_batches_only_where_accept_cannot_wait(timeout):
    """With a timeout or non-blocking (a non-blocking descriptor either way)
    accept_many() takes the queue with accept4.  A blocking listener takes it
    with io_uring's accept that cannot wait where there is one, else gives one
    connection per call: a blocking accept4 for a second one would wait for
    the next connection if another acceptor took the queued one first."""
    uring = fastsock._core.accept_batching() == "io_uring"
    expect = 5 if timeout is not None or uring else 1
    with _listener(fastsock, backlog=16) as lst:
        lst.settimeout(timeout)
        clients = [socket.create_connection(lst.getsockname()) for _ in range(5)]
        got = []
        try:
            deadline = time.monotonic() + 5
            while lst.accept_queue().pending < 5 and time.monotonic() < deadline:
                time.sleep(0.01)
            got = lst.accept_many(8)
            assert len(got) == expect
            assert lst.accept_queue().pending == 5 - expect  # the rest still queued
            assert [a for _, a in got] == [c.getsockname() for c in clients[:expect]]
            assert all(conn.gettimeout() is None for conn, _ in got)
        finally:
            for conn, _ in got:
                conn.close()
            for c in clients:
                c.close()


def test_accept_many_across_batches_in_queue_order():
    """accept_many(max) with more connections queued than one GIL-released
    batch takes (64): every connection once, in the kernel's queue order,
    each a working socket."""
    with _listener(fastsock, backlog=512) as lst:
        clients = [socket.create_connection(lst.getsockname()) for _ in range(150)]
        try:
            lst.setblocking(False)
            got = lst.accept_many(1000)
            assert [addr for _, addr in got] == [c.getsockname() for c in clients]
            for i, (conn, _) in enumerate(got):
                with conn:
                    assert type(conn) is fastsock.socket and conn.getblocking()
                    clients[i].sendall(i.to_bytes(2, "big"))
                    assert conn.recv(2) == i.to_bytes(2, "big")
            with pytest.raises(BlockingIOError):
                lst.accept_many(1000)
        finally:
            for c in clients:
                c.close()


# ---- errors as the stdlib shows them (issue: drop-in fidelity) -------------------

def _outcome(call):
    try:
        return "ok", call()
    except Exception as e:  # noqa: BLE001 - the point is to compare any exception
        return "raised", e


_CONSTRUCTOR_CASES = {
    "pipe fd, all arguments": lambda sm, fds: sm.socket(sm.AF_INET, sm.SOCK_STREAM, 0,
                                                        fileno=fds["pipe"]),
    "pipe fd alone": lambda sm, fds: sm.socket(fileno=fds["pipe"]),
    "closed fd": lambda sm, fds: sm.socket(fileno=fds["closed"]),
    "negative fd": lambda sm, fds: sm.socket(fileno=-1),
    "str fd": lambda sm, fds: sm.socket(fileno="3"),
    "family too big": lambda sm, fds: sm.socket(2**40),
    "unknown family": lambda sm, fds: sm.socket(12345),
    "unknown type": lambda sm, fds: sm.socket(sm.AF_INET, 999),
    "float family": lambda sm, fds: sm.socket(2.0),
    "fromfd of a pipe": lambda sm, fds: sm.fromfd(fds["pipe"], sm.AF_INET, sm.SOCK_STREAM),
    "fromfd of a closed fd": lambda sm, fds: sm.fromfd(fds["closed"], sm.AF_INET,
                                                       sm.SOCK_STREAM),
    "socketpair AF_INET6": lambda sm, fds: sm.socketpair(sm.AF_INET6),
    "socketpair unknown family": lambda sm, fds: sm.socketpair(12345),
}


@pytest.mark.parametrize("case", sorted(_CONSTRUCTOR_CASES))
def test_constructor_errors_are_the_stdlibs_typed(case):
    """Same class (or a typed subclass), same str and args; errno errors come
    typed: a non-socket fileno is a NotSocketError."""
    r, w = os.pipe()
    closed = os.dup(r)
    os.close(closed)
    fds = {"pipe": r, "closed": closed}
    try:
        kind_s, std = _outcome(lambda: _CONSTRUCTOR_CASES[case](socket, fds))
        kind_f, ours = _outcome(lambda: _CONSTRUCTOR_CASES[case](fastsock, fds))
        assert kind_s == kind_f == "raised", (std, ours)
        assert isinstance(ours, type(std)), (type(std), type(ours))
        assert (str(ours), ours.args) == (str(std), std.args)
        assert getattr(ours, "__notes__", None) is None
        if getattr(std, "errno", None) is not None:
            assert isinstance(ours, fastsock.SocketError) and ours.errno == std.errno
            assert type(ours) is fastsock.errors.ERRNO_CLASSES[std.errno]
    finally:
        os.close(r)
        os.close(w)


def test_create_server_error_is_typed_with_the_stdlib_text():
    with socket.create_server(("127.0.0.1", 0)) as taken:
        addr = taken.getsockname()
        with pytest.raises(OSError) as std:
            socket.create_server(addr, reuse_port=False).close()
        with pytest.raises(fastsock.AddressInUseError) as ours:
            fastsock.create_server(addr, reuse_port=False).close()
    assert type(std.value) is OSError
    assert (str(ours.value), ours.value.args) == (str(std.value), std.value.args)


def test_rebind_message_matches_trios_pattern():
    """trio's test_open_tcp_listeners_rebind: match="Address (already )?in use$"."""
    with fastsock.socket() as a, fastsock.socket() as b:
        a.bind(("127.0.0.1", 0))
        a.listen()
        with pytest.raises(OSError, match="Address (already )?in use$"):
            b.bind(a.getsockname())


@pytest.mark.parametrize("method", ["bind", "connect", "connect_ex"])
@pytest.mark.parametrize("address", [
    ("127.0.0.1", 65536), ("127.0.0.1", -1), ("127.0.0.1", 1.5), ("127.0.0.1",), "x",
    None, (None, 80), (b"127.0.0.1\0", 80), ("127.0.0.1", "80"), ["127.0.0.1", 80],
])
def test_address_errors_are_the_stdlibs(method, address):
    """Twisted compares connect_ex's OverflowError text: the method's own name."""
    with socket.socket() as s, fastsock.socket() as f:
        kind_s, std = _outcome(lambda: getattr(s, method)(address))
        kind_f, ours = _outcome(lambda: getattr(f, method)(address))
    assert kind_s == kind_f == "raised"
    assert isinstance(ours, type(std)) and (str(ours), ours.args) == (str(std), std.args)


@pytest.mark.parametrize("address", [5, None, "/" + "x" * 200, b"\0" + b"x" * 200])
def test_unix_address_errors_are_the_stdlibs(address):
    with socket.socket(socket.AF_UNIX) as s, fastsock.socket(socket.AF_UNIX) as f:
        kind_s, std = _outcome(lambda: s.bind(address))
        kind_f, ours = _outcome(lambda: f.bind(address))
    assert kind_s == kind_f == "raised"
    assert isinstance(ours, type(std)) and (str(ours), ours.args) == (str(std), std.args)


def test_bind_by_name_resolves_as_the_stdlib():
    with socket.socket() as s, fastsock.socket() as f:
        s.bind(("localhost", 0))
        f.bind(("localhost", 0))
        assert s.getsockname()[0] == f.getsockname()[0]


@pytest.mark.parametrize("kind", ["tcp client", "unix datagram", "unconnected tcp"])
def test_accept_with_timeout_on_a_non_listener_as_the_stdlib(kind):
    """The stdlib polls before accept when the socket has a timeout: on a socket
    that does not listen it waits and times out (or fails as accept then does)."""
    def make(sm):
        if kind == "unix datagram":
            a, b = sm.socketpair(sm.AF_UNIX, sm.SOCK_DGRAM)
            b.close()
            return a, []
        s = sm.socket()
        if kind == "unconnected tcp":
            return s, []
        lst = sm.create_server(("127.0.0.1", 0))
        s.connect(lst.getsockname())
        return s, [lst]
    seen = []
    for sm in (socket, fastsock):
        s, keep = make(sm)
        with s:
            s.settimeout(0.05)
            with pytest.raises(OSError) as info:
                s.accept()
            seen.append(info.value)
        for k in keep:
            k.close()
    std, ours = seen
    assert isinstance(ours, type(std)) and (str(ours), ours.args) == (str(std), std.args)
