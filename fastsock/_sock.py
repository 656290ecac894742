"""``fastsock.socket``: the stdlib socket class, with fastsock's core underneath.

``bind``, ``listen``, ``accept``, ``connect`` and ``connect_ex`` go through the
compiled core (typed errors, the backlog contract, accept4 with the GIL
released); everything else is the stdlib's own code.  Address families the
core does not encode (AF_PACKET, AF_NETLINK, ...) take the stdlib path and
still raise typed errors.
"""

import os
import socket as _std
import sys

from fastsock import _core
from fastsock.errors import _retyped

TYPE_CHECKING = False       # typing.TYPE_CHECKING without importing typing
if TYPE_CHECKING:
    from typing import Any

__all__ = ["socket", "AcceptQueue"]

_CORE_FAMILIES = frozenset({_std.AF_INET, _std.AF_INET6, _std.AF_UNIX})
_raw_family = _std._socket.socket.family.__get__  # type: ignore[attr-defined]  # the int, no IntEnum
_getdefaulttimeout = _std.getdefaulttimeout
_audit = sys.audit
_C = _core.SocketMethods.__dict__


class AcceptQueue(tuple[int, int]):  # a named tuple without importing typing
    """A listener's accept queue as the kernel reports it: ``(pending, limit)``,
    with the drop count as the attribute ``drops``.

    ``pending``: completed connections waiting for accept(); ``limit``: the
    backlog in force; ``drops``: connection requests the kernel dropped on
    this socket so far (Linux: SO_MEMINFO's SK_MEMINFO_DROPS, what ``ss -m``
    prints as ``d``; ``None`` where the platform keeps no per-socket count).
    It stays a 2-tuple, so ``pending, limit = q`` and ``q == (0, 128)`` work
    as before; ``drops`` takes no part in unpacking or equality.
    """

    _fields = ("pending", "limit")
    drops: int | None

    def __new__(cls, pending: int, limit: int, drops: int | None = None) -> "AcceptQueue":
        self = tuple.__new__(cls, (pending, limit))
        self.__dict__["drops"] = drops
        return self

    def __setattr__(self, name: str, value: object) -> None:
        raise AttributeError(f"AcceptQueue is read-only (cannot set {name!r})")

    @property
    def pending(self) -> int:
        """Completed connections waiting for accept()."""
        return self[0]

    @property
    def limit(self) -> int:
        """The backlog in force."""
        return self[1]

    def __repr__(self) -> str:
        return f"AcceptQueue(pending={self[0]!r}, limit={self[1]!r}, drops={self.drops!r})"

    def __reduce__(self) -> "tuple[type[AcceptQueue], tuple[int, int, int | None]]":
        return (AcceptQueue, (self[0], self[1], self.drops))


