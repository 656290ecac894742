"""Descriptor hygiene: every error path of socket/bind/listen/accept/connect,
thousands of times, leaves the process's descriptor table exactly as it was;
every descriptor fastsock creates or accepts is close-on-exec (checked in an
exec'd child).

Each error path is hammered by ``hammer()``: after every single failure the set
of open descriptors must already be back to what it was (so a descriptor kept
alive by the traceback, or left for the garbage collector, is caught), and at
the end the table, number and target of every descriptor, must be identical.
No ResourceWarning ("unclosed socket") may be raised meanwhile.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
import signal
import socket as S
import subprocess
import sys
import textwrap
import types
import warnings

import pytest

import fastsock
from fastsock import _core
from fastsock import errors as E

pytestmark = pytest.mark.skipif(not os.path.isdir("/proc/self/fd"),
                                reason="needs /proc/self/fd")

N = 100            # iterations per error path (x ~50 paths)
BAD_FD = 999_983   # above any RLIMIT_NOFILE here: EBADF without closing anything


def fd_numbers() -> set[int]:
    """The descriptor numbers open now (the one listdir used is gone again)."""
    out = set()
    for name in os.listdir("/proc/self/fd"):
        fd = int(name)
        try:
            fcntl.fcntl(fd, fcntl.F_GETFD)
        except OSError:
            continue
        out.add(fd)
    return out


def fd_table() -> dict[int, str]:
    """{descriptor: what it refers to} for every open descriptor."""
    out = {}
    for name in os.listdir("/proc/self/fd"):
        try:
            out[int(name)] = os.readlink(f"/proc/self/fd/{name}")
        except OSError:
            pass
    return out


def hammer(call, expected, n=N):
    """Run ``call`` ``n`` times; each must raise ``expected`` and leave the open
    descriptors exactly as before, already inside the ``except`` clause."""
    base = fd_table()
    numbers = set(base)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        for i in range(n):
            try:
                call()
            except expected:
                now = fd_numbers()
                if now != numbers:
                    pytest.fail(f"iteration {i}: descriptors {sorted(now ^ numbers)} "
                                f"changed while the error propagated")
            else:
                pytest.fail(f"iteration {i}: {call} did not raise {expected}")
    assert fd_table() == base
    leaks = [str(w.message) for w in caught if issubclass(w.category, ResourceWarning)]
    assert not leaks, leaks[:3]


@pytest.fixture
def env(tmp_path):
    """A listener (TCP, backlog 4096), a bound-but-not-listening port (connect
    is refused, and nobody else can take the port meanwhile), a pipe."""
    ns = types.SimpleNamespace()
    ns.listener = fastsock.listen(("127.0.0.1", 0), 1024)
    ns.addr = ns.listener.getsockname()
    ns.refuser = S.socket()
    ns.refuser.bind(("127.0.0.1", 0))
    ns.refused = ns.refuser.getsockname()
    ns.pipe = os.pipe()
    ns.tmp = tmp_path
    ns.regular = tmp_path / "file"
    ns.regular.write_text("x")
    yield ns
    ns.listener.close()
    ns.refuser.close()
    for fd in ns.pipe:
        os.close(fd)


def closing(make):
    """A call that makes a socket with ``make()`` and runs ``body(sock)`` on it,
    always closing it: the test's own descriptors never count as leaks."""
    def wrap(body):
        def call():
            s = make()
            try:
                body(s)
            finally:
                if isinstance(s, int):
                    os.close(s)
                else:
                    s.close()
        return call
    return wrap


core_tcp = closing(lambda: _core.socket(S.AF_INET, S.SOCK_STREAM))
core_udp = closing(lambda: _core.socket(S.AF_INET, S.SOCK_DGRAM))
core_unix = closing(lambda: _core.socket(S.AF_UNIX, S.SOCK_STREAM))
tcp = closing(lambda: fastsock.socket())
udp = closing(lambda: fastsock.socket(S.AF_INET, S.SOCK_DGRAM))
unix = closing(lambda: fastsock.socket(S.AF_UNIX))


