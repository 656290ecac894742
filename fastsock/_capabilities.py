"""What the running system allows for listening sockets, read live at call time.

``capabilities()`` returns a frozen :class:`Capabilities` record; ``has(name)``
answers one boolean capability.  Nothing is read or probed at import: every
value comes from the running kernel when you call, so a sysctl changed a second
ago, or the network namespace the process is in, shows.  Probes that need a
socket try the real operation on a throwaway socket (on loopback where an
address is needed) and close it; a constant that exists but is refused by the
kernel reads as unsupported.

Facts the compiled core owns are read from ``fastsock._core``, never restated
here: ``PLATFORM``, ``HAVE_*``, the live ``somaxconn()`` and the backlog rule set
(``backlog_rules()``, the table in csrc/fs_backlog.c).
"""

from __future__ import annotations

import dataclasses
import os
import socket
import sys
from collections.abc import Callable
from functools import cached_property, partial
from typing import Any

from fastsock import _core

__all__ = ["Capabilities", "capabilities", "has"]

_INT_MAX = 2**31 - 1

# ---- platform facts the core does not hold (said once here; _options.py and
# the CLI read them) -------------------------------------------------------------

# The "posix" rule set describes no particular kernel: it has no knob (only the compile-time
# SOMAXCONN), and a raw 0 or negative backlog is implementation-defined.
# The other rule sets' kernels take a raw negative backlog as the maximum (fastsock
# passes 0 instead, so the C rules do not hold this fact).
_GENERIC_RULES = "posix"
_COMPILE_TIME = "SOMAXCONN (compile-time)"  # _core.somaxconn()'s source when not read live
_BSDS = ("freebsd", "dragonfly", "netbsd")  # accept filters (accept_filter(9))
# Socket option numbers the stdlib socket module may not export.
SO_REUSEPORT_LB = {"freebsd": 0x10000}          # FreeBSD 12+: <sys/socket.h>
SO_ACCEPTFILTER = {p: 0x1000 for p in _BSDS}    # struct accept_filter_arg, 256 bytes
ACCEPT_FILTERS = ("dataready", "httpready", "dnsready", "tlsready")
# Server-side TCP Fast Open switch: (sysctl, bit that enables the server side).
TFO_SERVER_SYSCTL = {"linux": ("net.ipv4.tcp_fastopen", 0x2),
                     "freebsd": ("net.inet.tcp.fastopen.server_enable", 0x1),
                     "macos": ("net.inet.tcp.fastopen", 0x2)}
# Kernels on which listeners sharing a port via plain SO_REUSEPORT get
# connections distributed among them (FreeBSD needs SO_REUSEPORT_LB).
_REUSEPORT_BALANCES = ("linux", "dragonfly")


def queue_capacity(backlog: int, rules: str | None = None) -> int:
    """Completed connections a queue with this backlog holds under the rule set
    (default: the running kernel's); Linux: backlog + 1."""
    return _core.plan_backlog(rules or _core.BACKLOG_RULES, backlog, _INT_MAX)[2]


def _capacity_text(num: int, den: int, add: int) -> str:
    """(1, 1, 1) -> 'backlog + 1', (3, 2, 0) -> 'backlog * 3 / 2'."""
    return ("backlog" + (f" * {num}" if num != 1 else "") + (f" / {den}" if den != 1 else "")
            + (f" + {add}" if add else ""))


def _proc_sys(name: str) -> list[int] | None:
    """The integers in /proc/sys/NAME (dots as slashes), or None where unreadable."""
    try:
        with open("/proc/sys/" + name.replace(".", "/"), encoding="ascii") as f:
            return [int(x) for x in f.read().split()]
    except (OSError, ValueError):
        return None


def sysctl_int(name: str) -> int | None:
    """An integer sysctl, or None where there is none: /proc/sys on Linux,
    sysctlbyname(3) on macOS, FreeBSD, DragonFly and NetBSD."""
    if _core.PLATFORM == "linux":
        values = _proc_sys(name)
        return values[0] if values is not None and len(values) == 1 else None
    import ctypes

    try:
        fn = ctypes.CDLL(None, use_errno=True).sysctlbyname
    except (AttributeError, OSError):
        return None
    buf = ctypes.create_string_buffer(8)
    size = ctypes.c_size_t(8)
    if fn(name.encode(), buf, ctypes.byref(size), None, ctypes.c_size_t(0)) != 0 \
            or size.value not in (4, 8):
        return None
    return int.from_bytes(buf.raw[: size.value], sys.byteorder, signed=True)


