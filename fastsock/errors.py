"""The exceptions fastsock raises: one class per errno, sorted for accept loops.

A failed socket(2), bind(2), listen(2), accept(2) or connect(2) raises the
:class:`SocketError` subclass for its errno (``make_error`` is the one constructor
the compiled core uses).  Each is an ``OSError`` with ``errno``/``strerror`` set and
also the PEP 3151 builtin CPython maps that errno to, so ``except OSError``,
``except ConnectionRefusedError`` and ``e.errno == errno.EADDRINUSE`` work as with
the stdlib, and ``str(e)``/``e.args`` are the stdlib's own (``[Errno 98] Address
already in use``).  Instances also carry ``syscall``, ``address``, ``fd``,
``backlog`` and a ``hint``; ``set_error_notes(True)`` (or
``FASTSOCK_ERROR_NOTES=1``) shows them as a PEP 678 note under the traceback::

    fastsock.errors.AddressInUseError: [Errno 98] Address already in use
    bind(('127.0.0.1', 8080)): another socket is bound to this address and port ...

Accept sorting.  What accept(2) returns falls into three kinds.  Retry-now errors
(ECONNABORTED, EPERM from a firewall, and the network errors accept(2) says to
treat like EAGAIN) belong to a connection that is already gone: accept again at
once.  Capacity errors (EMFILE, ENFILE, ENOBUFS, ENOMEM) leave the connection
queued: back off, free a descriptor, then accept again.  Anything else means the
listener itself is broken.  Errors raised by ``accept`` are also instances of
:class:`AcceptRetryError` or :class:`AcceptCapacityError`, so a loop needs one
clause per kind (the same errnos from bind or connect are not)::

    backoff = 0.005
    while True:
        try:
            conn, addr = listener.accept()
        except fastsock.AcceptRetryError:
            continue                          # that connection is gone
        except fastsock.AcceptCapacityError:
            time.sleep(backoff)               # still queued: wait, then retry
            backoff = min(backoff * 2, 1.0)
            continue
        backoff = 0.005
        handle(conn, addr)
"""

import _socket
import _thread
import errno as _errno
import os
from types import MappingProxyType

TYPE_CHECKING = False       # typing.TYPE_CHECKING, without importing typing at run time
if TYPE_CHECKING:
    from collections.abc import Mapping

__all__ = [
    "SocketError", "SocketTimeout", "PermissionDeniedError", "OperationNotPermittedError",
    "AddressInUseError", "EphemeralPortsExhaustedError", "AddressNotAvailableError",
    "AddressFamilyNotSupportedError", "ProtocolNotSupportedError", "WrongProtocolTypeError",
    "SocketTypeNotSupportedError", "OperationNotSupportedError", "ProtocolNotAvailableError",
    "ProtocolError", "BadDescriptorError", "NotSocketError", "DestinationAddressRequiredError",
    "InvalidArgumentError", "AlreadyConnectedError", "BadAddressError",
    "TooManyOpenFilesError", "SystemFileTableFullError", "NoBufferSpaceError",
    "OutOfMemoryError", "NoStreamResourcesError", "WouldBlockError", "AlreadyInProgressError",
    "OperationInProgressError", "InterruptedCallError", "RefusedError", "AbortedError",
    "ResetError", "ConnectionTimedOutError", "PipeBrokenError", "EndpointShutdownError",
    "NetworkUnreachableError", "NetworkDownError", "HostUnreachableError", "HostDownError",
    "NoNetworkError", "PathNotFoundError", "PathExistsError", "NotDirectoryError",
    "IsDirectoryError", "NameTooLongError", "SymlinkLoopError", "ReadOnlyFilesystemError",
    "InputOutputError", "AcceptRetryError", "AcceptCapacityError", "AcceptAbortedError",
    "AcceptOperationNotPermittedError", "AcceptNetworkDownError", "AcceptProtocolError",
    "AcceptProtocolNotAvailableError", "AcceptHostDownError", "AcceptNoNetworkError",
    "AcceptHostUnreachableError", "AcceptOperationNotSupportedError",
    "AcceptNetworkUnreachableError", "AcceptTooManyOpenFilesError",
    "AcceptSystemFileTableFullError", "AcceptNoBufferSpaceError", "AcceptOutOfMemoryError",
    "InvalidPortError", "UnsupportedOptionError", "BacklogWarning", "BacklogTruncatedWarning",
    "UnsupportedPlatformError", "ListenFdsError", "make_error", "set_error_notes",
    "error_notes", "ERRNO_CLASSES", "SYSCALL_ERRNO_CLASSES", "ACCEPT_RETRY_ERRNOS",
    "ACCEPT_CAPACITY_ERRNOS",
]


