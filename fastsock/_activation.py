"""``fastsock.listen_fds()``: the sockets a service manager passed (socket activation).

The protocol of sd_listen_fds(3): the manager leaves the sockets open from
descriptor 3 (SD_LISTEN_FDS_START) on and sets ``LISTEN_PID`` (the process
meant to use them), ``LISTEN_FDS`` (how many) and, optionally,
``LISTEN_FDNAMES`` (their names, colon-separated).  Implemented here in
Python, without libsystemd, so it works wherever a manager speaks the
protocol (systemd, systemd-socket-activate, s6, supervisors that copy it).
"""

import errno
import os
import stat

from fastsock._sock import socket
from fastsock.errors import ListenFdsError, _retyped, make_error

TYPE_CHECKING = False       # typing.TYPE_CHECKING, without importing typing at run time
if TYPE_CHECKING:
    from typing import Literal, overload

__all__ = ["listen_fds", "LISTEN_FDS_START"]

LISTEN_FDS_START = 3
_VARIABLES = ("LISTEN_PID", "LISTEN_FDS", "LISTEN_FDNAMES")
_INT_MAX = 2**31 - 1


def _number(variable: str, value: str) -> int:
    """The decimal number in ``value`` (ASCII digits only: no sign, space or
    underscore, which int() would take)."""
    if not (value.isascii() and value.isdigit()):
        raise ListenFdsError(variable, value, "not a non-negative decimal number")
    return int(value)


def _descriptors(fds: str) -> range:
    """The descriptors LISTEN_FDS names: 3 .. 3 + n - 1."""
    n = _number("LISTEN_FDS", fds)
    if n > _INT_MAX - LISTEN_FDS_START:
        raise ListenFdsError("LISTEN_FDS", fds, "more descriptors than an int can number")
    return range(LISTEN_FDS_START, LISTEN_FDS_START + n)


def _claim(fd: int, count: int) -> None:
    """Set FD_CLOEXEC on ``fd`` and check that it is a socket; the typed error
    (BadDescriptorError, NotSocketError) otherwise.  Closes nothing."""
    try:
        os.set_inheritable(fd, False)
        mode = os.fstat(fd).st_mode
    except OSError as exc:
        err = _retyped(exc, "fcntl", fd)
        err.add_note(f"LISTEN_FDS={count} names descriptor {fd}, which is not open")
        raise err from None
    if not stat.S_ISSOCK(mode):
        err = make_error(errno.ENOTSOCK, "fstat", fd=fd)
        err.add_note(f"LISTEN_FDS={count} names descriptor {fd}, which is not a socket")
        raise err



if TYPE_CHECKING:
    @overload
    def listen_fds(*, unset_environment: bool = True,
                   with_names: Literal[False] = False) -> list[socket]: ...
    @overload
    def listen_fds(*, unset_environment: bool = True,
                   with_names: Literal[True]) -> list[tuple[str, socket]]: ...
    @overload
    def listen_fds(*, unset_environment: bool = True,
                   with_names: bool) -> list[socket] | list[tuple[str, socket]]: ...


def listen_fds(*, unset_environment: bool = True,
               with_names: bool = False) -> "list[socket] | list[tuple[str, socket]]":
    """The sockets passed by socket activation, as ``fastsock.socket`` objects.

    sd_listen_fds(3) semantics: an empty list when ``LISTEN_PID`` is unset or
    names another process, or ``LISTEN_FDS`` is unset or 0; otherwise the
    descriptors 3 .. 3 + LISTEN_FDS - 1, each set FD_CLOEXEC.  Family, type
    and protocol are the kernel's (SO_DOMAIN, SO_TYPE, SO_PROTOCOL), and
    ``backlog`` what the listener really has.  ``with_names``: a list of
    ``(name, socket)`` pairs, the names from ``LISTEN_FDNAMES``, or
    ``"unknown"`` for each where it is unset (sd_listen_fds_with_names(3)).
    ``unset_environment``: remove the three variables before returning, also
    when raising (as sd_listen_fds does), so that children do not see them.

    Errors (nothing is closed; no socket object is made unless all are good):
    ``ListenFdsError`` (a ``ValueError``) for a LISTEN_PID or LISTEN_FDS that
    is not a decimal number, a LISTEN_PID of 0, a count past INT_MAX, or (with
    ``with_names``) a LISTEN_FDNAMES whose count differs from LISTEN_FDS;
    ``BadDescriptorError`` for a named descriptor that is not open,
    ``NotSocketError`` for one that is not a socket.
    Corresponds to sd_listen_fds(3), fcntl(2), getsockopt(2).
    Availability: POSIX.
    """
    env = os.environ
    try:
        pid, fds, names = (env.get(name) for name in _VARIABLES)
        if pid is None:
            return []
        if _number("LISTEN_PID", pid) == 0:
            raise ListenFdsError("LISTEN_PID", pid, "not a process id")
        if int(pid) != os.getpid() or fds is None:
            return []
        descriptors = _descriptors(fds)
        for fd in descriptors:
            _claim(fd, len(descriptors))
        if with_names:
            labels = names.split(":") if names else []
            if names is None:
                labels = ["unknown"] * len(descriptors)
            elif len(labels) != len(descriptors):
                raise ListenFdsError(
                    "LISTEN_FDNAMES", names,
                    f"{len(labels)} names for LISTEN_FDS={len(descriptors)} descriptors")
        socks = _adopt(descriptors)
    finally:
        if unset_environment:
            for name in _VARIABLES:
                env.pop(name, None)
    if with_names:
        return list(zip(labels, socks))
    return socks


def _adopt(descriptors: range) -> list[socket]:
    """A ``fastsock.socket`` for each descriptor (family, type and protocol
    read from the kernel); if one fails, the ones made give their descriptor
    back (detach) rather than close it."""
    socks: list[socket] = []
    try:
        for fd in descriptors:
            socks.append(socket(fileno=fd))
    except BaseException:
        for sock in socks:
            sock.detach()
        raise
    return socks
