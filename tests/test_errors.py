"""fastsock.errors: the errno -> class table, accept sorting, str, pickle and copy.

Pure Python: no kernel and no compiled core needed.  Builtin parents are derived
at test time from what CPython itself maps (``type(OSError(n, "x"))``), never
hard-coded.
"""

from __future__ import annotations

import ast
import builtins
import copy
import errno
import os
import pickle
import subprocess
import socket
import sys
import warnings

import pytest

from fastsock import errors
from fastsock.errors import (
    ACCEPT_CAPACITY_ERRNOS,
    ACCEPT_RETRY_ERRNOS,
    ERRNO_CLASSES,
    SYSCALL_ERRNO_CLASSES,
    AcceptCapacityError,
    AcceptRetryError,
    AddressInUseError,
    EphemeralPortsExhaustedError,
    InvalidPortError,
    SocketError,
    SocketTimeout,
    UnsupportedOptionError,
    make_error,
)

# The errnos the brief and the man pages of socket/bind/listen/accept/connect name.
DOCUMENTED = [
    "EACCES", "EPERM", "EADDRINUSE", "EADDRNOTAVAIL", "EAFNOSUPPORT", "EPROTONOSUPPORT",
    "EPROTOTYPE", "ESOCKTNOSUPPORT", "EOPNOTSUPP", "EBADF", "ENOTSOCK", "EDESTADDRREQ",
    "EINVAL", "EISCONN", "EMFILE", "ENFILE", "ENOBUFS", "ENOMEM", "EAGAIN", "EWOULDBLOCK",
    "EALREADY", "EINPROGRESS", "ECONNREFUSED", "ECONNABORTED", "ECONNRESET", "ETIMEDOUT",
    "ENETUNREACH", "ENETDOWN", "EHOSTUNREACH", "EHOSTDOWN", "ENONET", "EPROTO", "ENOPROTOOPT",
    "EINTR", "EFAULT", "ENOENT", "ENOTDIR", "ENAMETOOLONG", "ELOOP", "EROFS", "EIO", "EISDIR",
    "ENOSR", "EPIPE",
]
REQUIRED_NAMES = {
    "AddressInUseError": "EADDRINUSE",
    "AddressNotAvailableError": "EADDRNOTAVAIL",
    "AddressFamilyNotSupportedError": "EAFNOSUPPORT",
    "ProtocolNotSupportedError": "EPROTONOSUPPORT",
    "OperationNotSupportedError": "EOPNOTSUPP",
    "BadDescriptorError": "EBADF",
    "NotSocketError": "ENOTSOCK",
    "DestinationAddressRequiredError": "EDESTADDRREQ",
    "InvalidArgumentError": "EINVAL",
    "AlreadyConnectedError": "EISCONN",
    "TooManyOpenFilesError": "EMFILE",
    "NoBufferSpaceError": "ENOBUFS",
    "PermissionDeniedError": "EACCES",
    "NameTooLongError": "ENAMETOOLONG",
}
RETRY_NAMES = ["ENETDOWN", "EPROTO", "ENOPROTOOPT", "EHOSTDOWN", "ENONET", "EHOSTUNREACH",
               "EOPNOTSUPP", "ENETUNREACH", "ECONNABORTED", "EPERM"]
CAPACITY_NAMES = ["EMFILE", "ENFILE", "ENOBUFS", "ENOMEM"]
SYSCALLS = ["socket", "bind", "listen", "connect"]
ATTRS = ("errno", "strerror", "syscall", "address", "fd", "backlog", "args")


def _present(names: list[str]) -> list[int]:
    return [getattr(errno, n) for n in names if hasattr(errno, n)]


def _builtin_oserrors(cls: type) -> set[type]:
    """The PEP 3151 builtins (OSError subclasses from builtins) in cls's MRO."""
    return {c for c in cls.__mro__
            if c.__module__ == "builtins" and issubclass(c, OSError) and c is not OSError}