class SocketError(OSError):
    """Base of every errno error fastsock raises; also the class of unknown errnos.

    Constructed positionally like ``OSError`` (``SocketError(errno, strerror)``),
    and ``str()``, ``args``, ``errno`` and ``strerror`` are exactly what the
    stdlib's exception for the same failure shows: code written for the stdlib
    sees no difference.  fastsock's context lives in attributes, ``None`` when
    unknown, set by ``make_error``: ``syscall`` ("socket", "bind", "listen",
    "accept", "connect", ...), ``address``, ``fd``, ``backlog`` (the backlog
    requested) and ``effective_backlog`` (the one in force, where known);
    ``hint`` says what usually causes the errno for that call and what to do.
    ``context()`` gives them as one line, e.g. ``bind(('127.0.0.1', 8080))``.
    No note (PEP 678) is attached unless asked for: see ``set_error_notes``.
    No ``__init__``: that keeps the construction on accept's error path at C
    speed.
    """

    syscall: str | None = None
    address: object = None
    fd: int | None = None
    backlog: int | None = None
    effective_backlog: int | None = None

    @property
    def hint(self) -> str | None:
        """What usually causes this errno from this call, and what to do about
        it; ``None`` where fastsock knows nothing to add."""
        if self.errno is None:
            return None
        return _hint(self.errno, self.syscall)

    def context(self) -> str:
        """The call that failed and its argument, as one line:
        ``bind(('127.0.0.1', 8080))``, ``listen(fd=4, backlog=128)``, ... ("" when
        unknown).  What the opt-in note (``set_error_notes``) shows, with the
        hint."""
        if self.syscall is None:
            return ""
        if self.address is not None:
            where = repr(self.address)
        elif self.fd is not None:
            where = f"fd={self.fd}"
        else:
            where = ""
        if self.backlog is not None:
            where = f"{where}, backlog={self.backlog}" if where else f"backlog={self.backlog}"
        return f"{self.syscall}({where})"


class SocketTimeout(SocketError, TimeoutError):
    """The socket's own timeout expired (accept, connect, I/O).  Like ``socket.timeout``:
    no errno, ``str(e) == "timed out"``; ``syscall`` says which call timed out."""

    def __init__(self, *args: object) -> None:
        super().__init__(*(args or ("timed out",)))


# ---- not errno errors ---------------------------------------------------------

class InvalidPortError(ValueError, OverflowError):
    """A port outside 0..65535.  The stdlib raises OverflowError, so both
    ``except OverflowError`` and ``except ValueError`` catch it."""

class _CapabilityError(Exception):
    """What the "not on this platform" errors share: ``capability``, the name
    ``fastsock.capabilities()`` and ``has()`` know the feature by."""

    capability: str

    def __init__(self, capability: str, message: str | None = None) -> None:
        super().__init__(message or f"{capability!r} is not supported on this platform")
        self.capability = capability

    def __reduce__(self) -> "tuple[type[_CapabilityError], tuple[str, str], object]":
        return type(self), (self.capability, str(self.args[0])), self.__dict__

class UnsupportedOptionError(_CapabilityError, ValueError):
    """A listener option this platform cannot honour.  ``capability`` is the name
    ``fastsock.has()`` knows it by (e.g. ``"reuse_port"``)."""

class UnsupportedPlatformError(_CapabilityError, NotImplementedError):
    """A fastsock function this platform has no kernel interface for (e.g.
    ``fastsock.listeners()`` off Linux).  ``capability`` is the
    ``capabilities()`` field that says whether it is available."""

class ListenFdsError(ValueError):
    """``fastsock.listen_fds()`` found a socket-activation variable it cannot use
    (LISTEN_PID, LISTEN_FDS or LISTEN_FDNAMES: not a number, out of range, or
    names that do not match the count): what sd_listen_fds(3) returns -EINVAL
    for.  ``variable`` names it, ``value`` is its text."""

    variable: str
    value: str

    def __init__(self, variable: str, value: str, message: str) -> None:
        super().__init__(f"{variable}={value!r}: {message}")
        self.variable = variable
        self.value = value

    def __reduce__(self) -> "tuple[type[ListenFdsError], tuple[str, str, str], object]":
        message = str(self.args[0]).partition(": ")[2]
        return type(self), (self.variable, self.value, message), self.__dict__

class BacklogWarning(RuntimeWarning):
    """listen() was given a negative backlog and used 0 (pass None for the maximum)."""

class BacklogTruncatedWarning(BacklogWarning):
    """listen()'s backlog exceeded the system limit; names the limit, its value, the knob."""