# ---- socket() -----------------------------------------------------------------

@pytest.mark.parametrize("args,exc", [
    ((12345, S.SOCK_STREAM), E.AddressFamilyNotSupportedError),
    ((S.AF_INET, S.SOCK_STREAM, S.IPPROTO_UDP), E.ProtocolNotSupportedError),
    ((S.AF_INET, 12345), E.InvalidArgumentError),
    ((S.AF_INET, S.SOCK_STREAM, -7), E.SocketError),
    ((2**40, S.SOCK_STREAM), OverflowError),
    (("inet", S.SOCK_STREAM), TypeError),
])
@pytest.mark.parametrize("api", ["core", "facade"])
def test_socket_errors_leave_no_descriptor(args, exc, api):
    make = _core.socket if api == "core" else fastsock.socket
    hammer(lambda: make(*args), exc)


# The methods of fastsock.socket are compiled; a failure between socket(2) or
# accept4(2) and the finished object is injected where CPython itself can
# fail there: an audit hook that raises on "socket.__new__" (raised by every
# way the object can be built).  Audit hooks cannot be removed, so this runs
# in a child process.
AUDIT_CHILD = r"""
import os, socket as S, sys
import fastsock

class Boom(Exception):
    pass

armed = [0, 0]          # [raise on every n-th event (0: never), events seen]

def hook(event, args):
    # only fastsock's objects: the stdlib client sockets the calls connect
    # with raise the same event, and must not be the ones that fail
    if event == "socket.__new__" and armed[0] and isinstance(args[0], fastsock.socket):
        armed[1] += 1
        if armed[1] % armed[0] == 0:
            raise Boom(event)

sys.addaudithook(hook)
from test_reliability_fds import fd_table as table

def hammer(what, call, every=1, n=100):
    base = table()
    for i in range(n):
        armed[:] = [every, 0]
        try:
            call()
        except Boom:
            armed[0] = 0
            if table() != base:
                sys.exit(f"{what}, iteration {i}: descriptors changed: {table()} != {base}")
        else:
            sys.exit(f"{what}: did not raise")
        finally:
            armed[0] = 0
    print(what, "ok")

listener = fastsock.listen(("127.0.0.1", 0), 1024)
addr = listener.getsockname()

def with_clients(k, body):
    def call():
        clients = [S.create_connection(addr) for _ in range(k)]
        try:
            body()
        finally:
            for c in clients:
                c.close()
    return call

def drain(k):
    got = []
    try:
        while len(got) < k:
            got += listener.accept_many(k)
    finally:
        for s, _ in got:
            s.close()

hammer("socket() tcp", lambda: fastsock.socket(S.AF_INET, S.SOCK_STREAM))
hammer("socket() unix dgram", lambda: fastsock.socket(S.AF_UNIX, S.SOCK_DGRAM))
hammer("socket() nonblocking", lambda: fastsock.socket(S.AF_INET, S.SOCK_STREAM | S.SOCK_NONBLOCK))
hammer("accept()", with_clients(1, listener.accept), n=300)
hammer("accept_many()", with_clients(1, lambda: listener.accept_many(8)))
listener.settimeout(5.0)        # a non-blocking descriptor: accept_many takes batches
hammer("accept_many() failing midway", with_clients(5, lambda: drain(5)), every=3)
# one call takes 100 in two batches (64 + 36); the 80th object fails
hammer("accept_many() failing in its second batch", with_clients(100, lambda: drain(100)),
       every=80, n=20)
hammer("accept() with a timeout", with_clients(1, listener.accept))
S.setdefaulttimeout(2.0)        # the objects are then built by the stdlib constructor
hammer("socket() with a default timeout", lambda: fastsock.socket())
hammer("accept() with a default timeout", with_clients(1, listener.accept))
listener.setblocking(False)
try:
    drain(10**6)
except BlockingIOError:
    pass
else:
    sys.exit("the queue was not empty")
"""


