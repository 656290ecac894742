"""fastsock: strict listen() semantics, typed errors and a fast accept().

A drop-in replacement for the stdlib ``socket`` module: ``import fastsock as
socket`` keeps working code working.  Every public name of the running
Python's ``socket`` module is here; ``socket``, ``fromfd``, ``socketpair``,
``create_connection`` and ``create_server`` give ``fastsock.socket`` objects,
whose ``bind``/``listen``/``accept``/``connect`` run on fastsock's compiled
core.  fastsock's own additions: ``listen()``, ``capabilities()``, ``has()``,
``listen_fds()``, ``accept_many``, ``backlog``/``accept_queue`` on sockets, and the typed errors
and warnings of ``fastsock.errors``.
"""

import os as _os
import socket as _std
import types as _types

TYPE_CHECKING = False       # typing.TYPE_CHECKING, without importing typing at run time
if TYPE_CHECKING:  # what globals().update() and __getattr__ provide, for type checkers
    from socket import *  # noqa: F403
    from typing import Any as _Any

    from fastsock._activation import listen_fds as listen_fds
    from fastsock._capabilities import Capabilities as Capabilities
    from fastsock._capabilities import capabilities as capabilities
    from fastsock._capabilities import has as has
    from fastsock._listen import listen as listen
    from fastsock._listeners import Listener as Listener
    from fastsock._listeners import listen_counters as listen_counters
    from fastsock._listeners import listeners as listeners
    from fastsock.errors import *  # noqa: F403

# Every name of the stdlib module first (including the private ones the
# stdlib itself uses, such as _GLOBAL_DEFAULT_TIMEOUT), then ours on top.
# Two dict updates, as filtering ~400 names in Python would cost more than the
# rest of this module: this module's own names (__name__, __spec__, ...) are
# put back over the stdlib's, and the stdlib's __all__ is replaced below.
_own = dict(globals())
globals().update(vars(_std))
globals().update(_own)
del _own

from fastsock import errors  # noqa: E402
from fastsock._sock import AcceptQueue, socket  # noqa: E402

__version__ = "0.1.0"


def _rebind(func: _types.FunctionType) -> _types.FunctionType:
    """The stdlib function, run with this module's globals, so that the
    ``socket`` it builds is ``fastsock.socket``.  No code is copied: the
    running Python's own code object is reused, so it stays in step with it.
    """
    new = _types.FunctionType(func.__code__, globals(), func.__name__,
                              func.__defaults__, func.__closure__)
    new.__kwdefaults__ = func.__kwdefaults__
    new.__doc__ = func.__doc__
    new.__qualname__ = func.__qualname__
    new.__module__ = __name__
    return new


def _typed(func: _types.FunctionType, syscall: str) -> "_Any":
    """``_rebind(func)`` whose OSErrors come out typed, with the stdlib's own
    ``args`` (``errors._retyped``): e.g. create_server()'s "(while attempting to
    bind on address ...)" error is an ``AddressInUseError`` with that text."""
    rebound = _rebind(func)

    def typed(*args: "_Any", **kwargs: "_Any") -> "_Any":
        try:
            return rebound(*args, **kwargs)
        except OSError as exc:
            new = errors._retyped(exc, syscall)
            if new is exc:
                raise
            raise new from None

    typed.__wrapped__ = rebound  # type: ignore[attr-defined]  # inspect.signature
    for attr in ("__name__", "__qualname__", "__doc__", "__module__"):
        setattr(typed, attr, getattr(rebound, attr))
    return typed


for _name, _syscall in (("create_connection", "connect"), ("create_server", "bind"),
                        ("socketpair", "socketpair")):
    if callable(getattr(_std, _name, None)):
        globals()[_name] = _typed(getattr(_std, _name), _syscall)
for _name in ("has_dualstack_ipv6", "_fallback_socketpair"):
    if callable(getattr(_std, _name, None)):
        globals()[_name] = _rebind(getattr(_std, _name))
del _name, _syscall


if not TYPE_CHECKING:  # type checkers see the stdlib's fromfd (from socket import *)
    def fromfd(fd: "_Any", family: "_Any", type: "_Any", proto: int = 0) -> socket:
        """Create a socket object from a duplicate of the file descriptor ``fd``
        (dup(2)), as ``socket.fromfd``; the other arguments as for ``socket()``.
        Errors are the stdlib's, typed; the duplicate is closed when the socket
        object cannot be made (the stdlib leaves it open).  Availability: POSIX.
        """
        try:
            nfd = _std.dup(fd)
        except OSError as exc:
            raise errors._retyped(exc, "dup", fd) from None
        try:
            return socket(family, type, proto, nfd)
        except BaseException:
            _os.close(nfd)
            raise


# Names that come from a module on first use, never at import: listen() and
# the capabilities (read from the live system on demand), listen_fds().
_LAZY = {"listen": "fastsock._listen", "capabilities": "fastsock._capabilities",
         "has": "fastsock._capabilities", "Capabilities": "fastsock._capabilities",
         "listeners": "fastsock._listeners", "listen_counters": "fastsock._listeners",
         "Listener": "fastsock._listeners", "listen_fds": "fastsock._activation"}


def __getattr__(name: str) -> "_Any":
    # fastsock.errors creates most of its classes only when one is first used,
    # so its names are taken from it then too.
    if name in _LAZY:
        import importlib
        value = getattr(importlib.import_module(_LAZY[name]), name)
    elif name in errors.__all__:
        value = getattr(errors, name)
    else:
        raise AttributeError(f"module 'fastsock' has no attribute {name!r}")
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))


# the stdlib's names, then fastsock's own (none of which the stdlib has)
__all__ = [*_std.__all__, *errors.__all__, *_LAZY, "AcceptQueue", "errors"]