def _errno_names(n: int) -> set[str]:
    return {k for k, v in vars(errno).items() if k.startswith("E") and v == n}


PUBLIC_CLASSES = [getattr(errors, n) for n in errors.__all__
                  if isinstance(getattr(errors, n), type)]
SOCKET_ERROR_CLASSES = [c for c in PUBLIC_CLASSES if issubclass(c, SocketError)]
TABLE = sorted(ERRNO_CLASSES.items())


# ---- names ------------------------------------------------------------------

def test_all_is_complete_and_real():
    assert len(set(errors.__all__)) == len(errors.__all__)
    for name in errors.__all__:
        assert hasattr(errors, name), name
    defined = {n for n, v in vars(errors).items() if not n.startswith("_")
               and isinstance(v, type) and v.__module__ == errors.__name__}
    assert defined <= set(errors.__all__)
    for cls in PUBLIC_CLASSES:
        assert cls.__qualname__ == cls.__name__  # module level, so pickle finds it
        assert cls.__doc__ and cls.__doc__.strip(), cls


def test_no_builtin_shadowed():
    shadowed = [n for n in errors.__all__ if hasattr(builtins, n)]
    assert shadowed == []


def test_module_imports_only_stdlib():
    with open(errors.__file__, encoding="utf-8") as f:
        tree = ast.parse(f.read())
    imported = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            imported |= {a.name.split(".")[0] for a in node.names}
        elif isinstance(node, ast.ImportFrom):
            imported.add((node.module or "").split(".")[0])
    assert "fastsock" not in imported
    assert imported <= set(sys.stdlib_module_names) | {"__future__"}


@pytest.mark.parametrize("name,ename", sorted(REQUIRED_NAMES.items()))
def test_required_names(name, ename):
    cls = getattr(errors, name)
    assert ERRNO_CLASSES[getattr(errno, ename)] is cls
    assert type(make_error(getattr(errno, ename), "bind")) is cls


@pytest.mark.parametrize("ename", DOCUMENTED)
def test_documented_errno_has_own_class(ename):
    if not hasattr(errno, ename):
        pytest.skip(f"{ename} does not exist on this platform")
    cls = ERRNO_CLASSES[getattr(errno, ename)]
    assert cls is not SocketError and issubclass(cls, SocketError)


def test_one_class_per_errno():
    by_class: dict[type, set[int]] = {}
    for n, cls in ERRNO_CLASSES.items():
        by_class.setdefault(cls, set()).add(n)
    for cls, ns in by_class.items():
        if len(ns) > 1:  # only true aliases (ENOTSUP where it differs from EOPNOTSUPP)
            assert cls is errors.OperationNotSupportedError
            assert ns == {errno.EOPNOTSUPP, errno.ENOTSUP}


def test_every_class_reachable_from_make_error():
    reachable = set(ERRNO_CLASSES.values()) | set(SYSCALL_ERRNO_CLASSES.values())
    reachable |= {EphemeralPortsExhaustedError}
    not_raised = {SocketError, SocketTimeout, AcceptRetryError, AcceptCapacityError}
    unreachable = {c.__name__ for c in SOCKET_ERROR_CLASSES} - {c.__name__ for c in reachable}
    unreachable -= {c.__name__ for c in not_raised}
    if sys.platform.startswith("linux"):
        assert unreachable == set()
    else:  # errnos some platforms lack
        assert unreachable <= {"NoNetworkError", "AcceptNoNetworkError",
                               "NoStreamResourcesError", "HostDownError", "AcceptHostDownError"}


def test_tables_are_read_only():
    with pytest.raises(TypeError):
        ERRNO_CLASSES[99999] = SocketError  # type: ignore[index]
    with pytest.raises(TypeError):
        SYSCALL_ERRNO_CLASSES[("accept", 99999)] = SocketError  # type: ignore[index]


# ---- errno classes ----------------------------------------------------------