# ---- the errno classes, created on first use ------------------------------------
#
# Creating a class costs 15-50 us and there are 62 of them: most of what importing
# fastsock would cost.  So _errno_classes() holds their definitions, and
# _create_errno_classes() runs it the first time one of them, or a table, is
# needed: make_error() calls it, and so does the module __getattr__ (PEP 562) for
# the names of __all__ not defined yet.  That runs code already in memory and opens
# no file, so it works in a process that is out of descriptors (EMFILE is one of
# the errnos it serves).  Type checkers read the declarations below instead;
# tests/test_lazy_import.py checks that they name the same classes and bases.

if TYPE_CHECKING:  # the classes _errno_classes() creates, as type checkers see them
    class PermissionDeniedError(SocketError, PermissionError): ...
    class OperationNotPermittedError(SocketError, PermissionError): ...
    class AddressInUseError(SocketError): ...
    class EphemeralPortsExhaustedError(AddressInUseError): ...
    class AddressNotAvailableError(SocketError): ...
    class AddressFamilyNotSupportedError(SocketError): ...
    class ProtocolNotSupportedError(SocketError): ...
    class WrongProtocolTypeError(SocketError): ...
    class SocketTypeNotSupportedError(SocketError): ...
    class OperationNotSupportedError(SocketError): ...
    class ProtocolNotAvailableError(SocketError): ...
    class ProtocolError(SocketError): ...
    class BadDescriptorError(SocketError): ...
    class NotSocketError(SocketError): ...
    class DestinationAddressRequiredError(SocketError): ...
    class InvalidArgumentError(SocketError): ...
    class AlreadyConnectedError(SocketError): ...
    class BadAddressError(SocketError): ...
    class TooManyOpenFilesError(SocketError): ...
    class SystemFileTableFullError(SocketError): ...
    class NoBufferSpaceError(SocketError): ...
    class OutOfMemoryError(SocketError): ...
    class NoStreamResourcesError(SocketError): ...
    class WouldBlockError(SocketError, BlockingIOError): ...
    class AlreadyInProgressError(SocketError, BlockingIOError): ...
    class OperationInProgressError(SocketError, BlockingIOError): ...
    class InterruptedCallError(SocketError, InterruptedError): ...
    class RefusedError(SocketError, ConnectionRefusedError): ...
    class AbortedError(SocketError, ConnectionAbortedError): ...
    class ResetError(SocketError, ConnectionResetError): ...
    class ConnectionTimedOutError(SocketError, TimeoutError): ...
    class PipeBrokenError(SocketError, BrokenPipeError): ...
    class EndpointShutdownError(SocketError, BrokenPipeError): ...
    class NetworkUnreachableError(SocketError): ...
    class NetworkDownError(SocketError): ...
    class HostUnreachableError(SocketError): ...
    class HostDownError(SocketError): ...
    class NoNetworkError(SocketError): ...
    class PathNotFoundError(SocketError, FileNotFoundError): ...
    class PathExistsError(SocketError, FileExistsError): ...
    class NotDirectoryError(SocketError, NotADirectoryError): ...
    class IsDirectoryError(SocketError, IsADirectoryError): ...
    class NameTooLongError(SocketError): ...
    class SymlinkLoopError(SocketError): ...
    class ReadOnlyFilesystemError(SocketError): ...
    class InputOutputError(SocketError): ...
    class AcceptRetryError(SocketError): ...
    class AcceptCapacityError(SocketError): ...
    class AcceptAbortedError(AbortedError, AcceptRetryError): ...
    class AcceptOperationNotPermittedError(OperationNotPermittedError, AcceptRetryError): ...
    class AcceptNetworkDownError(NetworkDownError, AcceptRetryError): ...
    class AcceptProtocolError(ProtocolError, AcceptRetryError): ...
    class AcceptProtocolNotAvailableError(ProtocolNotAvailableError, AcceptRetryError): ...
    class AcceptHostDownError(HostDownError, AcceptRetryError): ...
    class AcceptNoNetworkError(NoNetworkError, AcceptRetryError): ...
    class AcceptHostUnreachableError(HostUnreachableError, AcceptRetryError): ...
    class AcceptOperationNotSupportedError(OperationNotSupportedError, AcceptRetryError): ...
    class AcceptNetworkUnreachableError(NetworkUnreachableError, AcceptRetryError): ...
    class AcceptTooManyOpenFilesError(TooManyOpenFilesError, AcceptCapacityError): ...
    class AcceptSystemFileTableFullError(SystemFileTableFullError, AcceptCapacityError): ...
    class AcceptNoBufferSpaceError(NoBufferSpaceError, AcceptCapacityError): ...
    class AcceptOutOfMemoryError(OutOfMemoryError, AcceptCapacityError): ...

    def _errno_classes() -> dict[str, type[SocketError]]: ...