class socket(_std.socket):
    """A ``socket.socket`` whose bind/listen/accept/connect are fastsock's.

    Same constructor as the stdlib's; the descriptor is created by socket(2)
    with SOCK_CLOEXEC and errors are typed (``fastsock.SocketError``
    subclasses, which are also the matching ``OSError`` builtins).
    ``__init__``, ``bind``, ``listen``, ``accept``, ``accept_many`` and
    ``close`` are compiled (fastsock/_methods.pxi).
    """

    __slots__ = ("_backlog", "_unix_owner")
    _backlog: int | None
    _unix_owner: "tuple[Any, int, int, int] | None"

    if TYPE_CHECKING:
        def __init__(self, family: int = -1, type: int = -1, proto: int = -1,
                     fileno: int | None = None) -> None: ...
        def bind(self, address: Any) -> None: ...
        def listen(self, backlog: int | None = None) -> int: ...  # type: ignore[override]
        def accept(self) -> tuple[socket, Any]: ...
        def accept_many(self, max: int) -> list[tuple[socket, Any]]: ...
        def close(self) -> None: ...
    else:
        __init__ = _C["__init__"]
        bind = _C["bind"]
        listen = _C["listen"]
        accept = _C["accept"]
        accept_many = _C["accept_many"]
        close = _C["close"]

    @property
    def backlog(self) -> int | None:
        """The backlog in force: what the last ``listen()`` returned or, for a
        listener this object did not make listen (``fromfd``,
        ``socket(fileno=)``, ``dup``, a descriptor from another process), the
        kernel's figure, read on each access: Linux TCP_INFO (TCP) and
        unix_diag (AF_UNIX, this network namespace), FreeBSD SO_LISTENQLIMIT.
        None when the socket does not listen or the kernel does not tell
        (macOS and other systems: no per-socket query).
        Availability: POSIX (the kernel's figure: Linux, FreeBSD).
        """
        b: int | None = getattr(self, "_backlog", None)
        if b is None:
            fd = self.fileno()
            return None if fd < 0 else _core.listener_backlog(fd)
        return b

    def accept_queue(self) -> "AcceptQueue | None":
        """``AcceptQueue(pending, limit)`` from the kernel, with ``drops``, or
        None where it does not tell.  Linux: TCP_INFO (TCP), unix_diag
        (AF_UNIX), drops from SO_MEMINFO; FreeBSD: SO_LISTENQLEN and
        SO_LISTENQLIMIT (drops None).  Availability: Linux, FreeBSD.
        """
        fd = self.fileno()
        q = _core.accept_queue(fd)
        return None if q is None else AcceptQueue(q[0], q[1], _core.listener_drops(fd))

    # -- accept for the families the core does not decode ------------------

    def _accept_stdlib(self) -> "tuple[socket, Any]":
        """accept() for families the core does not decode (AF_VSOCK, ...): the
        stdlib's own accept(2) and address decoding, typed errors, a
        ``fastsock.socket``."""
        try:
            fd, addr = self._accept()  # type: ignore[attr-defined]
        except OSError as exc:
            raise _retyped(exc, "accept", self.fileno()) from None
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

    def _accept_many_stdlib(self, max: int) -> "list[tuple[socket, Any]]":
        """accept_many() for families the core does not decode: more than one
        connection only on a non-blocking socket (timeout 0), where accept
        cannot wait; with a timeout, the stdlib's accept would wait for each."""
        out = [self._accept_stdlib()]
        if self.gettimeout() == 0.0:
            try:
                while len(out) < max:
                    out.append(self._accept_stdlib())
            except OSError:
                pass        # EAGAIN ends the batch; a lasting error comes back next call
        return out

    # -- connect ---------------------------------------------------------

    def _connect_family(self, address: "Any") -> int | None:
        """What connect and connect_ex do first: forget the backlog (not, or
        no longer, a listener); for a family the core encodes, raise the
        audit event and return the family; None: the stdlib path (whose
        connect raises the event itself)."""
        self._backlog = None
        fam: int = _raw_family(self)
        if fam in _CORE_FAMILIES:
            _audit("socket.connect", self, address)
            return fam
        return None

    def connect(self, address: "Any") -> None:
        """Connect to ``address``, honouring the socket's timeout.
        Corresponds to connect(2).  Availability: POSIX.
        """
        fam = self._connect_family(address)
        if fam is not None:
            _core.connect(self.fileno(), fam, address, self.gettimeout())
            return
        try:
            super().connect(address)
        except OSError as exc:
            raise _retyped(exc, "connect", self.fileno(), address) from None

    def connect_ex(self, address: "Any") -> int:
        """Like ``connect`` but return the errno (0 on success).
        Corresponds to connect(2).  Availability: POSIX.
        """
        fam = self._connect_family(address)
        if fam is not None:
            return int(_core.connect_ex(self.fileno(), fam, address, self.gettimeout()))
        return super().connect_ex(address)

    # -- AF_UNIX path ownership (set by fastsock.listen) -------------------

    def _real_close(self, _ss: object = _std._socket.socket) -> None:  # type: ignore[attr-defined]
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


def _unlink_if_same(path: "Any", dev: int, ino: int, pid: int) -> None:
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

_core.register_class(socket, (("_io_refs", 0), ("_closed", False), ("_backlog", None),
                                 ("_unix_owner", None)))
for _method in ("__init__", "bind", "listen", "accept", "accept_many", "close"):
    getattr(socket, _method).__qualname__ = f"socket.{_method}"
del _method