@pytest.mark.parametrize("n,cls", TABLE, ids=[errno.errorcode.get(n, str(n)) for n, _ in TABLE])
def test_builtin_parent_matches_cpython(n, cls):
    expected = type(OSError(n, "x"))  # CPython's own PEP 3151 mapping
    assert issubclass(cls, expected)
    assert _builtin_oserrors(cls) == _builtin_oserrors(expected)


@pytest.mark.parametrize("n,cls", TABLE, ids=[errno.errorcode.get(n, str(n)) for n, _ in TABLE])
def test_docstring_names_errno(n, cls):
    assert any(name in cls.__doc__ for name in _errno_names(n))


@pytest.mark.parametrize("syscall", SYSCALLS)
@pytest.mark.parametrize("n,cls", TABLE, ids=[errno.errorcode.get(n, str(n)) for n, _ in TABLE])
def test_make_error(n, cls, syscall):
    e = make_error(n, syscall, fd=7, address=("::1", 80, 0, 0), backlog=5)
    assert type(e) is cls
    assert isinstance(e, OSError) and isinstance(e, SocketError)
    assert not isinstance(e, (AcceptRetryError, AcceptCapacityError))
    assert e.errno == n and e.strerror == os.strerror(n)
    assert e.args == (n, os.strerror(n))
    assert (e.syscall, e.fd, e.address, e.backlog) == (syscall, 7, ("::1", 80, 0, 0), 5)
    assert e.filename is None
    expected = type(OSError(n, "x"))
    with pytest.raises(expected) as info:
        raise e
    assert info.value.errno == n


def test_stdlib_style_handling():
    try:
        raise make_error(errno.EADDRINUSE, "bind", address=("127.0.0.1", 8080))
    except OSError as e:
        assert e.errno == errno.EADDRINUSE
        assert e.args[0] == errno.EADDRINUSE
    with pytest.raises(ConnectionRefusedError):
        raise make_error(errno.ECONNREFUSED, "connect")
    with pytest.raises(TimeoutError):
        raise make_error(errno.ETIMEDOUT, "connect")
    with pytest.raises(BlockingIOError):
        raise make_error(errno.EAGAIN, "accept")
    with pytest.raises(PermissionError):
        raise make_error(errno.EPERM, "connect")


def test_blocking_io_layout():
    e = make_error(errno.EAGAIN, "accept", fd=3)
    std = BlockingIOError(errno.EAGAIN, "x")
    assert hasattr(e, "characters_written") == hasattr(std, "characters_written")
    e.characters_written = 5
    assert e.characters_written == 5
    for n in (errno.EALREADY, errno.EINPROGRESS):
        assert isinstance(make_error(n, "connect"), BlockingIOError)


def test_unknown_errno():
    e = make_error(99999, "bind", fd=3)
    assert type(e) is SocketError
    assert e.errno == 99999 and e.strerror == os.strerror(99999)
    unmapped = next(n for n in sorted(errno.errorcode) if n not in ERRNO_CLASSES)
    assert type(make_error(unmapped, "accept")) is SocketError


def test_keyword_only():
    with pytest.raises(TypeError):
        make_error(errno.EBADF, "listen", 3)  # type: ignore[misc]


def test_ephemeral_ports_exhausted():
    e = make_error(errno.EADDRINUSE, "listen", fd=4, unbound=True)
    assert type(e) is EphemeralPortsExhaustedError
    assert isinstance(e, AddressInUseError) and e.errno == errno.EADDRINUSE
    assert str(e) == f"[Errno {errno.EADDRINUSE}] {os.strerror(errno.EADDRINUSE)}"
    assert e.context() == "listen(fd=4)"
    assert type(make_error(errno.EADDRINUSE, "listen", fd=4)) is AddressInUseError
    assert type(make_error(errno.EADDRINUSE, "bind", unbound=True)) is AddressInUseError
    assert type(make_error(errno.EBADF, "listen", unbound=True)) is errors.BadDescriptorError


