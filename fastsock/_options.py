"""Listener options for ``fastsock.listen()``: reuse_port, reuse_port_lb,
defer_accept, fast_open.

``listen()`` calls :func:`apply_before_bind` on the new socket before bind(2)
and :func:`apply_after_listen` right after listen(2), passing all four options
to both; each applies the ones that belong to its moment:

=================  =========================================  ==================
option             system call                                 when
=================  =========================================  ==================
reuse_port         setsockopt(SOL_SOCKET, SO_REUSEPORT)        before bind
reuse_port_lb      setsockopt(SOL_SOCKET, SO_REUSEPORT_LB)     before bind
defer_accept       Linux: setsockopt(IPPROTO_TCP,              before bind
                   TCP_DEFER_ACCEPT, seconds)
                   BSD: setsockopt(SOL_SOCKET, SO_ACCEPTFILTER, after listen
                   "dataready") (needs a listening socket)
fast_open          Linux: setsockopt(IPPROTO_TCP, TCP_FASTOPEN) before bind
                   FreeBSD, macOS: the same on the listener    after listen
=================  =========================================  ==================

Every argument is checked, and every option the platform cannot honour is
refused, in :func:`apply_before_bind`, so nothing is bound when a call fails.
Refusal is ``fastsock.errors.UnsupportedOptionError`` (a ``ValueError``)
naming the capability as ``fastsock.has()`` knows it; never a silent no-op.
"""

import errno
import socket
from types import ModuleType

from fastsock import _core
from fastsock.errors import UnsupportedOptionError

__all__ = ["apply_after_listen", "apply_before_bind", "validate"]

_INT_MAX = 2**31 - 1
# errnos with which a kernel says "no such option here", not "bad value"
_REFUSED = {errno.EOPNOTSUPP, errno.ENOPROTOOPT, errno.EINVAL,
            getattr(errno, "ENOTSUP", errno.EOPNOTSUPP)}


def validate(*, reuse_port: bool = False, reuse_port_lb: bool = False,
             defer_accept: int | None = None, fast_open: int | None = None) -> None:
    """Check the option values: ``TypeError`` for a wrong type (``reuse_port``
    and ``reuse_port_lb`` are bools; ``defer_accept`` and ``fast_open`` ints,
    never bool), ``ValueError`` for ``defer_accept < 0`` or ``fast_open < 1``
    or either beyond a C int."""
    for name, flag in (("reuse_port", reuse_port), ("reuse_port_lb", reuse_port_lb)):
        if not isinstance(flag, bool):
            raise TypeError(f"{name} must be a bool, not {type(flag).__name__}")
    for name, value, low, what in (("defer_accept", defer_accept, 0, "seconds >= 0"),
                                   ("fast_open", fast_open, 1, "a queue length >= 1")):
        if value is None:
            continue
        if isinstance(value, bool) or not isinstance(value, int):
            raise TypeError(f"{name} must be an int ({what}) or None, "
                            f"not {type(value).__name__}")
        if not low <= value <= _INT_MAX:
            raise ValueError(f"{name} must be {what} and at most {_INT_MAX}, got {value}")


def _caps() -> ModuleType:
    """fastsock._capabilities (platform facts and probes), imported on first need
    so that ``import fastsock`` does not load it."""
    from fastsock import _capabilities
    return _capabilities


def _refused(capability: str, what: str, exc: OSError | None = None) -> UnsupportedOptionError:
    why = f" ({exc.strerror or exc})" if exc is not None else ""
    return UnsupportedOptionError(
        capability=capability,
        message=f"{what}{why}; fastsock.has({capability!r}) is False on this system")


_Step = tuple[str, int, int, int | bytes, str, str]  # moment, level, option, value, ...


def _setsockopt(sock: socket.socket, level: int, opt: int, value: int | bytes,
                capability: str, what: str) -> None:
    try:
        sock.setsockopt(level, opt, value)
    except OSError as exc:
        if exc.errno in _REFUSED:
            raise _refused(capability, what, exc) from exc
        raise


def _is_tcp(sock: socket.socket) -> bool:
    return sock.family in (socket.AF_INET, socket.AF_INET6) and \
        sock.type == socket.SOCK_STREAM