def tfo_server_sysctl() -> int | None:
    """The raw value of this platform's server-side TCP Fast Open sysctl, or None."""
    entry = TFO_SERVER_SYSCTL.get(_core.PLATFORM)
    return None if entry is None else sysctl_int(entry[0])


def accept_filter_arg(name: str) -> bytes:
    """struct accept_filter_arg {char af_name[16]; char af_arg[240];} for SO_ACCEPTFILTER."""
    return name.encode("ascii").ljust(256, b"\0")


# ---- probes: throwaway sockets, closed before the probe returns ----------------

def _try(family: int, type_: int, setup: Callable[[socket.socket], object]) -> bool:
    """Create a socket, run setup(sock), close it; True if nothing raised OSError."""
    try:
        with socket.socket(family, type_) as s:
            setup(s)
        return True
    except OSError:
        return False


def _listening_loopback(s: socket.socket, backlog: int = 1) -> None:
    s.bind(("127.0.0.1", 0))
    s.listen(backlog)


def _same_port_pair(opt: int) -> bool:
    """Two TCP listeners with socket option ``opt`` on one 127.0.0.1 port."""
    try:
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as a, \
                socket.socket(socket.AF_INET, socket.SOCK_STREAM) as b:
            a.setsockopt(socket.SOL_SOCKET, opt, 1)
            _listening_loopback(a)
            b.setsockopt(socket.SOL_SOCKET, opt, 1)
            b.bind(a.getsockname())
            b.listen(1)
        return True
    except OSError:
        return False