# ---- accept sorting ---------------------------------------------------------

def test_accept_errno_tuples():
    assert sorted(ACCEPT_RETRY_ERRNOS) == sorted(set(_present(RETRY_NAMES)))
    assert sorted(ACCEPT_CAPACITY_ERRNOS) == sorted(set(_present(CAPACITY_NAMES)))
    assert not set(ACCEPT_RETRY_ERRNOS) & set(ACCEPT_CAPACITY_ERRNOS)
    assert isinstance(ACCEPT_RETRY_ERRNOS, tuple) and isinstance(ACCEPT_CAPACITY_ERRNOS, tuple)


ACCEPT_SORTED = ACCEPT_RETRY_ERRNOS + ACCEPT_CAPACITY_ERRNOS


@pytest.mark.parametrize("n", ACCEPT_SORTED, ids=[errno.errorcode[n] for n in ACCEPT_SORTED])
def test_accept_sorting(n):
    marker, other = ((AcceptRetryError, AcceptCapacityError) if n in ACCEPT_RETRY_ERRNOS
                     else (AcceptCapacityError, AcceptRetryError))
    e = make_error(n, "accept", fd=3)
    cls = type(e)
    assert getattr(errors, cls.__name__) is cls and cls.__name__ in errors.__all__
    assert cls.__name__.startswith("Accept")
    assert issubclass(cls, ERRNO_CLASSES[n]) and issubclass(cls, marker)
    assert not isinstance(e, other)
    assert e.errno == n and e.syscall == "accept" and e.args == (n, os.strerror(n))
    assert _builtin_oserrors(cls) == _builtin_oserrors(type(OSError(n, "x")))
    assert any(name in cls.__doc__ for name in _errno_names(n))
    with pytest.raises(marker):
        raise e
    for syscall in ("bind", "connect", "listen", "socket", None):
        e2 = make_error(n, syscall)
        assert type(e2) is ERRNO_CLASSES[n]
        assert not isinstance(e2, (AcceptRetryError, AcceptCapacityError))


def test_accept_loop_clauses():
    caught = []
    for n in (errno.ECONNABORTED, errno.EMFILE, errno.EPROTO, errno.ENOBUFS):
        try:
            raise make_error(n, "accept", fd=3)
        except AcceptRetryError:
            caught.append("retry")
        except AcceptCapacityError:
            caught.append("capacity")
    assert caught == ["retry", "capacity", "retry", "capacity"]
    for n in (errno.EBADF, errno.EINVAL, errno.EAGAIN, errno.ENOTSOCK):
        e = make_error(n, "accept", fd=3)
        assert not isinstance(e, (AcceptRetryError, AcceptCapacityError))


# ---- str ----------------------------------------------------------------------

def test_str_is_the_stdlibs_and_context_is_apart():
    """str() and args are exactly OSError's; the call that failed is in
    ``context()`` and the attributes, never in the message."""
    e = make_error(errno.EADDRINUSE, "bind", address=("127.0.0.1", 8080), fd=3)
    assert str(e) == str(OSError(errno.EADDRINUSE, os.strerror(errno.EADDRINUSE)))
    assert repr(e) == f"AddressInUseError({errno.EADDRINUSE}, {os.strerror(errno.EADDRINUSE)!r})"
    assert not hasattr(e, "__notes__")
    assert e.context() == "bind(('127.0.0.1', 8080))"
    assert make_error(errno.EBADF, "listen", fd=5).context() == "listen(fd=5)"
    assert make_error(errno.EBADF, "listen", fd=5, backlog=7).context() == \
        "listen(fd=5, backlog=7)"
    assert make_error(errno.EBADF, "listen").context() == "listen()"
    assert make_error(errno.EBADF, None, fd=5).context() == ""
    assert make_error(errno.EROFS, "bind", address=b"/ro/sock").context() == "bind(b'/ro/sock')"