def test_construction_failing_after_the_syscall_closes_descriptor():
    """socket(2) or accept4(2) succeeded, then building the Python object
    failed: the descriptor is closed before the error propagates."""
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(
        [os.path.dirname(os.path.abspath(__file__)), os.environ.get("PYTHONPATH", "")]))
    r = subprocess.run([sys.executable, "-c", AUDIT_CHILD], capture_output=True,
                       text=True, timeout=120, env=env)
    assert r.returncode == 0, r.stdout + r.stderr
    assert r.stdout.count(" ok") == 10, r.stdout


# ---- bind() ---------------------------------------------------------------------

def test_bind_errors_leave_no_descriptor(env):
    taken = env.addr
    missing = str(env.tmp / "missing" / "sock")
    paths = [
        (core_tcp(lambda fd: _core.bind(fd, S.AF_INET, taken)), E.AddressInUseError),
        (tcp(lambda s: s.bind(taken)), E.AddressInUseError),
        (tcp(lambda s: s.bind(("192.0.2.1", 0))), E.AddressNotAvailableError),
        (tcp(lambda s: (s.bind(("127.0.0.1", 0)), s.bind(("127.0.0.1", 0)))),
         E.InvalidArgumentError),
        (lambda: _core.bind(BAD_FD, S.AF_INET, ("127.0.0.1", 0)), E.BadDescriptorError),
        (lambda: _core.bind(env.pipe[0], S.AF_INET, ("127.0.0.1", 0)), E.NotSocketError),
        (unix(lambda s: s.bind(missing)), E.PathNotFoundError),
        (unix(lambda s: s.bind(str(env.regular))), E.AddressInUseError),
        (unix(lambda s: s.bind("/" + "x" * 200)), OSError),  # "AF_UNIX path too long"
        (unix(lambda s: s.bind("a\0b")), ValueError),
        (tcp(lambda s: s.bind(("127.0.0.1", 70000))), E.InvalidPortError),
        (tcp(lambda s: s.bind(("127.0.0.1",))), TypeError),
        (tcp(lambda s: s.bind("127.0.0.1")), TypeError),
        (udp(lambda s: s.bind(("::1", 0))), OSError),   # AF_INET socket, IPv6 literal
        (core_tcp(lambda fd: _core.bind(fd, S.AF_INET6, ("::1", 0))),
         E.AddressFamilyNotSupportedError),
    ]
    for call, exc in paths:
        hammer(call, exc)
    hammer(tcp(lambda s: s.bind(("fastsock-test.invalid", 0))), S.gaierror, n=5)


# ---- listen() -------------------------------------------------------------------

def test_listen_errors_leave_no_descriptor(env):
    def connected(s):
        s.connect(env.addr)
        env.listener.accept()[0].close()
        s.listen()

    paths = [
        (udp(lambda s: s.listen(5)), E.OperationNotSupportedError),
        (core_udp(lambda fd: _core.listen(fd, 5)), E.OperationNotSupportedError),
        (tcp(connected), E.InvalidArgumentError),
        (tcp(lambda s: s.listen("5")), TypeError),
        (tcp(lambda s: s.listen(True)), TypeError),
        (tcp(lambda s: s.listen(2**31)), OverflowError),
        (lambda: _core.listen(BAD_FD, 1), E.BadDescriptorError),
        (lambda: _core.listen(env.pipe[0], 1), E.NotSocketError),
    ]
    for call, exc in paths:
        hammer(call, exc)