else:
    def _errno_classes():
        """A new set of the errno classes, by name (_create_errno_classes() keeps one)."""
        # one class per errno (the errno and the syscalls that return it)

        class PermissionDeniedError(SocketError, PermissionError):
            """EACCES: socket (type denied), bind (privileged port, AF_UNIX path permission),
            connect (AF_UNIX write permission, broadcast, SELinux), listen (POSIX)."""

        class OperationNotPermittedError(SocketError, PermissionError):
            """EPERM: connect (firewall rule, broadcast), socket (FreeBSD), accept (firewall)."""

        class AddressInUseError(SocketError):
            """EADDRINUSE: bind (address taken), listen (another socket listens on the port),
            connect (local address in use)."""

        class EphemeralPortsExhaustedError(AddressInUseError):
            """EADDRINUSE from listen on a socket that was not bound: the kernel found no free
            ephemeral port to bind it to (Linux)."""

        class AddressNotAvailableError(SocketError):
            """EADDRNOTAVAIL: bind (address not local), connect (no free ephemeral port on
            Linux; address not available on the BSDs)."""

        class AddressFamilyNotSupportedError(SocketError):
            """EAFNOSUPPORT: socket (family not supported), bind/connect (address of another
            family)."""

        class ProtocolNotSupportedError(SocketError):
            """EPROTONOSUPPORT: socket (protocol not supported in the family); accept (Linux)."""

        class WrongProtocolTypeError(SocketError):
            """EPROTOTYPE: socket (protocol does not fit the type), connect (AF_UNIX peer of
            another type)."""

        class SocketTypeNotSupportedError(SocketError):
            """ESOCKTNOSUPPORT: socket (type not supported in the family); accept (Linux)."""

        class OperationNotSupportedError(SocketError):
            """EOPNOTSUPP (and ENOTSUP where it differs): listen/accept (type does not listen,
            e.g. UDP), connect (socket is listening), bind (POSIX); accept network error."""

        class ProtocolNotAvailableError(SocketError):
            """ENOPROTOOPT: accept (network error of the new connection, Linux)."""

        class ProtocolError(SocketError):
            """EPROTO: accept (protocol error on the new connection)."""

        class BadDescriptorError(SocketError):
            """EBADF: bind, listen, accept, connect (not an open descriptor)."""

        class NotSocketError(SocketError):
            """ENOTSOCK: bind, listen, accept, connect (descriptor is not a socket)."""

        class DestinationAddressRequiredError(SocketError):
            """EDESTADDRREQ: listen (unbound, and the protocol needs a bound socket), bind (POSIX)."""

        class InvalidArgumentError(SocketError):
            """EINVAL: socket (unknown protocol, bad flags), bind (already bound, bad address
            length), listen (connected or shut down), accept (not listening, bad flags),
            connect (bad address)."""

        class AlreadyConnectedError(SocketError):
            """EISCONN: connect (already connected), bind (POSIX)."""

        class BadAddressError(SocketError):
            """EFAULT: bind, accept, connect (address buffer outside the process's memory)."""

        class TooManyOpenFilesError(SocketError):
            """EMFILE: socket, accept (per-process descriptor limit, RLIMIT_NOFILE)."""

        class SystemFileTableFullError(SocketError):
            """ENFILE: socket, accept (system-wide open file limit)."""

        class NoBufferSpaceError(SocketError):
            """ENOBUFS: socket, accept, listen, connect, bind (no buffer space / socket memory)."""

        class OutOfMemoryError(SocketError):
            """ENOMEM: socket, bind, accept (insufficient kernel memory)."""

        class NoStreamResourcesError(SocketError):
            """ENOSR: accept (Linux, out of STREAMS resources; where the errno exists)."""

        class WouldBlockError(SocketError, BlockingIOError):
            """EAGAIN/EWOULDBLOCK: accept (non-blocking, nothing queued), connect (non-blocking
            AF_UNIX, or no routing cache entry), bind (FreeBSD, resources short)."""

        class AlreadyInProgressError(SocketError, BlockingIOError):
            """EALREADY: connect (a non-blocking connect is still in progress)."""

        class OperationInProgressError(SocketError, BlockingIOError):
            """EINPROGRESS: connect (non-blocking connect started; poll for writability)."""

        class InterruptedCallError(SocketError, InterruptedError):
            """EINTR: accept, connect, bind (signal; fastsock retries unless a handler raises)."""

        class RefusedError(SocketError, ConnectionRefusedError):
            """ECONNREFUSED: connect (nothing listens at the address)."""

        class AbortedError(SocketError, ConnectionAbortedError):
            """ECONNABORTED: accept (the connection was aborted while queued)."""

        class ResetError(SocketError, ConnectionResetError):
            """ECONNRESET: connect (the peer reset the connection request; POSIX, BSD)."""

        class ConnectionTimedOutError(SocketError, TimeoutError):
            """ETIMEDOUT: connect (the kernel's own connect timeout); accept (Linux)."""

        class PipeBrokenError(SocketError, BrokenPipeError):
            """EPIPE: not from the five calls but from send on a socket that is shut down for
            writing or closed by the peer; here so the I/O wrappers raise it typed too."""

        class EndpointShutdownError(SocketError, BrokenPipeError):
            """ESHUTDOWN: send after the endpoint was shut down (CPython maps it like EPIPE)."""

        class NetworkUnreachableError(SocketError):
            """ENETUNREACH: connect (no route to the network); accept network error."""

        class NetworkDownError(SocketError):
            """ENETDOWN: connect (interface down); accept network error."""

        class HostUnreachableError(SocketError):
            """EHOSTUNREACH: connect (no route to the host); accept network error."""

        class HostDownError(SocketError):
            """EHOSTDOWN: connect (host is down); accept network error."""

        class NoNetworkError(SocketError):
            """ENONET: accept network error (Linux only: machine is not on the network)."""

        class PathNotFoundError(SocketError, FileNotFoundError):
            """ENOENT: bind (AF_UNIX directory missing), connect (AF_UNIX path missing)."""

        class PathExistsError(SocketError, FileExistsError):
            """EEXIST: bind (macOS/BSD: a file already exists at the AF_UNIX path)."""

        class NotDirectoryError(SocketError, NotADirectoryError):
            """ENOTDIR: bind, connect (a component of the AF_UNIX path prefix is a file)."""

        class IsDirectoryError(SocketError, IsADirectoryError):
            """EISDIR: bind (BSD, POSIX: empty AF_UNIX path or a directory)."""

        class NameTooLongError(SocketError):
            """ENAMETOOLONG: bind, connect (a component of the AF_UNIX path is longer than the
            file system allows).  A path too long for sockaddr_un never reaches the kernel:
            that is the stdlib's ``OSError("AF_UNIX path too long")``, without an errno."""

        class SymlinkLoopError(SocketError):
            """ELOOP: bind, connect (too many symbolic links in the AF_UNIX path)."""

        class ReadOnlyFilesystemError(SocketError):
            """EROFS: bind (the AF_UNIX socket inode would be on a read-only filesystem)."""

        class InputOutputError(SocketError):
            """EIO: bind, connect (I/O error making or reading the AF_UNIX directory entry)."""


        # accept sorting

        class AcceptRetryError(SocketError):
            """Marker: accept failed for a connection that is already gone; accept again now.
            Errnos: ACCEPT_RETRY_ERRNOS.  Only errors from accept are instances."""

        class AcceptCapacityError(SocketError):
            """Marker: accept failed for lack of descriptors or memory; the connection stays
            queued.  Back off, free resources, retry.  Errnos: ACCEPT_CAPACITY_ERRNOS."""

        class AcceptAbortedError(AbortedError, AcceptRetryError):
            """ECONNABORTED from accept: aborted while queued."""

        class AcceptOperationNotPermittedError(OperationNotPermittedError, AcceptRetryError):
            """EPERM from accept: firewall rules forbid the connection."""

        class AcceptNetworkDownError(NetworkDownError, AcceptRetryError):
            """ENETDOWN from accept (accept(2): treat like EAGAIN)."""

        class AcceptProtocolError(ProtocolError, AcceptRetryError):
            """EPROTO from accept (accept(2): treat like EAGAIN)."""

        class AcceptProtocolNotAvailableError(ProtocolNotAvailableError, AcceptRetryError):
            """ENOPROTOOPT from accept (accept(2): treat like EAGAIN)."""

        class AcceptHostDownError(HostDownError, AcceptRetryError):
            """EHOSTDOWN from accept (accept(2): treat like EAGAIN)."""

        class AcceptNoNetworkError(NoNetworkError, AcceptRetryError):
            """ENONET from accept (Linux; accept(2): treat like EAGAIN)."""

        class AcceptHostUnreachableError(HostUnreachableError, AcceptRetryError):
            """EHOSTUNREACH from accept (accept(2): treat like EAGAIN)."""

        class AcceptOperationNotSupportedError(OperationNotSupportedError, AcceptRetryError):
            """EOPNOTSUPP from accept (accept(2): treat like EAGAIN)."""

        class AcceptNetworkUnreachableError(NetworkUnreachableError, AcceptRetryError):
            """ENETUNREACH from accept (accept(2): treat like EAGAIN)."""

        class AcceptTooManyOpenFilesError(TooManyOpenFilesError, AcceptCapacityError):
            """EMFILE from accept: the process is out of descriptors."""

        class AcceptSystemFileTableFullError(SystemFileTableFullError, AcceptCapacityError):
            """ENFILE from accept: the system is out of open files."""

        class AcceptNoBufferSpaceError(NoBufferSpaceError, AcceptCapacityError):
            """ENOBUFS from accept: out of socket buffer memory."""

        class AcceptOutOfMemoryError(OutOfMemoryError, AcceptCapacityError):
            """ENOMEM from accept: out of kernel memory."""

        return locals()