def test_hints():
    assert "CAP_NET_BIND_SERVICE" in make_error(errno.EACCES, "bind").hint
    assert "RLIMIT_NOFILE" in make_error(errno.EMFILE, "accept").hint
    assert "listen() first" in make_error(errno.EINVAL, "accept").hint
    assert make_error(errno.EIO, "bind").hint is None
    assert SocketError("no errno").hint is None


def test_notes_are_opt_in():
    """pytest's raises(match=) reads str(e) joined with the notes: none by
    default; set_error_notes(True) adds the context and the hint as one."""
    assert errors.error_notes() is False          # FASTSOCK_ERROR_NOTES is unset in tests
    assert not hasattr(make_error(errno.EADDRINUSE, "bind", address=("h", 1)), "__notes__")
    before = errors.set_error_notes(True)
    try:
        e = make_error(errno.EADDRINUSE, "bind", address=("h", 1))
        assert e.__notes__ == [f"bind(('h', 1)): {e.hint}"]
        r = errors._retyped(OSError(errno.EBADF, "Bad file descriptor"), "listen", 4)
        assert r.__notes__ == ["listen(fd=4): the socket is closed"]
    finally:
        errors.set_error_notes(before)
    assert not hasattr(make_error(errno.EADDRINUSE, "bind"), "__notes__")
    assert make_error(errno.EIO, "bind", fd=1, note=True).__notes__ == ["bind(fd=1)"]


def test_notes_switched_on_by_the_environment():
    code = ("import errno, fastsock.errors as E; "
            "print(E.error_notes(), E.make_error(errno.EBADF, 'listen', fd=4).__notes__)")
    for value, want in (("1", "True ['listen(fd=4): the socket is closed']"),):
        r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                           env={**os.environ, "FASTSOCK_ERROR_NOTES": value}, timeout=60)
        assert r.stdout.strip() == want, r.stderr
    r = subprocess.run([sys.executable, "-c", "import fastsock.errors as E; print(E.error_notes())"],
                       capture_output=True, text=True, timeout=60,
                       env={**os.environ, "FASTSOCK_ERROR_NOTES": "0"})
    assert r.stdout.strip() == "False", r.stderr


def test_retyped_keeps_the_stdlib_args():
    std = OSError(errno.EADDRINUSE, "Address already in use (while attempting to bind on "
                  "address ('127.0.0.1', 1))")
    e = errors._retyped(std, "bind")
    assert type(e) is AddressInUseError and e.args == std.args and str(e) == str(std)
    f = OSError(errno.ENOENT, "No such file or directory", "/x", None, "/y")
    g = errors._retyped(f, "bind")
    assert (g.filename, g.filename2, str(g)) == ("/x", "/y", str(f))
    for unchanged in (OSError("AF_UNIX path too long"), socket.gaierror(-2, "Name"),
                      socket.herror(1, "host"), TimeoutError("timed out"), e):
        assert errors._retyped(unchanged, "connect") is unchanged


# ---- pickle and copy ----------------------------------------------------------

def _with_context(e: SocketError, syscall: str, address: object, fd: int, backlog: int):
    e.syscall, e.address, e.fd, e.backlog = syscall, address, fd, backlog
    return e


def _sample(cls: type[SocketError]) -> SocketError:
    """An instance of cls, through make_error wherever make_error can produce it."""
    if cls is EphemeralPortsExhaustedError:
        return make_error(errno.EADDRINUSE, "listen", fd=9, backlog=128, unbound=True)
    for (syscall, n), c in SYSCALL_ERRNO_CLASSES.items():
        if c is cls:
            return make_error(n, syscall, fd=9, address=("10.0.0.1", 1), backlog=16)
    for n, c in ERRNO_CLASSES.items():
        if c is cls:
            return make_error(n, "connect", fd=9, address=("10.0.0.1", 443), backlog=16)
    if cls is SocketTimeout:
        return _with_context(SocketTimeout(), "connect", ("10.0.0.1", 443), 9, 1)
    return _with_context(cls(errno.EIO, os.strerror(errno.EIO)), "bind", "/tmp/s", 9, 1)