def test_fastsock_listen_errors_close_their_socket(env):
    missing = str(env.tmp / "missing" / "sock")
    paths = [
        (lambda: fastsock.listen(env.addr), E.AddressInUseError),
        (lambda: fastsock.listen(("127.0.0.1", 0), "many"), TypeError),
        (lambda: fastsock.listen(("127.0.0.1", 0), 2**40), OverflowError),
        (lambda: fastsock.listen(("192.0.2.1", 0)), E.AddressNotAvailableError),
        (lambda: fastsock.listen(("127.0.0.1", 0), defer_accept=-1), ValueError),
        (lambda: fastsock.listen(("127.0.0.1", 0), reuse_port_lb=True), ValueError),
        (lambda: fastsock.listen(("127.0.0.1", 0), dualstack_ipv6=True), ValueError),
        (lambda: fastsock.listen(missing), E.PathNotFoundError),
        (lambda: fastsock.listen(str(env.regular)), E.AddressInUseError),
        (lambda: fastsock.listen(42), TypeError),
        (lambda: fastsock.listen(("127.0.0.1", 0), family=S.AF_INET6), OSError),
    ]
    for call, exc in paths:
        hammer(call, exc)
    hammer(lambda: fastsock.listen(("fastsock-test.invalid", 0)), S.gaierror, n=5)
    assert env.regular.read_text() == "x"   # never removed: not a socket


# ---- accept() -------------------------------------------------------------------

def test_accept_errors_leave_no_descriptor(env):
    def nonblocking(s):
        s.bind(("127.0.0.1", 0))
        s.listen(1)
        s.setblocking(False)
        s.accept()

    def timeout(s):
        s.bind(("127.0.0.1", 0))
        s.listen(1)
        s.settimeout(0.001)
        s.accept()

    def many_nonblocking(s):
        s.bind(("127.0.0.1", 0))
        s.listen(1)
        s.setblocking(False)
        s.accept_many(8)

    paths = [
        (tcp(lambda s: s.accept()), E.InvalidArgumentError),            # not listening
        (core_tcp(lambda fd: _core.accept(fd, S.AF_INET)), E.InvalidArgumentError),
        (tcp(lambda s: s.accept_many(4)), E.InvalidArgumentError),
        (udp(lambda s: s.accept()), E.OperationNotSupportedError),
        (tcp(nonblocking), BlockingIOError),
        (tcp(many_nonblocking), BlockingIOError),
        (lambda: _core.accept(BAD_FD, S.AF_INET), E.BadDescriptorError),
        (lambda: _core.accept(env.pipe[0], S.AF_INET), E.NotSocketError),
        (lambda: _core.accept_many(env.pipe[0], S.AF_INET, 4), E.NotSocketError),
        (tcp(lambda s: s.accept_many(0)), ValueError),
    ]
    for call, exc in paths:
        hammer(call, exc)
    hammer(tcp(timeout), E.SocketTimeout, n=30)


class Injected(Exception):
    pass


def _with_client(env, body):
    """A call that queues one connection on the listener, then runs body()."""
    def call():
        c = S.create_connection(env.addr)
        try:
            body()
        finally:
            c.close()
    return call


# The core builds objects of any class it is given (fastsock.socket passes
# its own); a class whose constructor raises exercises the clean-up around it.
SLOTS = (("_io_refs", 0), ("_closed", False), ("_backlog", None), ("_unix_owner", None))


def test_wrap_failure_after_accept4_closes_accepted_descriptor(env):
    """accept4 returned a descriptor, then building the socket object failed."""
    def broken_socket(*a, **k):
        raise Injected

    hammer(_with_client(env, lambda: _core.accept_socket(env.listener, broken_socket)),
           Injected, n=3 * N)
    hammer(_with_client(env, lambda: _core.accept_many_sockets(env.listener, broken_socket, 8)),
           Injected, n=N)


