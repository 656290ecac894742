"""``fastsock.listeners()`` and ``fastsock.listen_counters()``: every listener
of the network namespace, and the namespace's listen counters.

Linux only: one NETLINK_SOCK_DIAG dump per family (inet_diag for TCP over
IPv4 and IPv6 in state LISTEN with INET_DIAG_SKMEMINFO, unix_diag with
UDIAG_SHOW_NAME | UDIAG_SHOW_RQLEN | UDIAG_SHOW_MEMINFO), parsed in C
(csrc/fs_diag.c); ``/proc/net/netstat`` for the counters.  Elsewhere both raise
``fastsock.errors.UnsupportedPlatformError``.
"""

from __future__ import annotations

import os
import socket as _std
from typing import Any, NamedTuple

from fastsock import _core
from fastsock.errors import UnsupportedPlatformError

__all__ = ["Listener", "listeners", "listen_counters", "LISTEN_COUNTERS"]

_FAMILIES = (_std.AF_INET, _std.AF_INET6, _std.AF_UNIX)

# TcpExt counters of /proc/net/netstat about listeners, in this order; a
# kernel that lacks one leaves it out.
LISTEN_COUNTERS = (
    "ListenOverflows",          # a completed handshake found the accept queue full
    "ListenDrops",              # any SYN or handshake a listener dropped (includes the above)
    "TCPReqQFullDrop",          # SYN dropped: the SYN queue was full, no syncookies
    "TCPReqQFullDoCookies",     # SYN answered with a syncookie: the SYN queue was full
    "SyncookiesSent",
    "SyncookiesRecv",
    "SyncookiesFailed",
    "EmbryonicRsts",            # RST for a connection still in the SYN queue
    "TCPMigrateReqSuccess",     # requests moved to another SO_REUSEPORT listener
    "TCPMigrateReqFailure",
)


def _unsupported(what: str) -> UnsupportedPlatformError:
    return UnsupportedPlatformError(
        "listeners", f"{what} needs Linux's sock_diag and /proc/net "
        f"(this is {_core.PLATFORM})")


class Listener(NamedTuple):
    """One listening socket of the network namespace, as the kernel reports it:
    a named tuple (immutable, typed fields, picklable).

    ``address`` is what ``getsockname()`` would give: ``(host, port)`` for
    IPv4, ``(host, port, flowinfo, scope_id)`` for IPv6, a ``str`` path or a
    ``bytes`` abstract name (leading NUL) for AF_UNIX.  ``backlog`` is the
    limit in force, ``pending`` the completed connections waiting for
    accept(), ``drops`` the requests the kernel dropped on it (None where the
    kernel does not say), ``inode`` the socket's inode, ``uid`` its owner
    (None for AF_UNIX before Linux 5.3), ``processes`` the ``(pid, name)``
    pairs holding it (only with ``listeners(processes=True)``).
    ``to_dict()`` gives a JSON-ready dict.
    """

    family: _std.AddressFamily
    type: _std.SocketKind
    address: Any
    backlog: int | None
    pending: int | None
    drops: int | None
    inode: int
    uid: int | None
    processes: tuple[tuple[int, str], ...] = ()

    def to_dict(self) -> dict[str, Any]:
        """A dict of JSON types: ``family``/``type`` by name (``"AF_INET"``),
        ``address`` as a list for inet, a str for AF_UNIX (an abstract name
        keeps its leading ``"\\u0000"``, decoded as Latin-1, so no byte is
        lost), ``processes`` as ``[[pid, name], ...]``."""
        addr = self.address
        if isinstance(addr, bytes):
            addr = addr.decode("latin-1")
        elif isinstance(addr, tuple):
            addr = list(addr)
        return {"family": _name(self.family), "type": _name(self.type), "address": addr,
                "backlog": self.backlog, "pending": self.pending, "drops": self.drops,
                "inode": self.inode, "uid": self.uid,
                "processes": [list(p) for p in self.processes]}

    @property
    def port(self) -> int | None:
        """The port of an inet listener, None for AF_UNIX."""
        return self.address[1] if isinstance(self.address, tuple) else None


def _name(value: int) -> str | int:
    return getattr(value, "name", value)