@pytest.mark.parametrize("cls", SOCKET_ERROR_CLASSES, ids=lambda c: c.__name__)
def test_pickle_and_copy_round_trip(cls):
    e = _sample(cls)
    assert type(e) is cls
    e.add_note("context note")
    copies = [pickle.loads(pickle.dumps(e, proto)) for proto in range(pickle.HIGHEST_PROTOCOL + 1)]
    copies += [copy.copy(e), copy.deepcopy(e)]
    for c in copies:
        assert type(c) is cls
        for attr in ATTRS:
            assert getattr(c, attr) == getattr(e, attr), attr
        assert str(c) == str(e) and repr(c) == repr(e)
        assert c.__notes__ == ["context note"]


def test_direct_construction_of_every_class():
    for cls in SOCKET_ERROR_CLASSES:
        e = cls(errno.EIO, "x")
        assert (e.syscall, e.address, e.fd, e.backlog) == (None, None, None, None)
        e.syscall, e.fd = "bind", 1
        assert isinstance(e, cls) and e.errno == errno.EIO and e.args == (errno.EIO, "x")
        assert str(e) == f"[Errno {errno.EIO}] x" and e.context() == "bind(fd=1)"
        assert type(pickle.loads(pickle.dumps(e))) is cls


# ---- SocketTimeout and the non-errno errors -------------------------------------

def test_socket_timeout_matches_stdlib():
    std = socket.timeout("timed out")  # noqa: UP041 (the stdlib alias is the point)
    for e in (SocketTimeout(), SocketTimeout("timed out")):
        assert str(e) == str(std) == "timed out"
        assert e.args == std.args == ("timed out",)
        assert e.errno is None and e.strerror is None
        assert isinstance(e, socket.timeout) and isinstance(e, TimeoutError)
        assert isinstance(e, SocketError) and isinstance(e, OSError)
        assert not isinstance(e, (AcceptRetryError, AcceptCapacityError))
    e = SocketTimeout("timed out")
    e.syscall = "accept"  # the way the core sets it
    c = pickle.loads(pickle.dumps(e))
    assert (c.syscall, str(c), c.args) == ("accept", "timed out", ("timed out",))


def test_invalid_port_error():
    with pytest.raises(OverflowError):
        raise InvalidPortError("bind(): port must be 0-65535.")
    with pytest.raises(ValueError):
        raise InvalidPortError("bind(): port must be 0-65535.")
    e = InvalidPortError("connect(): port must be 0-65535.")
    assert not isinstance(e, OSError) and str(e) == "connect(): port must be 0-65535."
    assert type(pickle.loads(pickle.dumps(e))) is InvalidPortError


def test_unsupported_option_error():
    e = UnsupportedOptionError("reuse_port")
    assert isinstance(e, ValueError) and e.capability == "reuse_port"
    assert "reuse_port" in str(e)
    m = UnsupportedOptionError("defer_accept", "TCP_DEFER_ACCEPT is Linux only")
    assert str(m) == "TCP_DEFER_ACCEPT is Linux only" and m.capability == "defer_accept"
    for orig in (e, m):
        for c in (pickle.loads(pickle.dumps(orig)), copy.copy(orig), copy.deepcopy(orig)):
            assert type(c) is UnsupportedOptionError
            assert (c.capability, str(c), c.args) == (orig.capability, str(orig), orig.args)


def test_warnings():
    assert issubclass(errors.BacklogWarning, RuntimeWarning)
    assert issubclass(errors.BacklogTruncatedWarning, errors.BacklogWarning)
    with warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("always")
        warnings.warn(errors.BacklogTruncatedWarning("backlog 100000 truncated to 4096"),
                      stacklevel=1)
    assert len(seen) == 1 and seen[0].category is errors.BacklogTruncatedWarning
