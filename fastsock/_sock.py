"""``fastsock.socket``: the stdlib socket class, with fastsock's core underneath.

``bind``, ``listen``, ``accept``, ``connect`` and ``connect_ex`` go through the
compiled core (typed errors, the backlog contract, accept4 with the GIL
released); everything else is the stdlib's own code.  Address families the
core does not encode (AF_PACKET, AF_NETLINK, ...) take the stdlib path and
still raise typed errors.
"""

from __future__ import annotations

import os
import select
import socket as _std
import sys
from operator import index
from typing import Any, NamedTuple

from fastsock import _core
from fastsock.errors import make_error

__all__ = ["socket", "AcceptQueue"]

_CORE_FAMILIES = frozenset({_std.AF_INET, _std.AF_INET6, _std.AF_UNIX})
_raw_family = _std._socket.socket.family.__get__  # type: ignore[attr-defined]  # the int, no IntEnum
_getdefaulttimeout = _std.getdefaulttimeout
_accept_socket = _core.accept_socket
_accept_many_sockets = _core.accept_many_sockets
# accept()/accept_many(): the core builds accepted sockets without running
# __init__ (most of what the stdlib's accept() costs) and gives them these
# attributes, the ones socket.socket.__init__ and socket.__init__ below set.
# Only listeners of the core's families take that path (``_native``).
_ACCEPTED = (("_io_refs", 0), ("_closed", False), ("_backlog", None), ("_unix_owner", None),
             ("_native", True))
_audit = sys.audit


class AcceptQueue(NamedTuple):
    """A listener's accept queue as the kernel reports it."""

    pending: int
    """Completed connections waiting for accept()."""
    limit: int
    """The backlog in force."""


def _typed(exc: OSError, syscall: str, fd: int, address: Any = None) -> OSError:
    """The typed fastsock error for an OSError the stdlib raised."""
    if exc.errno is None:
        return exc
    return make_error(exc.errno, syscall, fd=fd, address=address)