# ---- the tables: errno name -> class name ------------------------------------------

_BY_NAME = (
    ("EACCES", "PermissionDeniedError"), ("EPERM", "OperationNotPermittedError"),
    ("EADDRINUSE", "AddressInUseError"), ("EADDRNOTAVAIL", "AddressNotAvailableError"),
    ("EAFNOSUPPORT", "AddressFamilyNotSupportedError"),
    ("EPROTONOSUPPORT", "ProtocolNotSupportedError"), ("EPROTOTYPE", "WrongProtocolTypeError"),
    ("ESOCKTNOSUPPORT", "SocketTypeNotSupportedError"),
    ("EOPNOTSUPP", "OperationNotSupportedError"), ("ENOTSUP", "OperationNotSupportedError"),
    ("ENOPROTOOPT", "ProtocolNotAvailableError"), ("EPROTO", "ProtocolError"),
    ("EBADF", "BadDescriptorError"), ("ENOTSOCK", "NotSocketError"),
    ("EDESTADDRREQ", "DestinationAddressRequiredError"), ("EINVAL", "InvalidArgumentError"),
    ("EISCONN", "AlreadyConnectedError"), ("EFAULT", "BadAddressError"),
    ("EMFILE", "TooManyOpenFilesError"), ("ENFILE", "SystemFileTableFullError"),
    ("ENOBUFS", "NoBufferSpaceError"), ("ENOMEM", "OutOfMemoryError"),
    ("ENOSR", "NoStreamResourcesError"),
    ("EAGAIN", "WouldBlockError"), ("EWOULDBLOCK", "WouldBlockError"),
    ("EALREADY", "AlreadyInProgressError"), ("EINPROGRESS", "OperationInProgressError"),
    ("EINTR", "InterruptedCallError"), ("ECONNREFUSED", "RefusedError"),
    ("ECONNABORTED", "AbortedError"), ("ECONNRESET", "ResetError"),
    ("ETIMEDOUT", "ConnectionTimedOutError"), ("EPIPE", "PipeBrokenError"),
    ("ESHUTDOWN", "EndpointShutdownError"),
    ("ENETUNREACH", "NetworkUnreachableError"), ("ENETDOWN", "NetworkDownError"),
    ("EHOSTUNREACH", "HostUnreachableError"), ("EHOSTDOWN", "HostDownError"),
    ("ENONET", "NoNetworkError"), ("ENOENT", "PathNotFoundError"), ("EEXIST", "PathExistsError"),
    ("ENOTDIR", "NotDirectoryError"), ("EISDIR", "IsDirectoryError"),
    ("ENAMETOOLONG", "NameTooLongError"), ("ELOOP", "SymlinkLoopError"),
    ("EROFS", "ReadOnlyFilesystemError"), ("EIO", "InputOutputError"),
)