def test_accept_many_failure_midway_closes_the_whole_batch(env):
    calls = []

    def flaky(*a, **k):
        calls.append(1)
        if len(calls) % 3 == 0:
            raise Injected
        return fastsock.socket(*a, **k)

    def call():
        clients = [S.create_connection(env.addr) for _ in range(5)]
        try:
            got = []
            while len(got) < 5:   # take every queued connection; one batch fails
                got += _core.accept_many_sockets(env.listener, flaky, 5, SLOTS)
        finally:
            for c in clients:
                c.close()

    env.listener.settimeout(5.0)    # a non-blocking descriptor: one call takes all 5
    hammer(call, Injected, n=N)
    env.listener.setblocking(False)
    with contextlib.suppress(BlockingIOError):   # nothing left half-taken
        for s, _ in env.listener.accept_many(100):
            s.close()


def test_failure_after_socket_object_built_closes_accepted_descriptor(env):
    """The accepted socket object exists, then something raises before the
    core returns it: here its setblocking(True), which the core calls for a
    class it builds by calling it, on a listener with a timeout (a
    KeyboardInterrupt can land there too)."""
    injected = []

    class Fragile(fastsock.socket):
        __slots__ = ()

        def __new__(cls, *a, **k):      # not the stdlib's __new__: built by a call
            return super().__new__(cls, *a, **k)

        def setblocking(self, flag):
            injected.append(flag)
            raise Injected

    env.listener.settimeout(5.0)
    hammer(_with_client(env, lambda: _core.accept_socket(env.listener, Fragile)),
           Injected, n=N)
    assert injected
    hammer(_with_client(env, lambda: _core.accept_many_sockets(env.listener, Fragile, 4)),
           Injected, n=N)


def test_raising_signal_handler_during_accept_leaves_no_descriptor(env):
    def handler(signum, frame):
        raise Injected

    old = signal.signal(signal.SIGALRM, handler)
    try:
        def call():
            signal.setitimer(signal.ITIMER_REAL, 0.002)
            try:
                env.listener.accept()
            finally:
                signal.setitimer(signal.ITIMER_REAL, 0)
        hammer(call, Injected, n=50)

        def call_timeout():
            env.listener.settimeout(5.0)
            signal.setitimer(signal.ITIMER_REAL, 0.002)
            try:
                env.listener.accept()
            finally:
                signal.setitimer(signal.ITIMER_REAL, 0)
                env.listener.settimeout(None)
        hammer(call_timeout, Injected, n=50)
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, old)


# ---- connect() ------------------------------------------------------------------

def test_connect_errors_leave_no_descriptor(env):
    def twice(s):
        s.connect(env.addr)
        try:
            s.connect(env.addr)
        finally:
            env.listener.accept()[0].close()

    paths = [
        (tcp(lambda s: s.connect(env.refused)), E.RefusedError),
        (core_tcp(lambda fd: _core.connect(fd, S.AF_INET, env.refused)), ConnectionRefusedError),
        (tcp(lambda s: (s.settimeout(2.0), s.connect(env.refused))), E.RefusedError),
        (tcp(twice), E.AlreadyConnectedError),
        (core_tcp(lambda fd: _core.connect(fd, S.AF_INET6, ("::1", 1))),
         E.AddressFamilyNotSupportedError),
        (lambda: _core.connect(BAD_FD, S.AF_INET, env.refused), E.BadDescriptorError),
        (lambda: _core.connect(env.pipe[0], S.AF_INET, env.refused), E.NotSocketError),
        (tcp(lambda s: s.connect(("127.0.0.1", -1))), ValueError),
        (unix(lambda s: s.connect(str(env.tmp / "nothing-here"))), E.PathNotFoundError),
        (unix(lambda s: s.connect(str(env.regular))), E.RefusedError),
        (lambda: fastsock.create_connection(env.refused), ConnectionRefusedError),
        (lambda: fastsock.create_connection(env.refused, timeout=2.0), ConnectionRefusedError),
    ]
    for call, exc in paths:
        hammer(call, exc)
    # name look-ups ask the resolver: a few only (.invalid never resolves)
    hammer(tcp(lambda s: s.connect(("fastsock-test.invalid", 1))), S.gaierror, n=5)


