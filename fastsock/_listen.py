"""``fastsock.listen()``: a listening socket in one call."""

import errno
import os
import socket as _std
import stat
import time

from fastsock import _core
from fastsock._sock import socket
from fastsock.errors import SocketError, _add_note

TYPE_CHECKING = False       # typing.TYPE_CHECKING, without importing typing at run time
if TYPE_CHECKING:
    from typing import Any

__all__ = ["listen"]


def _family_of(address: object, dualstack_ipv6: bool) -> int:
    """The address family that ``address`` implies."""
    if isinstance(address, tuple):
        host = address[0] if address else ""
        if isinstance(host, (bytes, bytearray)):
            host = bytes(host).decode("ascii", "replace")
        if len(address) > 2 or (isinstance(host, str) and ":" in host):
            return _std.AF_INET6
        if dualstack_ipv6 and host == "":
            return _std.AF_INET6
        return _std.AF_INET
    if isinstance(address, (str, bytes, bytearray, os.PathLike)):
        return _std.AF_UNIX
    raise TypeError(
        "address must be a (host, port) tuple, an AF_UNIX path or an abstract "
        f"name, not {type(address).__name__}")


def _is_abstract(address: object) -> bool:
    return (isinstance(address, (bytes, bytearray)) and address[:1] == b"\0") or \
        (isinstance(address, str) and address[:1] == "\0")


def _dir_lock(path: str | bytes) -> int | None:
    """Take flock(2) on the directory of ``path``, so that fastsock listeners
    on paths there go from bind(2) to listen(2) one at a time: none of them
    can take another's file, bound but not yet listening, for a stale one.
    Returns the descriptor that holds the lock: closing it releases the lock.
    Waits up to 5 s for the lock, then goes on without it (as it does where
    the directory cannot be opened or locked)."""
    try:
        import fcntl
        fd = os.open(os.path.dirname(os.path.abspath(path)),
                     os.O_RDONLY | getattr(os, "O_DIRECTORY", 0) | os.O_CLOEXEC)
    except (ImportError, OSError):
        return None
    deadline = time.monotonic() + 5.0
    try:
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                return fd
            except BlockingIOError:
                if time.monotonic() > deadline:
                    return fd
            except OSError:
                return fd
            time.sleep(0.001)
    except BaseException:
        os.close(fd)
        raise


def _bind_unix(sock: socket, path: str | bytes) -> None:
    """Bind an AF_UNIX path, replacing a stale socket file (one with no
    listener behind it).  A live listener gives ``AddressInUseError``; a path
    that is not a socket is never removed.  Call it holding ``_dir_lock(path)``'s lock.
    """
    try:
        sock.bind(path)
    except OSError as exc:
        if exc.errno != errno.EADDRINUSE:
            raise
        try:
            st = os.lstat(path)
        except FileNotFoundError:       # its owner removed it meanwhile
            sock.bind(path)
            return
        if not stat.S_ISSOCK(st.st_mode) or not _is_stale(path):
            raise
        try:
            again = os.lstat(path)
        except FileNotFoundError:
            again = None
        # remove it only if it is still the very file we found stale
        if again is not None and (again.st_dev, again.st_ino) == (st.st_dev, st.st_ino):
            try:
                os.unlink(path)
            except FileNotFoundError:
                pass
        sock.bind(path)


def _is_stale(path: str | bytes) -> bool:
    """True when nothing listens on the AF_UNIX socket file at ``path``."""
    probe = socket(_std.AF_UNIX, _std.SOCK_STREAM)
    try:
        probe.settimeout(1.0)
        return probe.connect_ex(path) == errno.ECONNREFUSED
    finally:
        probe.close()


def listen(address: "Any", backlog: int | None = None, *, family: int | None = None,
           reuse_port: bool = False, reuse_port_lb: bool = False,
           dualstack_ipv6: bool = False, defer_accept: int | None = None,
           fast_open: int | None = None) -> socket:
    """A listening ``fastsock.socket`` on ``address``, usable as a context manager.

    The family follows from the address: a ``(host, port)`` tuple is AF_INET,
    or AF_INET6 for an IPv6 literal or a 4-tuple; a path (str, bytes,
    os.PathLike) is AF_UNIX, and a name starting with a NUL byte is a Linux
    abstract name.  SO_REUSEADDR is set on IP sockets as
    ``socket.create_server`` does.  ``backlog`` follows fastsock's contract
    (None: the live system maximum); the result is in ``sock.backlog``.

    AF_UNIX: a stale socket file is replaced, a live listener gives
    ``AddressInUseError``, a path that is not a socket is never deleted, and
    on close the path is removed only if it is still the file this listener
    created.

    Options (each raises ``UnsupportedOptionError``, a ``ValueError``, where
    the platform cannot honour it): ``reuse_port`` (SO_REUSEPORT),
    ``reuse_port_lb`` (FreeBSD SO_REUSEPORT_LB), ``dualstack_ipv6``
    (IPV6_V6ONLY off), ``defer_accept`` seconds (Linux TCP_DEFER_ACCEPT; BSD
    accept filter "dataready"), ``fast_open`` queue length (TCP_FASTOPEN).
    Errors are the typed ones of ``fastsock.errors``, with the failed call
    and a hint as a PEP 678 note (``e.context()``, ``e.hint``).
    Corresponds to socket(2), setsockopt(2), bind(2), listen(2).
    """
    if family is None:
        family = _family_of(address, dualstack_ipv6)
    if dualstack_ipv6 and (family != _std.AF_INET6 or not _std.has_dualstack_ipv6()):
        raise ValueError("dualstack_ipv6 not supported on this platform"
                         if family == _std.AF_INET6 else
                         "dualstack_ipv6 requires an AF_INET6 address")
    with_options = (reuse_port is not False or reuse_port_lb is not False
                    or defer_accept is not None or fast_open is not None)
    if with_options:            # else nothing to check or set
        from fastsock import _options  # options are rare; keep import cheap

    sock = socket(family, _std.SOCK_STREAM)
    try:
        if family == _std.AF_INET or family == _std.AF_INET6:
            sock.setsockopt(_std.SOL_SOCKET, _std.SO_REUSEADDR, 1)
        if family == _std.AF_INET6:
            sock.setsockopt(_std.IPPROTO_IPV6, _std.IPV6_V6ONLY, 0 if dualstack_ipv6 else 1)
        if with_options:
            _options.apply_before_bind(sock, reuse_port=reuse_port, reuse_port_lb=reuse_port_lb,
                                       defer_accept=defer_accept, fast_open=fast_open)
        if family == _std.AF_UNIX and not _is_abstract(address):
            path = bytes(address) if isinstance(address, bytearray) else os.fspath(address)
            lock = _dir_lock(path)
            try:
                _bind_unix(sock, path)
                st = os.lstat(path)
                sock._unix_owner = (path, st.st_dev, st.st_ino, os.getpid())
                sock._backlog = _core.listen(sock.fileno(), backlog, stacklevel=2)
            finally:
                if lock is not None:
                    os.close(lock)      # releases the lock
        else:
            sock.bind(address)
            sock._backlog = _core.listen(sock.fileno(), backlog, stacklevel=2)
        if with_options:
            _options.apply_after_listen(sock, reuse_port=reuse_port, reuse_port_lb=reuse_port_lb,
                                        defer_accept=defer_accept, fast_open=fast_open)
    except BaseException as exc:
        sock.close()
        if isinstance(exc, SocketError):
            _add_note(exc)      # a fastsock-only entry point: the context is shown
        raise
    return sock