_ACCEPT_RETRY = (
    ("ENETDOWN", "AcceptNetworkDownError"), ("EPROTO", "AcceptProtocolError"),
    ("ENOPROTOOPT", "AcceptProtocolNotAvailableError"), ("EHOSTDOWN", "AcceptHostDownError"),
    ("ENONET", "AcceptNoNetworkError"), ("EHOSTUNREACH", "AcceptHostUnreachableError"),
    ("EOPNOTSUPP", "AcceptOperationNotSupportedError"),
    ("ENETUNREACH", "AcceptNetworkUnreachableError"),
    ("ECONNABORTED", "AcceptAbortedError"), ("EPERM", "AcceptOperationNotPermittedError"),
)

_ACCEPT_CAPACITY = (
    ("EMFILE", "AcceptTooManyOpenFilesError"), ("ENFILE", "AcceptSystemFileTableFullError"),
    ("ENOBUFS", "AcceptNoBufferSpaceError"), ("ENOMEM", "AcceptOutOfMemoryError"),
)


# Declared here, defined by _create_errno_classes():
#: Read-only views: errno -> class, and (syscall, errno) -> class (checked first).
ERRNO_CLASSES: "Mapping[int, type[SocketError]]"
SYSCALL_ERRNO_CLASSES: "Mapping[tuple[str | None, int], type[SocketError]]"
#: The errnos (present on this platform) that accept sorts into each marker.
ACCEPT_RETRY_ERRNOS: tuple[int, ...]
ACCEPT_CAPACITY_ERRNOS: tuple[int, ...]