class _Live:
    """One reading of the system; each fact computed at most once per reading."""

    @cached_property
    def accept4(self) -> bool:
        return bool(_core.HAVE_ACCEPT4)

    @staticmethod
    def _type_flag(built: bool, stdlib_name: str) -> bool:
        flag = getattr(socket, stdlib_name, None)
        return built and flag is not None and _try(
            socket.AF_INET, socket.SOCK_STREAM | flag, lambda s: None)

    @cached_property
    def sock_cloexec(self) -> bool:
        return self._type_flag(_core.HAVE_SOCK_CLOEXEC, "SOCK_CLOEXEC")

    @cached_property
    def sock_nonblock(self) -> bool:
        return self._type_flag(_core.HAVE_SOCK_NONBLOCK, "SOCK_NONBLOCK")

    @cached_property
    def io_uring_accept(self) -> bool:
        """Two queued loopback connections taken by one accept_many() call on
        a blocking listener: the second only through io_uring's accept that
        cannot wait (a kernel without it answers EINVAL, found here)."""
        if _core.accept_batching() != "io_uring":
            return False
        clients = []
        got: list[tuple[int, Any]] = []
        try:
            with socket.socket() as lst:
                _listening_loopback(lst, 4)
                clients = [socket.create_connection(lst.getsockname(), timeout=1)
                           for _ in range(2)]
                got = _core.accept_many(lst.fileno(), socket.AF_INET, 2)
        except OSError:
            return False
        finally:
            for fd, _ in got:
                os.close(fd)
            for c in clients:
                c.close()
        return len(got) == 2

    @cached_property
    def _readback(self) -> tuple[int | None, tuple[int, int] | None]:
        """(effective backlog, accept queue) read back from a listen(7) probe."""
        try:
            with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
                _listening_loopback(s, 7)
                return _core.effective_backlog(s.fileno()), _core.accept_queue(s.fileno())
        except OSError:
            return None, None

    @cached_property
    def backlog_readback(self) -> bool:
        return self._readback[0] == 7

    @cached_property
    def accept_queue_readback(self) -> bool:
        return self._readback[1] is not None

    @cached_property
    def listeners(self) -> bool:
        if not _core.HAVE_SOCK_DIAG:
            return False
        try:
            _core.diag_listeners(socket.AF_INET)
        except OSError:
            return False
        return True

    @cached_property
    def reuse_port(self) -> bool:
        opt = getattr(socket, "SO_REUSEPORT", None)
        return opt is not None and _same_port_pair(opt)

    @cached_property
    def reuse_port_lb(self) -> bool:
        opt = getattr(socket, "SO_REUSEPORT_LB", None) or SO_REUSEPORT_LB.get(_core.PLATFORM)
        return opt is not None and _same_port_pair(opt)

    @cached_property
    def reuse_port_balancing(self) -> bool:
        return self.reuse_port if _core.PLATFORM in _REUSEPORT_BALANCES else self.reuse_port_lb

    @cached_property
    def reuse_port_unix(self) -> bool:
        opt = getattr(socket, "SO_REUSEPORT", None)
        return opt is not None and hasattr(socket, "AF_UNIX") and _try(
            socket.AF_UNIX, socket.SOCK_STREAM,
            lambda s: s.setsockopt(socket.SOL_SOCKET, opt, 1))

    @cached_property
    def accept_filters(self) -> tuple[str, ...]:
        opt = SO_ACCEPTFILTER.get(_core.PLATFORM)
        if opt is None:
            return ()

        def install(name: str, s: socket.socket) -> None:
            _listening_loopback(s)  # filters attach to listening sockets only
            s.setsockopt(socket.SOL_SOCKET, opt, accept_filter_arg(name))
        return tuple(n for n in ACCEPT_FILTERS
                     if _try(socket.AF_INET, socket.SOCK_STREAM, partial(install, n)))

    @cached_property
    def defer_accept(self) -> bool:
        opt = getattr(socket, "TCP_DEFER_ACCEPT", None)
        if opt is not None and _core.PLATFORM == "linux":
            def setup(s: socket.socket) -> None:
                s.setsockopt(socket.IPPROTO_TCP, opt, 1)
                if s.getsockopt(socket.IPPROTO_TCP, opt) <= 0:
                    raise OSError("TCP_DEFER_ACCEPT did not stick")
            return _try(socket.AF_INET, socket.SOCK_STREAM, setup)
        return "dataready" in self.accept_filters

    @cached_property
    def tcp_fastopen(self) -> bool:
        opt: int | None = getattr(socket, "TCP_FASTOPEN", None)
        if opt is None:
            return False

        def setup(s: socket.socket) -> None:
            _listening_loopback(s)  # FreeBSD takes it on listening sockets only
            s.setsockopt(socket.IPPROTO_TCP, opt, 1)
        return _try(socket.AF_INET, socket.SOCK_STREAM, setup)

    @cached_property
    def tcp_fastopen_sysctl(self) -> int | None:
        return tfo_server_sysctl()

    @cached_property
    def tcp_fastopen_server(self) -> bool:
        entry = TFO_SERVER_SYSCTL.get(_core.PLATFORM)
        value = self.tcp_fastopen_sysctl
        return (entry is not None and value is not None and bool(value & entry[1])
                and self.tcp_fastopen)

    @cached_property
    def ipv6(self) -> bool:
        return socket.has_ipv6 and _try(socket.AF_INET6, socket.SOCK_STREAM,
                                        lambda s: s.bind(("::1", 0)))

    @cached_property
    def dualstack_ipv6(self) -> bool:
        return socket.has_dualstack_ipv6()

    @cached_property
    def af_unix(self) -> bool:
        return hasattr(socket, "AF_UNIX") and _try(socket.AF_UNIX, socket.SOCK_STREAM,
                                                   lambda s: None)

    @cached_property
    def abstract_unix(self) -> bool:
        if not (_core.HAVE_ABSTRACT_UNIX and self.af_unix):
            return False
        name = b"\0fastsock-probe-%d-%s" % (os.getpid(), os.urandom(8).hex().encode())
        return _try(socket.AF_UNIX, socket.SOCK_STREAM, lambda s: s.bind(name))

    @cached_property
    def unix_seqpacket(self) -> bool:
        if not self.af_unix or not hasattr(socket, "SOCK_SEQPACKET"):
            return False
        try:
            for s in socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET):
                s.close()
            return True
        except OSError:
            return False


# ---- the record ------------------------------------------------------------

def _m(section: str, label: str, doc: str) -> dict[str, str]:
    """A field's metadata: its report section, its label and its documentation."""
    return {"section": section, "label": label, "doc": doc}


