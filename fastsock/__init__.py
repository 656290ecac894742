"""fastsock: strict listen() semantics, typed errors and a fast accept().

A drop-in replacement for the stdlib ``socket`` module: ``import fastsock as
socket`` keeps working code working.  Every public name of the running
Python's ``socket`` module is here; ``socket``, ``fromfd``, ``socketpair``,
``create_connection`` and ``create_server`` give ``fastsock.socket`` objects,
whose ``bind``/``listen``/``accept``/``connect`` run on fastsock's compiled
core.  fastsock's own additions: ``listen()``, ``capabilities()``, ``has()``,
``accept_many``, ``backlog``/``accept_queue`` on sockets, and the typed errors
and warnings of ``fastsock.errors``.
"""

import socket as _std
import types as _types
from typing import TYPE_CHECKING
from typing import Any as _Any

if TYPE_CHECKING:  # what globals().update() and __getattr__ provide, for type checkers
    from socket import *  # noqa: F403

    from fastsock._capabilities import Capabilities as Capabilities
    from fastsock._capabilities import capabilities as capabilities
    from fastsock._capabilities import has as has

# Every name of the stdlib module first (including the private ones the
# stdlib itself uses, such as _GLOBAL_DEFAULT_TIMEOUT), then ours on top.
globals().update({k: v for k, v in vars(_std).items() if not k.startswith("__")})

from fastsock import errors  # noqa: E402
from fastsock._sock import AcceptQueue, socket  # noqa: E402
from fastsock._listen import listen  # noqa: E402
from fastsock.errors import *  # noqa: E402,F403

__version__ = "0.1.0"


def _rebind(func: _Any) -> _Any:
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


for _name in ("create_connection", "create_server", "fromfd", "socketpair",
              "has_dualstack_ipv6", "_fallback_socketpair"):
    if callable(getattr(_std, _name, None)):
        globals()[_name] = _rebind(getattr(_std, _name))
del _name

_LAZY = {"capabilities", "has", "Capabilities"}


def __getattr__(name: str) -> _Any:
    # capabilities are read from the live system on demand, never at import
    if name in _LAZY:
        import importlib
        mod = importlib.import_module("fastsock._capabilities")
        globals().update({n: getattr(mod, n) for n in _LAZY})
        return globals()[name]
    raise AttributeError(f"module 'fastsock' has no attribute {name!r}")


__all__ = sorted(set(_std.__all__) | set(errors.__all__) | {
    "AcceptQueue", "listen", "capabilities", "has", "Capabilities", "errors",
})