# make_error's tables; empty until the classes are created
_BY_ERRNO: dict[int, type[SocketError]] = {}
_BY_SYSCALL_ERRNO: dict[tuple[str | None, int], type[SocketError]] = {}
_STRERROR: dict[int, str] = {}      # os.strerror() costs ~0.4 us; make_error looks up here
_EADDRINUSE = _errno.EADDRINUSE
_socket_gaierror, _socket_herror = _socket.gaierror, _socket.herror
_publishing = _thread.allocate_lock()


def _resolve(pairs: tuple[tuple[str, str], ...],
             classes: dict[str, type[SocketError]]) -> dict[int, type[SocketError]]:
    """errno name -> class name pairs as errno value -> class, skipping names this
    platform lacks (ENONET is Linux only, ENOSR is missing on the BSDs)."""
    table: dict[int, type[SocketError]] = {}
    for name, class_name in pairs:
        value: int | None = getattr(_errno, name, None)
        if value is not None:
            table.setdefault(value, classes[class_name])
    return table


def _create_errno_classes() -> None:
    """Define the errno classes and the tables as module globals, once.

    Threads that get here together each create a set, and the first to publish
    wins: the others drop theirs, so every name and table refers to one set.
    """
    global _BY_ERRNO, _BY_SYSCALL_ERRNO, _STRERROR
    if _BY_ERRNO:
        return
    classes = _errno_classes()
    for name, cls in classes.items():
        cls.__qualname__ = name         # module level, as pickle and repr expect
    by_errno = _resolve(_BY_NAME, classes)
    retry = _resolve(_ACCEPT_RETRY, classes)
    capacity = _resolve(_ACCEPT_CAPACITY, classes)
    by_syscall_errno: dict[tuple[str | None, int], type[SocketError]] = {
        ("accept", n): cls for n, cls in (retry | capacity).items()}
    views = {
        "ERRNO_CLASSES": MappingProxyType(by_errno),
        "SYSCALL_ERRNO_CLASSES": MappingProxyType(by_syscall_errno),
        "ACCEPT_RETRY_ERRNOS": tuple(retry),
        "ACCEPT_CAPACITY_ERRNOS": tuple(capacity),
    }
    strerror = {n: os.strerror(n) for n in _errno.errorcode}
    with _publishing:
        if _BY_ERRNO:       # another thread was first
            return
        globals().update(classes)
        globals().update(views)
        _STRERROR = strerror
        _BY_SYSCALL_ERRNO = by_syscall_errno
        _BY_ERRNO = by_errno              # last: make_error's sign that all is there


if not TYPE_CHECKING:  # type checkers see the names themselves, declared above
    def __getattr__(name: str) -> object:
        """The names of __all__ that _create_errno_classes() defines (PEP 562)."""
        if name in __all__:
            _create_errno_classes()
            return globals()[name]
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))


# ---- context as a PEP 678 note: opt-in ----------------------------------------
#
# pytest's raises(match=) matches str(e) joined with the notes, so a note on an
# error of the stdlib surface is something stdlib-written code can observe:
# none is added unless the user asks (FASTSOCK_ERROR_NOTES=1 in the environment,
# or set_error_notes(True)).  fastsock's own entry points (fastsock.listen, the
# command line) always add theirs.

_notes_on = os.environ.get("FASTSOCK_ERROR_NOTES", "") not in ("", "0")


def set_error_notes(enabled: bool) -> bool:
    """Add (``True``) or stop adding (``False``) fastsock's context to the errno
    errors of the stdlib surface as a PEP 678 note, shown under the traceback::

        fastsock.errors.AddressInUseError: [Errno 98] Address already in use
        bind(('127.0.0.1', 8080)): another socket is bound to this address ...

    Off by default (``FASTSOCK_ERROR_NOTES=1`` in the environment turns it on at
    import), because a note changes what ``pytest.raises(match=)`` sees.
    Returns the previous setting.  The context is always in the exception's
    attributes (``syscall``, ``address``, ``fd``, ``backlog``, ``hint``).
    """
    global _notes_on
    before, _notes_on = _notes_on, bool(enabled)
    return before


def error_notes() -> bool:
    """Whether errno errors carry fastsock's context as a PEP 678 note
    (``set_error_notes``)."""
    return _notes_on


def _note(e: SocketError) -> str:
    where, hint = e.context(), e.hint
    if hint is None:
        return where
    return f"{where}: {hint}" if where else hint


def _add_note(e: SocketError) -> None:
    """Add the context note to ``e`` unless it has it already (fastsock-only
    entry points always show it)."""
    note = _note(e)
    if note and note not in getattr(e, "__notes__", ()):
        e.add_note(note)