@dataclasses.dataclass(frozen=True, slots=True)
class Capabilities:
    """What the running system allows for listening sockets (see each field's
    ``metadata["doc"]``, also shown by ``python -m fastsock``).  Build one with
    :func:`capabilities`; ``to_dict()`` gives the JSON form."""

    platform: str = dataclasses.field(metadata=_m(
        "platform", "platform",
        "fastsock's platform name, the compiled core's PLATFORM (e.g. linux, macos)."))
    sys_platform: str = dataclasses.field(metadata=_m(
        "platform", "sys.platform",
        "Python's sys.platform, for comparison."))
    kernel_release: str = dataclasses.field(metadata=_m(
        "platform", "kernel release",
        "The running kernel's release: os.uname().release (uname(2))."))
    somaxconn: int = dataclasses.field(metadata=_m(
        "backlog", "somaxconn",
        "The live system maximum backlog, as fastsock._core.somaxconn() reads it now "
        "(Linux: net.core.somaxconn of this network namespace)."))
    somaxconn_source: str = dataclasses.field(metadata=_m(
        "backlog", "somaxconn read from",
        "Where somaxconn was read: a /proc path, a sysctl name, or 'SOMAXCONN (compile-"
        "time)'."))
    somaxconn_knob: str | None = dataclasses.field(metadata=_m(
        "backlog", "somaxconn sysctl",
        "The sysctl that raises somaxconn (sysctl -w NAME=N), or None where there is "
        "none."))
    compile_time_somaxconn: int = dataclasses.field(metadata=_m(
        "backlog", "SOMAXCONN (compile-time)",
        "socket.SOMAXCONN, fixed when Python was built; not the limit in force."))
    backlog_rules: str = dataclasses.field(metadata=_m(
        "backlog", "backlog rules",
        "fastsock's backlog rule set for this kernel, one of fastsock._core.RULES."))
    backlog_storage_max: int = dataclasses.field(metadata=_m(
        "backlog", "backlog storage limit",
        "The largest backlog the kernel can store (storage_max of "
        "fastsock._core.backlog_rules(), the table in csrc/fs_backlog.c)."))
    default_backlog: int = dataclasses.field(metadata=_m(
        "backlog", "default backlog",
        "What fastsock.listen(backlog=None) uses: min(somaxconn, backlog_storage_max)."))
    zero_backlog_meaning: str = dataclasses.field(metadata=_m(
        "backlog", "raw backlog 0 means",
        "What listen(fd, 0) means to this kernel (informational; fastsock passes the "
        "smallest queue)."))
    negative_backlog_meaning: str = dataclasses.field(metadata=_m(
        "backlog", "raw negative backlog means",
        "What a raw negative backlog means to this kernel (informational; fastsock treats"
        " it as 0)."))
    queue_capacity: str = dataclasses.field(metadata=_m(
        "backlog", "accept queue holds",
        "Completed connections the queue admits for a backlog, e.g. backlog + 1 on Linux "
        "(capacity of fastsock._core.backlog_rules())."))
    backlog_readback: bool = dataclasses.field(metadata=_m(
        "backlog", "backlog read back",
        "The effective backlog can be read back from the kernel. Linux TCP: TCP_INFO; "
        "FreeBSD: SO_LISTENQLIMIT. Availability: Linux, FreeBSD."))
    accept_queue_readback: bool = dataclasses.field(metadata=_m(
        "backlog", "accept queue read back",
        "Pending connections and the limit can be read back "
        "(fastsock._core.accept_queue). Availability: Linux, FreeBSD."))
    listeners: bool = dataclasses.field(metadata=_m(
        "backlog", "listeners() and drops",
        "fastsock.listeners() and listen_counters() work: a NETLINK_SOCK_DIAG dump "
        "succeeded (probed). Availability: Linux."))
    tcp_max_syn_backlog: int | None = dataclasses.field(metadata=_m(
        "backlog", "tcp_max_syn_backlog",
        "/proc/sys/net/ipv4/tcp_max_syn_backlog: the SYN (half-open) queue limit. "
        "Availability: Linux."))
    tcp_syncookies: int | None = dataclasses.field(metadata=_m(
        "backlog", "tcp_syncookies",
        "0 off, 1 when the SYN queue overflows, 2 always. Linux: "
        "/proc/sys/net/ipv4/tcp_syncookies; FreeBSD: net.inet.tcp.syncookies."))

    ephemeral_port_range: tuple[int, int] | None = dataclasses.field(metadata=_m(
        "ports", "ephemeral ports",
        "(first, last) ports the kernel picks from for port 0 and unbound listen(). "
        "Linux: /proc/sys/net/ipv4/ip_local_port_range; BSD, macOS: "
        "net.inet.ip.portrange.first/last."))

    accept4: bool = dataclasses.field(metadata=_m(
        "descriptors", "accept4",
        "accept4(2) is used, so accepted sockets are close-on-exec atomically. "
        "Availability: Linux, FreeBSD, DragonFly, NetBSD, OpenBSD."))
    sock_cloexec: bool = dataclasses.field(metadata=_m(
        "descriptors", "SOCK_CLOEXEC",
        "socket(2) accepts SOCK_CLOEXEC (probed)."))
    sock_nonblock: bool = dataclasses.field(metadata=_m(
        "descriptors", "SOCK_NONBLOCK",
        "socket(2) accepts SOCK_NONBLOCK (probed)."))
    io_uring_accept: bool = dataclasses.field(metadata=_m(
        "descriptors", "io_uring accept batches",
        "accept_many() can take batches with io_uring's accept that cannot wait "
        "(IORING_ACCEPT_DONTWAIT, one io_uring_enter(2) per batch; probed): blocking "
        "listeners batch too, and deep queues cost fewer system calls. "
        "Without it, a blocking listener gives one connection per accept_many() call. "
        "FASTSOCK_NO_IO_URING=1 turns it off. Availability: Linux 6.10+, io_uring "
        "allowed (kernel.io_uring_disabled, seccomp)."))

    reuse_port: bool = dataclasses.field(metadata=_m(
        "options", "SO_REUSEPORT",
        "Two TCP listeners with SO_REUSEPORT bind one 127.0.0.1 port (probed): "
        "listen(reuse_port=True)."))
    reuse_port_lb: bool = dataclasses.field(metadata=_m(
        "options", "SO_REUSEPORT_LB",
        "The load-balancing SO_REUSEPORT_LB works (probed): listen(reuse_port_lb=True). "
        "Availability: FreeBSD 12+."))
    reuse_port_balancing: bool = dataclasses.field(metadata=_m(
        "options", "port sharing balances load",
        "Connections are spread over listeners sharing a port: with SO_REUSEPORT on Linux"
        " and DragonFly, with SO_REUSEPORT_LB on FreeBSD; never on macOS."))
    reuse_port_unix: bool = dataclasses.field(metadata=_m(
        "options", "SO_REUSEPORT on AF_UNIX",
        "setsockopt(SO_REUSEPORT) on an AF_UNIX socket is accepted (newer Linux refuses "
        "with EOPNOTSUPP)."))
    defer_accept: bool = dataclasses.field(metadata=_m(
        "options", "deferred accept",
        "listen(defer_accept=SECONDS) works: Linux TCP_DEFER_ACCEPT (probed), BSD accept "
        "filter 'dataready' loaded. Availability: Linux, FreeBSD, DragonFly, NetBSD."))
    accept_filters: tuple[str, ...] = dataclasses.field(metadata=_m(
        "options", "accept filters loaded",
        "BSD accept filters (SO_ACCEPTFILTER) that install on a listener (probed). "
        "Availability: FreeBSD, DragonFly, NetBSD."))
    tcp_fastopen: bool = dataclasses.field(metadata=_m(
        "options", "TCP_FASTOPEN option",
        "setsockopt(TCP_FASTOPEN) is accepted on a listener (probed)."))
    tcp_fastopen_sysctl: int | None = dataclasses.field(metadata=_m(
        "options", "TCP Fast Open sysctl",
        "Raw net.ipv4.tcp_fastopen (Linux), net.inet.tcp.fastopen.server_enable "
        "(FreeBSD), net.inet.tcp.fastopen (macOS)."))
    tcp_fastopen_server: bool = dataclasses.field(metadata=_m(
        "options", "TCP Fast Open (server)",
        "Servers can use TFO: the option is accepted and the sysctl enables the server "
        "side (Linux bit 0x2): listen(fast_open=N). Availability: Linux, FreeBSD, macOS."))

    ipv6: bool = dataclasses.field(metadata=_m(
        "families", "IPv6",
        "An AF_INET6 socket binds ::1 (probed)."))
    dualstack_ipv6: bool = dataclasses.field(metadata=_m(
        "families", "dual-stack IPv6",
        "socket.has_dualstack_ipv6(): one AF_INET6 socket can take IPv4 too (IPV6_V6ONLY "
        "off)."))
    af_unix: bool = dataclasses.field(metadata=_m(
        "families", "AF_UNIX",
        "AF_UNIX stream sockets can be created (probed)."))
    abstract_unix: bool = dataclasses.field(metadata=_m(
        "families", "abstract AF_UNIX names",
        "An AF_UNIX socket binds a name starting with NUL (probed). Availability: Linux."))
    unix_seqpacket: bool = dataclasses.field(metadata=_m(
        "families", "AF_UNIX SOCK_SEQPACKET",
        "socketpair(AF_UNIX, SOCK_SEQPACKET) works (probed)."))

    def to_dict(self) -> dict[str, Any]:
        """The record as JSON-ready types (tuples become lists): json.dumps() takes it."""
        return {f.name: (list(v) if isinstance(v := getattr(self, f.name), tuple) else v)
                for f in dataclasses.fields(self)}