# what _core.diag_listeners gives records for family and type (-type: see there)
_NAMES: dict[int, Any] = {int(f): f for f in _FAMILIES}
_NAMES.update({-int(k): k for k in (_std.SOCK_STREAM, _std.SOCK_DGRAM, _std.SOCK_SEQPACKET)})


def listeners(*, family: int | None = None, port: int | None = None,
              processes: bool = False) -> list[Listener]:
    """Every listening socket of this network namespace: TCP over IPv4 and
    IPv6, and AF_UNIX (stream and seqpacket), as ``Listener`` records.

    ``family`` (AF_INET, AF_INET6 or AF_UNIX) limits it to one family;
    ``port`` to inet listeners on that port.  ``processes=True`` fills each
    record's ``processes`` by walking ``/proc/*/fd`` for the sockets' inodes;
    processes this one may not look into are left out, never an error.
    Corresponds to one NETLINK_SOCK_DIAG dump per family.  Raises
    ``UnsupportedPlatformError`` off Linux (see ``capabilities().listeners``).
    Availability: Linux.
    """
    if not _core.HAVE_SOCK_DIAG:
        raise _unsupported("fastsock.listeners()")
    families: tuple[int, ...]
    if family is None:
        families = _FAMILIES if port is None else _FAMILIES[:2]
    elif family in _FAMILIES:
        families = (family,)
    else:
        raise ValueError(f"family must be AF_INET, AF_INET6, AF_UNIX or None, not {family!r}")
    if port is not None and not 0 <= port <= 65535:
        raise ValueError(f"port must be 0-65535 or None, not {port!r}")
    rows: list[Listener] = []
    for fam in families:
        if port is not None and fam == _std.AF_UNIX:
            continue
        got: list[Listener] = _core.diag_listeners(fam, Listener, _NAMES)
        rows += got if port is None else [r for r in got if r.address[1] == port]
    if processes and rows:
        owners = _owners({r.inode for r in rows})
        rows = [r._replace(processes=tuple(owners.get(r.inode, ()))) for r in rows]
    return rows


def _owners(inodes: set[int]) -> dict[int, list[tuple[int, str]]]:
    """inode -> [(pid, name)] for the sockets among ``inodes`` that the
    processes we may look into hold (readlink of /proc/PID/fd/N)."""
    found: dict[int, list[tuple[int, str]]] = {}
    try:
        pids = [e.name for e in os.scandir("/proc") if e.name.isdigit()]
    except OSError:
        return found
    for pid in pids:
        held: set[int] = set()
        try:
            with os.scandir(f"/proc/{pid}/fd") as it:
                for e in it:
                    try:
                        link = os.readlink(e.path)
                    except OSError:
                        continue
                    if link.startswith("socket:["):
                        ino = int(link[8:-1])
                        if ino in inodes:
                            held.add(ino)
        except OSError:     # gone, or not ours to look into
            continue
        if not held:
            continue
        try:
            with open(f"/proc/{pid}/comm", encoding="utf-8", errors="replace") as f:
                name = f.read().rstrip("\n")
        except OSError:
            name = ""
        for ino in held:
            found.setdefault(ino, []).append((int(pid), name))
    for v in found.values():
        v.sort()
    return found


def listen_counters() -> dict[str, int]:
    """The listen-related TcpExt counters of this network namespace since
    boot, from ``/proc/net/netstat`` (``LISTEN_COUNTERS``, those the kernel
    has): e.g. ``ListenOverflows``, completed handshakes dropped on a full
    accept queue.  Raises ``UnsupportedPlatformError`` off Linux.
    Availability: Linux.
    """
    if not _core.HAVE_SOCK_DIAG:
        raise _unsupported("fastsock.listen_counters()")
    with open("/proc/net/netstat", encoding="ascii") as f:
        lines = f.read().splitlines()
    for names, values in zip(lines[::2], lines[1::2], strict=False):
        if names.startswith("TcpExt:") and values.startswith("TcpExt:"):
            table = dict(zip(names.split()[1:], values.split()[1:], strict=True))
            return {k: int(table[k]) for k in LISTEN_COUNTERS if k in table}
    return {}