class socket(_std.socket):
    """A ``socket.socket`` whose bind/listen/accept/connect are fastsock's.

    Same constructor as the stdlib's; the descriptor is created by socket(2)
    with SOCK_CLOEXEC and errors are typed (``fastsock.SocketError``
    subclasses, which are also the matching ``OSError`` builtins).
    """

    __slots__ = ("_backlog", "_unix_owner", "_native")

    def __init__(self, family: int = -1, type: int = -1, proto: int = -1,
                 fileno: int | None = None) -> None:
        if fileno is None:
            family = _std.AF_INET if family == -1 else family
            type = _std.SOCK_STREAM if type == -1 else type
            proto = 0 if proto == -1 else proto
            fileno = _core.socket(family, type, proto)
            try:
                _std._socket.socket.__init__(  # type: ignore[attr-defined]
                    self, family, type, proto, fileno)
            except BaseException:
                os.close(fileno)
                raise
            self._io_refs = 0
            self._closed = False
        else:
            super().__init__(family, type, proto, fileno)
        self._backlog: int | None = None
        self._unix_owner: tuple[Any, int, int, int] | None = None
        # accept() decodes addresses in the core only for the families it
        # encodes; the others (AF_VSOCK, AF_BLUETOOTH, ...) keep the stdlib's
        self._native = _raw_family(self) in _CORE_FAMILIES

    # -- listen ----------------------------------------------------------

    def listen(self, backlog: int | None = None) -> int:  # type: ignore[override]
        """Listen with fastsock's backlog contract; return the backlog in force.

        ``None`` (the default): the live system maximum; ``0``: the smallest
        queue; negative: as 0, with a ``BacklogWarning``; above the maximum:
        the maximum, with a ``BacklogTruncatedWarning``.  Corresponds to
        listen(2); the result is read back from the kernel where it tells
        (Linux TCP, FreeBSD).  Availability: POSIX.
        """
        self._backlog = _core.listen(self.fileno(), backlog, stacklevel=2)
        return self._backlog

    @property
    def backlog(self) -> int | None:
        """The backlog in force after the last ``listen()`` (None before)."""
        return getattr(self, "_backlog", None)

    def accept_queue(self) -> AcceptQueue | None:
        """``AcceptQueue(pending, limit)`` from the kernel, or None where it
        does not tell.  Linux: TCP_INFO; FreeBSD: SO_LISTENQLEN/SO_LISTENQLIMIT.
        Availability: Linux (TCP), FreeBSD.
        """
        q = _core.accept_queue(self.fileno())
        return None if q is None else AcceptQueue(*q)

    # -- accept ----------------------------------------------------------

    def accept(self) -> tuple[socket, Any]:
        """Accept a connection: ``(socket, address)``.  Corresponds to
        accept4(2) with SOCK_CLOEXEC, GIL released, the socket's timeout
        honoured.  Errors are sorted: ``AcceptRetryError`` (that connection is
        gone, accept again) and ``AcceptCapacityError`` (out of descriptors or
        memory; the connection stays queued).  Availability: POSIX.
        """
        if self._native:
            return _accept_socket(self, socket, _ACCEPTED)
        return self._accept_stdlib()

    def accept_many(self, max: int) -> list[tuple[socket, Any]]:
        """Accept up to ``max`` queued connections in one call.

        Waits for the first one as ``accept()`` would (and raises as it
        does), then takes what the queue holds without waiting, stopping at
        EAGAIN without raising.  Corresponds to accept4(2) in a loop with the
        GIL released once per batch.  Availability: POSIX.
        """
        if self._native:
            return _accept_many_sockets(self, socket, max, _ACCEPTED)
        if index(max) < 1:
            raise ValueError("max must be at least 1")
        out = [self._accept_stdlib()]
        ready = select.poll()
        ready.register(self, select.POLLIN)
        try:
            while len(out) < max and ready.poll(0):
                out.append(self._accept_stdlib())
        except OSError:
            pass            # ends the batch; a lasting error comes back next call
        return out

    def _accept_stdlib(self) -> tuple[socket, Any]:
        """accept() for families the core does not decode: the stdlib's own
        accept(2) and address decoding, typed errors, a ``fastsock.socket``."""
        try:
            fd, addr = self._accept()  # type: ignore[attr-defined]
        except OSError as exc:
            raise _typed(exc, "accept", self.fileno()) from None
        try:
            sock = socket(self.family, self.type, self.proto, fileno=fd)
        except BaseException:
            os.close(fd)
            raise
        # the stdlib's rule (bpo-7995): no default timeout and a timeout on
        # the listener give a blocking socket
        if _getdefaulttimeout() is None and self.gettimeout():
            sock.setblocking(True)
        return sock, addr

    # -- bind / connect --------------------------------------------------

    def bind(self, address: Any) -> None:
        """Bind to ``address``.  Corresponds to bind(2).  Availability: POSIX."""
        fam = _raw_family(self)
        if fam in _CORE_FAMILIES:
            _audit("socket.bind", self, address)    # as the stdlib's bind()
            _core.bind(self.fileno(), fam, address)
            return
        try:
            super().bind(address)
        except OSError as exc:
            raise _typed(exc, "bind", self.fileno(), address) from None

    def connect(self, address: Any) -> None:
        """Connect to ``address``, honouring the socket's timeout.
        Corresponds to connect(2).  Availability: POSIX.
        """
        fam = _raw_family(self)
        if fam in _CORE_FAMILIES:
            _audit("socket.connect", self, address)
            _core.connect(self.fileno(), fam, address, self.gettimeout())
            return
        try:
            super().connect(address)
        except OSError as exc:
            raise _typed(exc, "connect", self.fileno(), address) from None

    def connect_ex(self, address: Any) -> int:
        """Like ``connect`` but return the errno (0 on success).
        Corresponds to connect(2).  Availability: POSIX.
        """
        fam = _raw_family(self)
        if fam in _CORE_FAMILIES:
            _audit("socket.connect", self, address)
            return int(_core.connect_ex(self.fileno(), fam, address, self.gettimeout()))
        return super().connect_ex(address)

    # -- AF_UNIX path ownership (set by fastsock.listen) -------------------

    def _real_close(self, _ss: Any = _std._socket.socket) -> None:  # type: ignore[attr-defined]
        owner = getattr(self, "_unix_owner", None)
        if owner is not None:
            # Unlink while the socket is still open: it keeps its file's inode
            # number from being reused, and as long as it listens no fastsock
            # successor takes the path for stale; so a file found with our
            # device and inode is ours, never a successor's.
            self._unix_owner = None
            _unlink_if_same(*owner)
        super()._real_close(_ss)  # type: ignore[misc]

    def detach(self) -> int:
        """Give up the descriptor without closing it (and, for a socket from
        ``fastsock.listen``, the duty to remove its AF_UNIX path).
        Availability: POSIX."""
        self._unix_owner = None
        return super().detach()


def _unlink_if_same(path: Any, dev: int, ino: int, pid: int) -> None:
    """Remove the AF_UNIX path only in the process that bound it (a forked
    child's close leaves it to the parent) and only if it is still the file
    it created (same device and inode)."""
    if os.getpid() != pid:
        return
    try:
        st = os.lstat(path)
        if (st.st_dev, st.st_ino) == (dev, ino):
            os.unlink(path)
    except OSError:
        pass


socket.__module__ = "fastsock"
AcceptQueue.__module__ = "fastsock"