_BOOLS = tuple(f.name for f in dataclasses.fields(Capabilities) if f.type == "bool")


def _ports() -> tuple[int, int] | None:
    if _core.PLATFORM == "linux":
        values = _proc_sys("net.ipv4.ip_local_port_range")
        return (values[0], values[1]) if values is not None and len(values) == 2 else None
    low = sysctl_int("net.inet.ip.portrange.first")
    high = sysctl_int("net.inet.ip.portrange.last")
    return None if low is None or high is None else (low, high)


def capabilities() -> Capabilities:
    """Read what the running system allows for listening sockets, now.

    Reads sysctls (/proc/sys on Linux, sysctlbyname(3) on BSD and macOS) and
    probes with throwaway sockets on loopback; takes about a millisecond and
    opens no socket that outlives the call.  Availability: POSIX.
    """
    live = _Live()
    value, source = _core.somaxconn()
    rules = _core.backlog_rules()
    rule_set, storage, knob = rules["name"], rules["storage_max"], rules["knob"]
    if rule_set == _GENERIC_RULES:
        zero, negative = "implementation-defined minimum", "implementation-defined (POSIX: as 0)"
    else:
        negative = f"maximum ({knob})"
        zero = negative if rules["zero_is_maximum"] \
            else f"queue of {queue_capacity(0, rule_set)}"
    linux = _core.PLATFORM == "linux"
    return Capabilities(
        platform=_core.PLATFORM,
        sys_platform=sys.platform,
        kernel_release=os.uname().release,
        somaxconn=value,
        somaxconn_source=source,
        somaxconn_knob=None if source == _COMPILE_TIME else knob,
        compile_time_somaxconn=socket.SOMAXCONN,
        backlog_rules=rule_set,
        backlog_storage_max=storage,
        default_backlog=min(value, storage),
        zero_backlog_meaning=zero,
        negative_backlog_meaning=negative,
        queue_capacity=_capacity_text(*rules["capacity"]),
        tcp_max_syn_backlog=sysctl_int("net.ipv4.tcp_max_syn_backlog") if linux else None,
        tcp_syncookies=sysctl_int("net.ipv4.tcp_syncookies" if linux
                                  else "net.inet.tcp.syncookies"),
        ephemeral_port_range=_ports(),
        tcp_fastopen_sysctl=live.tcp_fastopen_sysctl,
        accept_filters=live.accept_filters,
        **{name: getattr(live, name) for name in _BOOLS},
    )


def has(name: str) -> bool:
    """Whether one boolean capability of :class:`Capabilities` holds, read now
    (only that probe runs).  ``has("reuse_port")``.  An unknown name, or one
    that is not a yes/no capability, raises ``ValueError`` listing the valid ones.
    """
    if not isinstance(name, str):
        raise TypeError(f"capability name must be str, not {type(name).__name__}")
    if name not in _BOOLS:
        raise ValueError(f"unknown capability {name!r}; expected one of: "
                         + ", ".join(_BOOLS))
    return bool(getattr(_Live(), name))