def test_connect_ex_error_codes_leave_no_descriptor(env):
    def call():
        with fastsock.socket() as s:
            if s.connect_ex(env.refused) != errno.ECONNREFUSED:
                raise AssertionError("connect_ex did not report ECONNREFUSED")
        raise Injected
    hammer(call, Injected)


# ---- successes do not leak either ---------------------------------------------------

def test_successful_paths_leave_no_descriptor(env):
    def call():
        with fastsock.create_connection(env.addr) as c:
            conn, _ = env.listener.accept()
            conn.close()
        with fastsock.create_connection(env.addr):
            fd, _ = _core.accept(env.listener.fileno(), S.AF_INET)
            os.close(fd)
        with fastsock.listen(("127.0.0.1", 0), 8) as lst, fastsock.socket() as c:
            c.connect(lst.getsockname())
            for s, _ in lst.accept_many(8):
                s.close()
        raise Injected
    hammer(call, Injected, n=2 * N)


# ---- close-on-exec, checked by an exec'd child ------------------------------------

CHILD = textwrap.dedent("""
    import json, os, sys
    seen = {}
    for fd in json.loads(sys.argv[1]):
        try:
            os.fstat(fd)
            seen[fd] = True
        except OSError:
            seen[fd] = False
    print(json.dumps(seen))
""")


def test_created_and_accepted_descriptors_are_close_on_exec(env, tmp_path):
    import json

    made = {}
    keep = []

    def note(name, obj):
        keep.append(obj)
        fd = obj if isinstance(obj, int) else obj.fileno()
        assert fd >= 0
        made[name] = fd

    note("core.socket", _core.socket(S.AF_INET, S.SOCK_STREAM))
    note("core.socket unix", _core.socket(S.AF_UNIX, S.SOCK_DGRAM))
    note("fastsock.socket", fastsock.socket())
    note("fastsock.socket inet6", fastsock.socket(S.AF_INET6))
    note("fastsock.listen", fastsock.listen(("127.0.0.1", 0)))
    note("fastsock.listen unix", fastsock.listen(str(tmp_path / "u")))
    clients = [S.create_connection(env.addr) for _ in range(4)]
    keep += clients
    fd, _ = _core.accept(env.listener.fileno(), S.AF_INET)
    note("core.accept", fd)
    note("facade accept", env.listener.accept()[0])
    env.listener.settimeout(5.0)
    note("facade accept with timeout", env.listener.accept()[0])
    env.listener.settimeout(None)
    note("facade accept_many", env.listener.accept_many(4)[0][0])
    note("create_connection", fastsock.create_connection(env.addr))
    note("accepted from create_connection", env.listener.accept()[0])
    a, b = fastsock.socketpair()
    note("socketpair", a)
    keep.append(b)
    note("fromfd", fastsock.fromfd(a.fileno(), S.AF_UNIX, S.SOCK_STREAM))
    # the control: an inheritable descriptor must be visible in the child
    control = os.dup(made["fastsock.socket"])
    os.set_inheritable(control, True)
    try:
        for name, fd in made.items():
            assert fcntl.fcntl(fd, fcntl.F_GETFD) & fcntl.FD_CLOEXEC, name
        fds = sorted(set(made.values()) | {control})
        p = subprocess.run([sys.executable, "-c", CHILD, json.dumps(fds)],
                           close_fds=False, capture_output=True, text=True, timeout=60)
        assert p.returncode == 0, p.stderr
        seen = {int(k): v for k, v in json.loads(p.stdout).items()}
        assert seen[control] is True, "control descriptor was not inherited"
        inherited = {name: fd for name, fd in made.items() if seen[fd]}
        assert not inherited, f"inherited across exec: {inherited}"
    finally:
        os.close(control)
        for obj in keep:
            if isinstance(obj, int):
                os.close(obj)
            else:
                obj.close()