# errno name, syscall or None for any -> hint (the first match wins)
_HINTS = (
    ("EADDRINUSE", "bind", "another socket is bound to this address and port (a server, or "
     "connections in TIME_WAIT when SO_REUSEADDR is not set); stop it or pick another port"),
    ("EADDRINUSE", "listen", "another socket already listens on this port"),
    ("EADDRINUSE", "connect", "no free local port for this destination"),
    ("EADDRNOTAVAIL", "bind", "the address is not one of this host's (see `ip addr`)"),
    ("EADDRNOTAVAIL", "connect", "no free local port for this destination (ephemeral range "
     "exhausted: net.ipv4.ip_local_port_range)"),
    ("EACCES", "bind", "ports below net.ipv4.ip_unprivileged_port_start (1024) need "
     "CAP_NET_BIND_SERVICE; an AF_UNIX path needs write permission on its directory"),
    ("EACCES", "connect", "an AF_UNIX path needs write permission on the socket file"),
    ("EMFILE", None, "the process is out of file descriptors: raise RLIMIT_NOFILE "
     "(ulimit -n) or close some"),
    ("ENFILE", None, "the system's open-file table is full (fs.file-max)"),
    ("ENOBUFS", None, "the kernel is short of socket memory"),
    ("ENOMEM", None, "the kernel is short of memory"),
    ("ECONNREFUSED", "connect", "nothing listens at that address and port"),
    ("ETIMEDOUT", "connect", "the peer did not answer"),
    ("EOPNOTSUPP", "listen", "only stream sockets (SOCK_STREAM, SOCK_SEQPACKET) listen"),
    ("EINVAL", "listen", "the socket is connected or shut down"),
    ("EINVAL", "accept", "the socket does not listen: call listen() first"),
    ("EINVAL", "bind", "the socket is already bound, or the address does not fit the family"),
    ("EBADF", None, "the socket is closed"),
    ("ENOTSOCK", None, "the descriptor is not a socket"),
    ("ENOENT", "bind", "a directory of the AF_UNIX path does not exist"),
    ("ENOENT", "connect", "nothing exists at the AF_UNIX path"),
    ("EAFNOSUPPORT", None, "the address is not of the socket's family"),
)


def _hint(errnum: int, syscall: str | None) -> str | None:
    name = _errno.errorcode.get(errnum)
    for n, call, text in _HINTS:
        if n == name and (call is None or call == syscall):
            return text
    return None


def make_error(errnum: int, syscall: str | None, *, fd: int | None = None,
               address: object = None, backlog: int | None = None,
               unbound: bool = False, note: bool | None = None) -> SocketError:
    """The exception for ``errnum`` returned by ``syscall``, to be raised by the caller.

    The class comes from ``SYSCALL_ERRNO_CLASSES`` (accept sorting), then
    ``ERRNO_CLASSES``, else plain ``SocketError``; ``args`` are
    ``(errnum, strerror)``, as the stdlib's.  ``unbound=True`` says the socket
    had no address before the call: EADDRINUSE from listen then means no free
    ephemeral port, an ``EphemeralPortsExhaustedError``.  ``note``: add the
    context as a PEP 678 note (``None``: as ``set_error_notes`` says).
    """
    if not _BY_ERRNO:
        _create_errno_classes()
    cls = _BY_SYSCALL_ERRNO.get((syscall, errnum)) or _BY_ERRNO.get(errnum, SocketError)
    if unbound and errnum == _EADDRINUSE and syscall == "listen":
        cls = EphemeralPortsExhaustedError
    e = cls(errnum, _STRERROR.get(errnum) or os.strerror(errnum))
    e.syscall, e.address, e.fd, e.backlog = syscall, address, fd, backlog
    if _notes_on if note is None else note:
        _add_note(e)
    return e


def _retyped(exc: OSError, syscall: str, fd: int | None = None,
             address: object = None) -> OSError:
    """The typed error for an OSError a stdlib call raised, for the paths that
    fall back to the stdlib: the class for its errno with the very same
    ``args`` (so ``str``, ``errno``, ``strerror`` and ``filename`` stay the
    stdlib's).  Returned unchanged: an error without an errno (e.g. "AF_UNIX
    path too long", a timeout), one already typed, and the ``gaierror`` /
    ``herror`` of name resolution, whose errno is not an errno."""
    if exc.errno is None or isinstance(exc, (SocketError, _socket_gaierror, _socket_herror)):
        return exc
    if not _BY_ERRNO:
        _create_errno_classes()
    cls = _BY_SYSCALL_ERRNO.get((syscall, exc.errno)) or _BY_ERRNO.get(exc.errno, SocketError)
    if exc.filename is None and exc.filename2 is None:
        e = cls(*exc.args)
    else:       # OSError keeps the file names out of args
        e = cls(exc.errno, exc.strerror, exc.filename, None, exc.filename2)
    e.syscall, e.address, e.fd = syscall, address, fd
    if _notes_on:
        _add_note(e)
    return e