def _tcp_plan(sock: socket.socket, defer_accept: int | None,
              fast_open: int | None) -> list[_Step]:
    """[(moment, level, option, value, capability, description)] for the TCP
    options, raising UnsupportedOptionError for any this system cannot honour."""
    caps = _caps()
    platform = _core.PLATFORM
    plan: list[_Step] = []
    wanted = [(n, v) for n, v in (("defer_accept", defer_accept), ("fast_open", fast_open))
              if v is not None]
    if wanted and not _is_tcp(sock):
        name = wanted[0][0]
        raise UnsupportedOptionError(
            capability="defer_accept" if name == "defer_accept" else "tcp_fastopen_server",
            message=f"{name} needs a TCP (AF_INET/AF_INET6 SOCK_STREAM) listener")
    if defer_accept is not None:
        opt = getattr(socket, "TCP_DEFER_ACCEPT", None)
        if platform == "linux" and opt is not None:
            plan.append(("before", socket.IPPROTO_TCP, opt, defer_accept, "defer_accept",
                         f"TCP_DEFER_ACCEPT={defer_accept}"))
        elif defer_accept > 0:
            filt = caps.SO_ACCEPTFILTER.get(platform)
            if filt is None:
                raise _refused("defer_accept", f"defer_accept: {platform} has neither "
                               "TCP_DEFER_ACCEPT nor accept filters")
            if "dataready" not in caps._Live().accept_filters:
                raise _refused("defer_accept", "defer_accept: the accept filter 'dataready' "
                               "is not loaded (kldload accf_data)")
            plan.append(("after", socket.SOL_SOCKET, filt, caps.accept_filter_arg("dataready"),
                         "defer_accept", "SO_ACCEPTFILTER 'dataready'"))
    if fast_open is not None:
        opt = getattr(socket, "TCP_FASTOPEN", None)
        entry = caps.TFO_SERVER_SYSCTL.get(platform)
        if opt is None or entry is None:
            raise _refused("tcp_fastopen_server", f"fast_open: no server-side TCP Fast Open "
                           f"on {platform}")
        sysctl, bit = entry
        value = caps.tfo_server_sysctl()
        if value is None or not value & bit:
            raise _refused("tcp_fastopen_server",
                           f"fast_open: server-side TCP Fast Open is off ({sysctl}={value}); "
                           f"enable it with: sysctl -w {sysctl}={(value or 0) | bit}")
        plan.append(("before" if platform == "linux" else "after", socket.IPPROTO_TCP, opt,
                     fast_open, "tcp_fastopen_server", f"TCP_FASTOPEN={fast_open}"))
    return plan


def apply_before_bind(sock: socket.socket, *, reuse_port: bool = False, reuse_port_lb: bool = False,
                      defer_accept: int | None = None, fast_open: int | None = None) -> None:
    """Check all four options and set those that must precede bind(2):
    SO_REUSEPORT, SO_REUSEPORT_LB, and on Linux TCP_DEFER_ACCEPT and
    TCP_FASTOPEN.  ``sock`` is a new, unbound socket object.

    Raises ``TypeError``/``ValueError`` for bad values (see :func:`validate`)
    and ``UnsupportedOptionError`` for an option this system cannot honour:
    ``reuse_port`` where SO_REUSEPORT is missing or refused (capability
    ``reuse_port``, or ``reuse_port_unix`` on AF_UNIX, which newer Linux
    refuses); ``reuse_port_lb`` anywhere but FreeBSD 12+ (``reuse_port_lb``);
    ``defer_accept > 0`` without TCP_DEFER_ACCEPT or a loaded ``dataready``
    accept filter (``defer_accept``); ``fast_open`` where server-side TCP
    Fast Open is missing or switched off by its sysctl
    (``tcp_fastopen_server``; Linux: bit 0x2 of net.ipv4.tcp_fastopen).
    Availability: POSIX; each option as stated.
    """
    validate(reuse_port=reuse_port, reuse_port_lb=reuse_port_lb,
             defer_accept=defer_accept, fast_open=fast_open)
    plan = _tcp_plan(sock, defer_accept, fast_open)
    unix = sock.family == getattr(socket, "AF_UNIX", None)
    if reuse_port:
        cap = "reuse_port_unix" if unix else "reuse_port"
        opt = getattr(socket, "SO_REUSEPORT", None)
        if opt is None:
            raise _refused(cap, "reuse_port: this system has no SO_REUSEPORT")
        _setsockopt(sock, socket.SOL_SOCKET, opt, 1, cap,
                    "reuse_port: the kernel refuses SO_REUSEPORT"
                    + (" on AF_UNIX sockets" if unix else ""))
    if reuse_port_lb:
        opt = getattr(socket, "SO_REUSEPORT_LB", None) or \
            _caps().SO_REUSEPORT_LB.get(_core.PLATFORM)
        if opt is None:
            hint = "; reuse_port=True already balances load here" \
                if _core.PLATFORM in _caps()._REUSEPORT_BALANCES else ""
            raise _refused("reuse_port_lb", "reuse_port_lb: this system has no "
                           f"SO_REUSEPORT_LB (FreeBSD 12+){hint}")
        _setsockopt(sock, socket.SOL_SOCKET, opt, 1, "reuse_port_lb",
                    "reuse_port_lb: the kernel refuses SO_REUSEPORT_LB")
    for moment, level, opt, value, cap, what in plan:
        if moment == "before":
            _setsockopt(sock, level, opt, value, cap, f"the kernel refuses {what}")


def apply_after_listen(sock: socket.socket, *, reuse_port: bool = False, reuse_port_lb: bool = False,
                       defer_accept: int | None = None, fast_open: int | None = None) -> None:
    """Set the options that need a listening socket: the BSD accept filter
    ``dataready`` (SO_ACCEPTFILTER) for ``defer_accept``, and TCP_FASTOPEN on
    FreeBSD and macOS.  On Linux there is nothing left to do.  Call it with the
    same arguments as :func:`apply_before_bind`, which has checked them.
    Availability: FreeBSD, DragonFly, NetBSD (accept filters); FreeBSD, macOS
    (TCP_FASTOPEN).
    """
    if defer_accept is None and fast_open is None:
        return
    for moment, level, opt, value, cap, what in _tcp_plan(sock, defer_accept, fast_open):
        if moment == "after":
            _setsockopt(sock, level, opt, value, cap, f"the kernel refuses {what}")
