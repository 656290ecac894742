"""The engine of the differential test (tests/test_differential.py) and of its
atheris target (fuzz/fuzz_differential.py): one sequence of calls, built once
from a ``choose`` function, run step by step against a stdlib ``socket`` world
and a ``fastsock`` world, each outcome compared.

A call's arguments are built once and resolved per side only where they name
something the run creates (a socket of that side, the port it is bound to, a
path under that side's directory, a pipe): everything else is the very same
object on both sides.  Outcomes are compared after normalising only what
legitimately depends on the run (fd numbers, ephemeral ports, the side's
directory and abstract-name token, autobind names); return values, exception
class compatibility, ``str``/``args``/``errno``/``strerror``/``filename``/
``filename2``, the absence of ``__notes__``, warnings (category and text) and
the repr of every socket are compared exactly.

No name resolution: hosts are numeric literals, or values refused before any
look-up.  Blocking calls are guarded (select) so that no step waits; a
0.5 s interval timer is the last resort against a step that blocks anyway.

Differences that fastsock documents (README, "Differences from the stdlib")
are in ``ALLOWED``, each with a predicate that checks it precisely.
"""

from __future__ import annotations

import errno
import math
import os
import re
import select
import shutil
import signal
import socket as std
import sys
import tempfile
import warnings
from pathlib import PurePosixPath

import fastsock

LINUX = sys.platform.startswith("linux")
try:
    with open("/proc/sys/net/ipv4/ip_local_port_range") as _f:
        EPHEMERAL = tuple(int(x) for x in _f.read().split())
except OSError:
    EPHEMERAL = (32768, 60999)
MISSING = "<missing>"


# -- symbolic arguments: resolved per side -------------------------------

class Ref:
    """An argument naming something of the side it runs on."""

    __slots__ = ("kind", "arg")

    def __init__(self, kind: str, arg: object = None) -> None:
        self.kind, self.arg = kind, arg

    def __repr__(self) -> str:
        return f"Ref({self.kind!r}, {self.arg!r})"


def _port_of(world: "World", k: int) -> int:
    s = world.sock(k)
    if s is None:
        return 0
    try:
        name = s.getsockname()
    except OSError:
        return 0
    return name[1] if isinstance(name, tuple) and len(name) >= 2 else 0


class PathLikeAddr:
    """An os.PathLike AF_UNIX address (resolved to the side's path)."""

    def __init__(self, path: str) -> None:
        self.path = path

    def __fspath__(self) -> str:
        return self.path

    def __repr__(self) -> str:
        return "PathLikeAddr(...)"


def resolve(world: "World", v: object) -> object:
    if isinstance(v, Ref):
        k = v.kind
        if k == "lport":
            return _port_of(world, v.arg)
        if k == "path":            # a path under the side's directory
            return world.dir + "/" + v.arg
        if k == "bpath":
            return (world.dir + "/" + v.arg).encode()
        if k == "pathlike":
            return PathLikeAddr(world.dir + "/" + v.arg)
        if k == "purepath":
            return PurePosixPath(world.dir + "/" + v.arg)
        if k == "abstract":         # an abstract name unique to the side
            return b"\0" + world.token.encode() + v.arg
        if k == "babstract":
            return bytearray(b"\0" + world.token.encode() + v.arg)
        if k == "sockfd":           # a dup of a socket's fd (or -1 if closed)
            s = world.sock(v.arg)
            if s is None or s.fileno() < 0:
                return -1
            fd = os.dup(s.fileno())
            world.raw_fds.append(fd)
            return fd
        if k == "pipefd":
            r, w = os.pipe()
            world.raw_fds += [r, w]
            return r
        if k == "closedfd":
            fd = os.open(os.devnull, os.O_RDONLY)
            os.close(fd)
            return fd
        if k == "sock":
            return world.sock(v.arg)
        raise AssertionError(k)
    if isinstance(v, tuple):
        return tuple(resolve(world, x) for x in v)
    if isinstance(v, list):
        return [resolve(world, x) for x in v]
    if isinstance(v, dict):
        return {key: resolve(world, x) for key, x in v.items()}
    return v


# -- value tables (shared by hypothesis and atheris) -----------------------

AF_INET, AF_INET6, AF_UNIX = std.AF_INET, std.AF_INET6, std.AF_UNIX
SOCK_STREAM, SOCK_DGRAM = std.SOCK_STREAM, std.SOCK_DGRAM

FAMILIES = [AF_INET, AF_INET6, AF_UNIX, AF_INET, AF_INET6, AF_UNIX, -1, 0, 9999, 2**31,
            2**64, "2", None, 2.0, std.AddressFamily.AF_INET]
TYPES = [SOCK_STREAM, SOCK_DGRAM, SOCK_STREAM, SOCK_DGRAM, std.SOCK_SEQPACKET, -1, 0, 999,
         SOCK_STREAM | getattr(std, "SOCK_NONBLOCK", 0),
         SOCK_STREAM | getattr(std, "SOCK_CLOEXEC", 0), "1", None, 2**64]
PROTOS = [0, 0, 0, -1, std.IPPROTO_TCP, std.IPPROTO_UDP, 255, 2**31, 2**64, "0", None]
FILENOS = [Ref("sockfd", 0), Ref("sockfd", 1), Ref("pipefd"), Ref("closedfd"), -1, -2,
           2**31, 2**63, 2**64, "3", 3.0, True, None]
INET_HOSTS = ["127.0.0.1", "127.0.0.1", "", "0.0.0.0", "127.1", "<broadcast>", "::1",
              b"127.0.0.1", bytearray(b"127.0.0.1"), None, 1, "127.0.0.1\x00",
              "\u00e9" * 70, "256.0.0.1"]
INET6_HOSTS = ["::1", "::1", "", "::", "127.0.0.1", "::ffff:127.0.0.1", "::1%lo",
               "fe80::1%lo", b"::1", None, 1.0, "::1\x00", "\u00e9" * 70, ":::"]
# fixed valid ports (1, 65535, True) only for calls that do not bind: both
# sides share the loopback, so a bind to one would collide
PORTS_BIND = [0, 0, Ref("lport", 0), Ref("lport", 1), Ref("lport", 2), -1, 65536,
              2**16 + 1, 2**31, 2**64, -2**64, 1.5, 0.0, "80", b"80", None, False]
PORTS = PORTS_BIND + [1, 65535, True]
FLOWINFOS = [0, 1, 2**20 - 1, 2**20, -1, 2**32, 2**64, "0", 0.0]
SCOPE_IDS = [0, 1, 2**32 - 1, 2**32, 2**32 + 1, -1, 2**64, 2**64 + 1, "0", 1.0]
UNIX_NAMES = ["a", "b", "c"]
BACKLOGS = [0, 1, 5, 128, 4096, std.SOMAXCONN, 4097, 65534, 65535, 65536, 2**31 - 1, 2**31,
            2**63, 2**64, -1, -2**31, -2**31 - 1, -2**64, True, False, 1.0, "5", None,
            b"5"]
TIMEOUTS = [0, 0.0, None, 0.05, 0.01, -1, -0.5, math.nan, math.inf, 1e300, 2**64, "1",
            b"1", True]
BLOCKING = [True, False, 0, 1, None, "x", 2.0, -1, 2**64]
DATA = [b"", b"x", b"hello" * 10, bytearray(b"ab"), memoryview(b"mv"), "str", None, 5,
        b"y" * 3000, [b"a"]]
FLAGS = [0, 0, std.MSG_DONTWAIT, std.MSG_PEEK, -1, 2**31, 2**64, "0", None, 1.5]
# no 2**31: recv would allocate 2 GiB, which under ASan takes longer than the
# step's 0.5 s alarm on one side and not the other (a timing difference, not
# fastsock's: recv is the stdlib's method); 2**63 and 2**64 still overflow
BUFSIZES = [0, 1, 16, 1024, 65536, -1, 2**63, 2**64, 1.0, "1", None]
HOWS = [std.SHUT_RD, std.SHUT_WR, std.SHUT_RDWR, 3, -1, 2**64, "0", None, 1.0]
SOCKOPTS = [
    (std.SOL_SOCKET, std.SO_REUSEADDR, 1), (std.SOL_SOCKET, std.SO_REUSEADDR, 0),
    (std.SOL_SOCKET, std.SO_RCVBUF, 4096), (std.SOL_SOCKET, std.SO_KEEPALIVE, True),
    (std.IPPROTO_TCP, std.TCP_NODELAY, 1), (std.IPPROTO_IPV6, std.IPV6_V6ONLY, 1),
    (std.SOL_SOCKET, std.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00"),
    (std.SOL_SOCKET, std.SO_LINGER, b"\x01"), (std.SOL_SOCKET, std.SO_REUSEADDR, "1"),
    (std.SOL_SOCKET, std.SO_REUSEADDR, None), (std.SOL_SOCKET, std.SO_REUSEADDR, None, 4),
    (std.SOL_SOCKET, std.SO_REUSEADDR, 2**64), (std.SOL_SOCKET, std.SO_REUSEADDR, -1),
    (std.SOL_SOCKET, 9999, 1), (-1, std.SO_REUSEADDR, 1), (std.SOL_SOCKET,),
    (std.SOL_SOCKET, std.SO_REUSEADDR, 1.5), (std.SOL_SOCKET, getattr(std, "SO_REUSEPORT", 15), 1),
]
GETSOCKOPTS = [
    (std.SOL_SOCKET, std.SO_TYPE), (std.SOL_SOCKET, std.SO_ERROR),
    (std.SOL_SOCKET, std.SO_REUSEADDR), (std.SOL_SOCKET, std.SO_ACCEPTCONN),
    (std.SOL_SOCKET, std.SO_LINGER, 8), (std.SOL_SOCKET, std.SO_REUSEADDR, 0),
    (std.SOL_SOCKET, std.SO_REUSEADDR, -1), (std.SOL_SOCKET, std.SO_REUSEADDR, 1025),
    (std.SOL_SOCKET, std.SO_REUSEADDR, 2**64), (std.IPPROTO_TCP, std.TCP_NODELAY),
    (std.SOL_SOCKET, 9999), ("1", 2), (std.SOL_SOCKET,),
]
INTS = [0, 1, 65535, 65536, -1, 2**31, 2**32 - 1, 2**32, 2**64, 1.5, "1", None, True]
INET_STRS = ["127.0.0.1", "0.0.0.0", "1.2.3", "256.1.1.1", "", "::1", "1.2.3.4\x00",
             b"127.0.0.1", None, "\u00e9", " 1.2.3.4", "0x7f.1"]
PACKED = [b"\x7f\x00\x00\x01", b"\x00" * 16, b"\x7f\x00\x00", b"", b"\x00" * 5, "abcd",
          None, bytearray(b"\x01\x02\x03\x04"), memoryview(b"\x00" * 16)]
GAI_HOSTS = ["127.0.0.1", "::1", None, "", "0.0.0.0", "::", b"127.0.0.1", 1, "1.2.3.4\x00",
             "\u00e9" * 70]
GAI_PORTS = [0, 80, "80", b"80", None, -1, 65536, 2**64, 1.5, "http", "99999"]
GAI_FAMILIES = [0, AF_INET, AF_INET6, AF_UNIX, -1, 2**64, "x"]
GAI_TYPES = [0, SOCK_STREAM, SOCK_DGRAM, -1, 2**64]
GAI_FLAGS = [std.AI_NUMERICHOST, std.AI_NUMERICHOST | std.AI_PASSIVE,
             std.AI_NUMERICHOST | std.AI_CANONNAME, std.AI_NUMERICHOST | 0x40000000, -1]
CONN_TIMEOUTS = [0.5, 1.0, None, 0, -1, "1"]


def inet_addr(choose, fam: int, binds: bool = False) -> object:
    """A (possibly hostile) address for ``fam`` (or something not an address)."""
    shape = choose(["ok", "ok", "ok", "ok", "short", "long", "str", "none", "list", "wrongfam"])
    if shape == "wrongfam":
        return unix_addr(choose) if fam != AF_UNIX else ("127.0.0.1", 0)
    if shape == "str":
        return "127.0.0.1"
    if shape == "none":
        return None
    if fam == AF_INET6:
        host = choose(INET6_HOSTS)
    else:
        host = choose(INET_HOSTS)
    port = choose(PORTS_BIND if binds else PORTS)
    if shape == "short":
        return (host,)
    if shape == "list":
        return [host, port]
    if shape == "long":
        if fam == AF_INET6:
            return (host, port, 0, 0, 0)
        return (host, port, 0)
    if fam == AF_INET6:
        n = choose([2, 2, 3, 4, 4])
        if n == 2:
            return (host, port)
        if n == 3:
            return (host, port, choose(FLOWINFOS))
        return (host, port, choose(FLOWINFOS), choose(SCOPE_IDS))
    return (host, port)


def unix_addr(choose) -> object:
    shape = choose(["path", "path", "bpath", "abstract", "abstract", "long", "limit",
                    "nul", "bnul", "empty", "bempty", "pathlike", "purepath", "none", "int",
                    "tuple", "bytearray", "surrogate"])
    name = choose(UNIX_NAMES)
    if shape == "path":
        return Ref("path", name)
    if shape == "bpath":
        return Ref("bpath", name)
    if shape == "abstract":
        return Ref("abstract", name.encode())
    if shape == "long":            # well past sun_path
        return Ref("path", name * 200)
    if shape == "limit":           # around the 108-byte limit (dir is 20 bytes)
        return Ref("path", name * choose([86, 87, 88]))
    if shape == "nul":
        return Ref("path", name + "\0x")
    if shape == "bnul":
        return Ref("bpath", name + "\0x")
    if shape == "empty":
        return ""
    if shape == "bempty":
        return b""
    if shape == "pathlike":
        return Ref("pathlike", name)
    if shape == "purepath":
        return Ref("purepath", name)
    if shape == "none":
        return None
    if shape == "int":
        return 5
    if shape == "tuple":
        return (Ref("path", name),)
    if shape == "bytearray":
        return Ref("babstract", name.encode())
    return Ref("path", name + "\udcff")


def address(choose, fam: int, binds: bool = False) -> object:
    if fam not in (AF_INET, AF_INET6, AF_UNIX):
        fam = choose([AF_INET, AF_INET6, AF_UNIX])
    if fam == AF_UNIX:
        return unix_addr(choose)
    return inet_addr(choose, fam, binds)


METHODS = ["bind", "bind", "connect", "connect", "connect_ex", "listen", "listen", "accept",
           "setsockopt", "getsockopt", "send", "sendall", "sendto", "recv", "recv_into",
           "recvfrom", "shutdown", "settimeout", "setblocking", "gettimeout", "fileno",
           "detach", "close", "repr", "getsockname", "getpeername", "dup"]
MODULE = ["new", "new", "new", "socketpair", "fromfd", "create_connection", "create_server",
          "getaddrinfo", "inet", "byteorder", "defaulttimeout"]


def build_op(choose, families: list[int]) -> tuple:
    """One call: ``(name, args, kwargs)`` or ``("m", k, method, args)``.
    ``families`` is the family of each socket so far (None when unknown)."""
    if families and choose([True, True, False]):
        k = choose(range(len(families)))
        fam = families[k]
        meth = choose(METHODS)
        if meth in ("bind", "connect", "connect_ex"):
            args = (address(choose, fam, meth == "bind"),)
        elif meth == "listen":
            args = choose([(), (choose(BACKLOGS),), (0, 1)])
        elif meth == "setsockopt":
            args = choose(SOCKOPTS)
        elif meth == "getsockopt":
            args = choose(GETSOCKOPTS)
        elif meth in ("send", "sendall"):
            args = (choose(DATA),) + choose([(), (choose(FLAGS),)])
        elif meth == "sendto":
            args = (choose(DATA),) + choose([(), (choose(FLAGS),)]) + (address(choose, fam, True),)
        elif meth in ("recv", "recvfrom"):
            args = (choose(BUFSIZES),) + choose([(), (choose(FLAGS),)])
        elif meth == "recv_into":
            args = (choose([bytearray(16), bytearray(0), memoryview(bytearray(8)), b"ro",
                            None]),) + choose([(), (choose(BUFSIZES),),
                                               (choose(BUFSIZES), choose(FLAGS))])
        elif meth == "shutdown":
            args = (choose(HOWS),)
        elif meth == "settimeout":
            args = (choose(TIMEOUTS),)
        elif meth == "setblocking":
            args = (choose(BLOCKING),)
        else:
            args = ()
        return ("m", k, meth, args)
    what = choose(MODULE)
    if what == "new":
        form = choose(["fft", "fft", "ff", "f", "none", "kw", "fileno", "fileno_auto"])
        fam, typ, proto = choose(FAMILIES), choose(TYPES), choose(PROTOS)
        if form == "fft":
            return ("new", (fam, typ, proto), {})
        if form == "ff":
            return ("new", (fam, typ), {})
        if form == "f":
            return ("new", (fam,), {})
        if form == "none":
            return ("new", (), {})
        if form == "kw":
            return ("new", (), {"family": fam, "type": typ})
        if form == "fileno":
            return ("new", (fam, typ, proto), {"fileno": choose(FILENOS)})
        return ("new", (), {"fileno": choose(FILENOS)})
    if what == "socketpair":
        return ("socketpair", choose([(), (AF_UNIX, choose(TYPES)),
                                      (choose(FAMILIES), SOCK_STREAM, choose(PROTOS))]), {})
    if what == "fromfd":
        return ("fromfd", (Ref("sockfd", choose([0, 1, 2])), choose(FAMILIES), choose(TYPES)) +
                choose([(), (choose(PROTOS),)]), {})
    if what == "create_connection":
        fam = choose([AF_INET, AF_INET6])
        addr = inet_addr(choose, fam)
        kw: dict = {}
        if choose([False, True]):
            kw["source_address"] = choose([("127.0.0.1", 0), ("::1", 0), None, ("x",), 5])
        return ("create_connection", (addr, choose(CONN_TIMEOUTS)), kw)
    if what == "create_server":
        fam = choose([AF_INET, AF_INET6, AF_INET])
        addr = choose([("127.0.0.1", 0), ("::1", 0), ("", 0), inet_addr(choose, fam, True)])
        kw = {}
        if choose([False] * 7 + [True]):      # AF_UNIX: only a path of the side
            addr = choose([Ref("path", "s"), Ref("abstract", b"s"), ("127.0.0.1", 0)])
            return ("create_server", (addr,), {"family": AF_UNIX})
        for key, vals in (("family", [AF_INET, AF_INET6, 9999]),
                          ("backlog", BACKLOGS), ("reuse_port", [True, False]),
                          ("dualstack_ipv6", [True, False])):
            if choose([False, False, True]):
                kw[key] = choose(vals)
        return ("create_server", (addr,), kw)
    if what == "getaddrinfo":
        return ("getaddrinfo", (choose(GAI_HOSTS), choose(GAI_PORTS), choose(GAI_FAMILIES),
                                choose(GAI_TYPES), 0, choose(GAI_FLAGS)), {})
    if what == "inet":
        fn = choose(["inet_aton", "inet_ntoa", "inet_pton", "inet_ntop"])
        if fn == "inet_aton":
            return (fn, (choose(INET_STRS),), {})
        if fn == "inet_ntoa":
            return (fn, (choose(PACKED),), {})
        if fn == "inet_pton":
            return (fn, (choose(GAI_FAMILIES), choose(INET_STRS)), {})
        return (fn, (choose(GAI_FAMILIES), choose(PACKED)), {})
    if what == "byteorder":
        return (choose(["htons", "ntohs", "htonl", "ntohl"]), (choose(INTS),), {})
    return (choose(["getdefaulttimeout", "setdefaulttimeout"]),
            choose([(), (choose(TIMEOUTS),)]), {})


def _conn(fam, typ, bind_addr, conn_addr, accept=True) -> list:
    ops = [("new", (fam, typ), {}), ("m", 0, "bind", (bind_addr,))]
    if typ == SOCK_STREAM:
        ops.append(("m", 0, "listen", (8,)))
    ops += [("new", (fam, typ), {}), ("m", 1, "connect", (conn_addr,))]
    if typ == SOCK_STREAM and accept:
        ops.append(("m", 0, "accept", ()))
    ops.append(("m", 1, "send", (b"ping",)))     # something for a recv to read
    return ops


PRELUDES = {
    "none": [],
    "tcp4": _conn(AF_INET, SOCK_STREAM, ("127.0.0.1", 0), ("127.0.0.1", Ref("lport", 0))),
    "tcp6": _conn(AF_INET6, SOCK_STREAM, ("::1", 0), ("::1", Ref("lport", 0))),
    "tcp4-pending": _conn(AF_INET, SOCK_STREAM, ("127.0.0.1", 0),
                          ("127.0.0.1", Ref("lport", 0)), accept=False),
    "unix": _conn(AF_UNIX, SOCK_STREAM, Ref("path", "l"), Ref("path", "l")),
    "unix-abstract": _conn(AF_UNIX, SOCK_STREAM, Ref("abstract", b"l"), Ref("abstract", b"l")),
    "udp4": _conn(AF_INET, SOCK_DGRAM, ("127.0.0.1", 0), ("127.0.0.1", Ref("lport", 0))),
    "udp6": _conn(AF_INET6, SOCK_DGRAM, ("::1", 0), ("::1", Ref("lport", 0))),
    "pair": [("socketpair", (), {}), ("m", 1, "sendall", (b"ping" * 100,))],
    "dgram-pair": [("socketpair", (AF_UNIX, SOCK_DGRAM), {}), ("m", 0, "send", (b"a",)),
                   ("m", 0, "send", (b"bc",))],
    "create": [("create_server", (("127.0.0.1", 0),), {}),
               ("create_connection", (("127.0.0.1", Ref("lport", 0)), 1.0), {}),
               ("m", 0, "accept", ())],
}


def sequence(choose, n: int):
    """A ``build(families)`` for run_sequence: a prelude (a listener with a
    connection, a socketpair, ... or nothing), then ``n`` generated calls."""
    pending = list(PRELUDES[choose(sorted(PRELUDES))])
    count = [0]

    def build(families):
        if pending:
            return pending.pop(0)
        if count[0] >= n:
            return None
        count[0] += 1
        return build_op(choose, families)
    return build


def new_families(op: tuple) -> int | None:
    """The family a socket-making op asks for (to target later ops)."""
    name, args, kw = op[0], op[1], op[2] if len(op) > 2 else {}
    fam = kw.get("family", args[0] if args else AF_INET)
    return fam if fam in (AF_INET, AF_INET6, AF_UNIX) else None


# -- a side ------------------------------------------------------------

class Blocked(Exception):
    """A step that blocked past the guard timer."""


class World:
    """The sockets, fds and directory of one side."""

    def __init__(self, mod, token: str) -> None:
        self.mod = mod
        self.token = token                       # same length on both sides
        self.dir = tempfile.mkdtemp(prefix=f"fsd{token}")
        self.socks: list = []
        self.raw_fds: list[int] = []
        self.ports: dict[int, str] = {}
        self.leaked = 0

    def sock(self, k: int):
        return self.socks[k % len(self.socks)] if self.socks else None

    def adopt(self, value: object) -> None:
        if isinstance(value, std.socket):
            self.socks.append(value)
        elif isinstance(value, (tuple, list)):
            for v in value:
                self.adopt(v)

    def learn_ports(self) -> None:
        for s in self.socks:
            if not family_matches(s):
                continue
            for get in (s.getsockname, s.getpeername):
                try:
                    name = get()
                except (OSError, ValueError):
                    continue
                if isinstance(name, tuple) and len(name) >= 2 and name[1]:
                    self.ports.setdefault(name[1], f"PORT{len(self.ports)}")

    def close(self) -> None:
        for s in self.socks:
            try:
                s.close()
            except OSError:
                pass
        self.socks.clear()
        for fd in self.raw_fds:
            try:
                os.close(fd)
            except OSError:
                pass
        self.raw_fds.clear()
        shutil.rmtree(self.dir, ignore_errors=True)

    # normalisation of what depends on the run
    def norm_text(self, text: str) -> str:
        text = text.replace(self.dir, "<DIR>").replace(self.token, "<TOK>")
        text = re.sub(r"fsd[SF][0-9a-z_]*", "fsd<TOK>", text)   # cut or mis-decoded
        text = re.sub(r"fd=\d+", "fd=FD", text)
        text = re.sub(r"b'\\x00[0-9a-f]{5}'", "b'\\\\x00AUTO'", text)
        for port, name in self.ports.items():
            text = re.sub(rf"(?<=, ){port}(?=[,)])", name, text)
        # a port of a socket this side never saw (one the call left behind)
        return re.sub(r"(?<=, )(\d{4,5})(?=[,)])",
                      lambda m: "EPORT" if EPHEMERAL[0] <= int(m[1]) <= EPHEMERAL[1] else m[1],
                      text)

    def sock_text(self, s) -> str:
        """The socket's repr, normalised; without its addresses when the
        socket's family is not its descriptor's (fromfd/fileno= with another
        family): CPython then decodes a sockaddr of another size, partly
        uninitialised memory, which differs from run to run."""
        text = repr(s)
        if not family_matches(s):
            text = re.sub(r", [lr]addr=.*(?=>$)", ", <addresses not decodable>", text)
        return self.norm_text(text)

    def norm(self, v: object, fdlike: bool = False) -> object:
        if isinstance(v, std.socket):
            return ("socket", self.sock_text(v))
        if isinstance(v, bool) or v is None or isinstance(v, float):
            return v
        if isinstance(v, int):
            if fdlike:
                return "FD" if v >= 0 else v
            if v in self.ports:
                return self.ports[v]
            return v
        if isinstance(v, str):
            return self.norm_text(v)
        if isinstance(v, bytes):
            if re.fullmatch(rb"\x00[0-9a-f]{5}", v):
                return b"\x00AUTO"
            return v.replace(self.dir.encode(), b"<DIR>").replace(self.token.encode(), b"<TOK>")
        if isinstance(v, tuple):
            return tuple(self.norm(x) for x in v)
        if isinstance(v, list):
            return [self.norm(x) for x in v]
        if isinstance(v, bytearray):
            return ("bytearray", bytes(v))
        return (type(v).__name__, self.norm_text(repr(v)))


# -- running one step on one side -----------------------------------------

def family_matches(s) -> bool:
    """Whether a socket's family attribute is its descriptor's (SO_DOMAIN)."""
    try:
        fd = s.fileno()
    except OSError:
        return True
    if fd < 0:
        return True
    try:
        return s.family == s.getsockopt(std.SOL_SOCKET, std.SO_DOMAIN)
    except OSError:
        return True


def _would_block(sock, meth: str) -> bool:
    """True when a call that may wait (timeout None or long) has nothing to
    do now: the step is skipped on both sides instead of waiting."""
    try:
        t = sock.gettimeout()
        fd = sock.fileno()
    except OSError:
        return False
    if fd < 0 or (t is not None and t <= 0.1):
        return False
    if meth in ("accept", "recv", "recv_into", "recvfrom"):
        r, _, _ = select.select([fd], [], [], 0.01)
        return not r
    if meth in ("send", "sendall", "sendto"):
        _, w, _ = select.select([], [fd], [], 0.01)
        return not w
    return False


def _alarm(signum, frame):
    raise Blocked("blocked")


def call(world: World, op: tuple):
    """Run ``op`` on ``world``; returns (kind, value, warnings, fdlike)."""
    mod = world.mod
    if op[0] == "m":
        _, k, meth, args = op
        target = world.sock(k)
        args = resolve(world, args)
        if meth in ("accept", "recv", "recv_into", "recvfrom", "send", "sendall", "sendto") \
                and _would_block(target, meth):
            return ("skip", None, [], False, 0)
        if meth == "repr":
            fn = lambda: repr(target)  # noqa: E731
        else:
            fn = lambda: getattr(target, meth)(*args)  # noqa: E731
        fdlike = meth in ("fileno", "detach")
    else:
        name, args, kw = op
        args, kw = resolve(world, args), resolve(world, kw)
        if name == "new":
            f = mod.socket
        else:
            f = getattr(mod, name)
        fn = lambda: f(*args, **kw)  # noqa: E731
        fdlike = False
    fds_before = _fds()
    old = signal.signal(signal.SIGALRM, _alarm)
    signal.setitimer(signal.ITIMER_REAL, 0.5)
    with warnings.catch_warnings(record=True) as rec:
        warnings.simplefilter("always")
        try:
            try:
                value = fn()
                kind = "ok"
            finally:
                signal.setitimer(signal.ITIMER_REAL, 0)
                signal.signal(signal.SIGALRM, old)
        except Blocked as e:          # also when the timer fired in the finally
            value, kind = e, "blocked"
        except Exception as e:  # noqa: BLE001  (any exception is an outcome)
            value, kind = e, "exc"
            # drop the frames: a socket the failed call left behind (the
            # stdlib's create_server leaks one on a TypeError from bind) is
            # finalised now, its ResourceWarning recorded on this side
            for x in (e, e.__context__, e.__cause__):
                if x is not None:
                    x.__traceback__ = None
            del e
    if kind == "ok":
        if op[0] == "m" and op[2] == "detach" and isinstance(value, int) and value >= 0:
            world.raw_fds.append(value)
        world.adopt(value)
        if op[0] == "new" and "fileno" in op[2] and isinstance(value, std.socket):
            fd = value.fileno()
            if fd in world.raw_fds:
                world.raw_fds.remove(fd)      # the socket owns it now
    # descriptors the call left open and nothing owns (the stdlib's fromfd
    # leaks its dup when socket() refuses the arguments; fastsock's does
    # not): counted, then closed
    owned = set(world.raw_fds)
    for s in world.socks:
        try:
            owned.add(s.fileno())
        except (OSError, ValueError):
            pass
    leaked = sorted(_fds() - fds_before - owned)
    for fd in leaked:
        try:
            os.close(fd)
        except OSError:
            pass
    world.leaked += len(leaked)
    return (kind, value, [(w.category, str(w.message)) for w in rec], fdlike, len(leaked))


def _fds() -> set[int]:
    """Open descriptors (not the one listdir used for the listing)."""
    try:
        listed = [int(f) for f in os.listdir("/proc/self/fd")]
    except OSError:
        return set()
    out = set()
    for fd in listed:
        try:
            os.fstat(fd)
        except OSError:
            continue
        out.add(fd)
    return out


def exc_view(world: World, e: BaseException) -> dict:
    view = {"str": world.norm(str(e)), "args": world.norm(e.args)}
    for attr in ("errno", "strerror", "filename", "filename2"):
        view[attr] = world.norm(getattr(e, attr, MISSING))
    view["__notes__"] = world.norm(getattr(e, "__notes__", MISSING))
    return view


ADDRESS_RESULTS = ("getsockname", "getpeername", "recvfrom", "accept")


def outcome(world: World, res, op=None) -> tuple:
    kind, value, warns, fdlike = res[:4]
    w = [(c.__name__, world.norm(t)) for c, t in warns]
    if (kind == "ok" and op is not None and op[0] == "m" and op[2] in ADDRESS_RESULTS
            and not family_matches(world.sock(op[1]))):
        return ("ok", "<address of a mismatched family>", w)
    if kind == "ok" and op is not None and op[0] == "m" and op[2] == "repr":
        return ("ok", world.sock_text(world.sock(op[1])), w)
    if kind == "ok":
        return ("ok", world.norm(value, fdlike), w)
    if kind == "exc":
        return ("exc", exc_view(world, value), w)
    return (kind, None, w)


# -- the documented differences, each checked precisely ------------------------

def _somaxconn() -> int:
    try:
        with open("/proc/sys/net/core/somaxconn") as f:
            return int(f.read())
    except OSError:
        return std.SOMAXCONN


SOMAXCONN_LIVE = _somaxconn()


def _listen_backlog(op):
    """(True, backlog) for a listen op with an int backlog; (True, None) with none."""
    if op[0] != "m" or op[2] != "listen":
        return (False, None)
    args = op[3]
    if len(args) == 0:
        return (True, None)
    if len(args) == 1:
        return (True, args[0])
    return (False, None)


def _effective(b) -> int:
    if b is None:
        return SOMAXCONN_LIVE
    if b < 0:
        return 0
    return min(b, SOMAXCONN_LIVE)


def _extra_warnings(s_warns, f_warns) -> list:
    """fastsock's warnings once the stdlib's are taken off, or None if the
    stdlib's are not an in-order subset of fastsock's."""
    sw, fw = list(s_warns), list(f_warns)
    extra = []
    for w in fw:
        if sw and (w[0], w[1]) == (sw[0][0], sw[0][1]):
            sw.pop(0)
        else:
            extra.append(w)
    return None if sw else extra


def allow_create_server_backlog(op, s_res, f_res, sw, fw) -> bool:
    """create_server(backlog=b) warns as listen(b) does (same rule)."""
    if op[0] != "create_server" or s_res[0] != f_res[0]:
        return False
    b = op[2].get("backlog", None)
    if s_res[0] == "exc":
        if not issubclass(type(f_res[1]), type(s_res[1])):
            return False
    s_out, f_out = outcome(sw, s_res), outcome(fw, f_res)
    if s_out[1] != f_out[1] or isinstance(b, bool) or not isinstance(b, int):
        return False
    return _backlog_warned(b, s_res[2], f_res[2])


def _backlog_warned(b, s_warns, f_warns) -> bool:
    extra = _extra_warnings(s_warns, f_warns)
    if extra is None:
        return False
    if b is not None and b < 0:
        want = [fastsock.BacklogWarning]
    elif b is not None and b < 65535 and b != std.SOMAXCONN and b > SOMAXCONN_LIVE:
        want = [fastsock.BacklogTruncatedWarning]
    else:
        want = []
    return [c for c, _ in extra] == want and all(str(b) in t for _, t in extra)


def allow_listen(op, s_res, f_res, sw, fw) -> bool:
    """listen() returns the backlog in force (``sock.backlog``) instead of
    None; a negative backlog is 0 with one ``BacklogWarning``; a literal
    request below 65535 (not SOMAXCONN) above the system limit gives one
    ``BacklogTruncatedWarning``; anything else warns nothing extra."""
    is_listen, b = _listen_backlog(op)
    if not is_listen or s_res[0] != "ok" or f_res[0] != "ok":
        return False
    if isinstance(b, bool) or not (b is None or isinstance(b, int)):
        return False
    eff = _effective(b)
    sock = fw.sock(op[1])
    if s_res[1] is not None or f_res[1] != eff or sock.backlog != eff:
        return False
    return _backlog_warned(b, s_res[2], f_res[2])


def allow_bool_backlog(op, s_res, f_res, sw, fw) -> bool:
    """A bool backlog raises TypeError (the stdlib takes True as 1), through
    listen() or create_server(backlog=) (whose stdlib code then leaves its
    socket to the finaliser: one ResourceWarning)."""
    is_listen, b = _listen_backlog(op)
    if op[0] == "create_server" and "backlog" in op[2]:
        is_listen, b = True, op[2]["backlog"]
        if [c for c, _ in f_res[2]] not in ([], [ResourceWarning]):
            return False
    elif f_res[2]:
        return False
    s_ok = s_res[0] == "ok" or (s_res[0] == "exc" and type(s_res[1]) is not TypeError
                                and isinstance(s_res[1], OSError))
    return (is_listen and isinstance(b, bool) and s_ok and f_res[0] == "exc"
            and type(f_res[1]) is TypeError and "bool" in str(f_res[1]))


def _unix_arg(op):
    if op[0] == "m" and op[2] in ("bind", "connect", "connect_ex", "sendto"):
        return op[3][-1]
    return None


def allow_unix_nul(op, s_res, f_res, sw, fw) -> bool:
    """A NUL inside an AF_UNIX filesystem path raises ValueError (the stdlib
    uses the path cut at the NUL)."""
    a = _unix_arg(op)
    if not (isinstance(a, Ref) and a.kind in ("path", "bpath") and "\0" in a.arg):
        return False
    sock = sw.sock(op[1])
    if sock is None or sock.family != AF_UNIX:
        return False
    return (f_res[0] == "exc" and type(f_res[1]) is ValueError
            and (s_res[0] == "ok" or (s_res[0] == "exc" and isinstance(s_res[1], OSError))))


def allow_scope_id(op, s_res, f_res, sw, fw) -> bool:
    """An IPv6 scope_id outside 0..2**32-1 raises OverflowError (the stdlib
    wraps it)."""
    if op[0] != "m" or op[2] not in ("bind", "connect", "connect_ex", "sendto"):
        return False
    a = op[3][-1]
    if not (isinstance(a, tuple) and len(a) == 4 and isinstance(a[3], int)
            and not isinstance(a[3], bool) and not 0 <= a[3] < 2**32):
        return False
    sock = sw.sock(op[1])
    if sock is None or sock.family != AF_INET6:
        return False
    s_ok = s_res[0] == "ok" or (s_res[0] == "exc" and isinstance(s_res[1], OSError))
    return (s_ok and f_res[0] == "exc" and type(f_res[1]) is OverflowError
            and "scope_id" in str(f_res[1]))


def allow_fromfd_close(op, s_res, f_res, sw, fw) -> bool:
    """fromfd() closes its dup when the socket object cannot be made (the
    stdlib leaves it open): the same exception, one descriptor fewer left."""
    if op[0] != "fromfd" or s_res[0] != "exc" or f_res[0] != "exc":
        return False
    if (s_res[4], f_res[4]) != (1, 0):
        return False
    s_out, f_out = outcome(sw, s_res, op), outcome(fw, f_res, op)
    return issubclass(type(f_res[1]), type(s_res[1])) and s_out[1:] == f_out[1:]


_COMPILED = ("bind", "connect", "connect_ex", "listen", "accept", "accept_many", "close")


def _arity_error(e) -> bool:
    text = str(e)
    return type(e) is TypeError and ("positional argument" in text or " argument (" in text
                                     or "keyword argument" in text)


def allow_arity(op, s_res, f_res, sw, fw) -> bool:
    """A compiled method called with the wrong number of arguments raises
    TypeError in Cython's words (the stdlib's C methods word it otherwise):
    a programming error, not a run-time condition; matching the stdlib would
    cost every call an argument tuple."""
    if op[0] != "m" or op[2] not in _COMPILED:
        return False
    return (s_res[0] == "exc" and f_res[0] == "exc" and _arity_error(s_res[1])
            and _arity_error(f_res[1]))


# name -> predicate(op, stdlib result, fastsock result, stdlib world, fastsock world).
# Mirrors README "Differences from the stdlib"; each one is checked precisely.
# A state-changing difference ("diverges") ends the sequence there.
ALLOWED = {
    "listen returns the backlog in force; backlog warnings": (allow_listen, False),
    "create_server(backlog=) warns as listen() does": (allow_create_server_backlog, False),
    "bool backlog raises TypeError": (allow_bool_backlog, True),
    "NUL in an AF_UNIX filesystem path raises ValueError": (allow_unix_nul, True),
    "IPv6 scope_id outside 0..2**32-1 raises OverflowError": (allow_scope_id, True),
    "fromfd() closes its dup(2) when the socket cannot be made": (allow_fromfd_close, False),
    "wrong argument count to a compiled method: Cython's TypeError text": (allow_arity, False),
}


def _pathlike_retry(op) -> bool:
    a = _unix_arg(op)
    return isinstance(a, Ref) and a.kind in ("pathlike", "purepath")


def same(s_out, f_out, s_res, f_res) -> bool:
    if s_out[0] != f_out[0] or s_res[4] != f_res[4]:     # also: descriptors left open
        return False
    if s_out[0] == "exc":
        if not issubclass(type(f_res[1]), type(s_res[1])):
            return False
    return s_out[1:] == f_out[1:]


class Difference(AssertionError):
    pass


class Diverged(Exception):
    """An allowed difference left the two sides in different states."""


def describe(op) -> str:
    if op[0] == "m":
        return f"sock[{op[1]}].{op[2]}{op[3]!r}"
    return f"{op[0]}(*{op[1]!r}, **{op[2]!r})"


def show(res, out) -> str:
    kind, value = res[0], res[1]
    if kind == "exc":
        return f"{type(value).__module__}.{type(value).__qualname__}: {out[1]} warnings={out[2]}"
    return f"{kind}: {out[1]!r} warnings={out[2]}"


def _lports(v) -> list:
    if isinstance(v, Ref):
        return [v.arg] if v.kind == "lport" else []
    if isinstance(v, (tuple, list)):
        return [k for x in v for k in _lports(x)]
    if isinstance(v, dict):
        return _lports(tuple(v.values()))
    return []


def _in_use_on_one_side(s_res, f_res) -> bool:
    def in_use(r):
        return r[0] == "exc" and getattr(r[1], "errno", None) == errno.EADDRINUSE
    return (in_use(s_res) and f_res[0] == "ok") or (in_use(f_res) and s_res[0] == "ok")


def _port_taken_across(sw: World, fw: World, op) -> bool:
    """A bind to the port of one of this side's sockets that the other side
    holds (both share the loopback): skipped on both sides."""
    if not (op[0] == "m" and op[2] in ("bind", "sendto")) and op[0] != "create_server":
        return False
    for k in _lports(op[1:]):
        if _port_of(sw, k) in fw.ports or _port_of(fw, k) in sw.ports:
            return True
    return False


def step(sw: World, fw: World, op: tuple, on_diff=None) -> None:
    """Run ``op`` on both sides and compare; a difference not allowed raises
    Difference (or is passed to ``on_diff`` which then decides)."""
    if _port_taken_across(sw, fw, op):
        return
    s_res = call(sw, op)
    f_res = call(fw, op)
    sw.learn_ports()
    fw.learn_ports()
    s_out, f_out = outcome(sw, s_res, op), outcome(fw, f_res, op)
    if s_res[0] == "skip" or f_res[0] == "skip":
        if s_res[0] != f_res[0]:
            _differ(op, "readiness", s_res, f_res, s_out, f_out, on_diff)
        return
    if same(s_out, f_out, s_res, f_res):
        _compare_reprs(sw, fw, op, on_diff)
        return
    if (op[0] == "m" and op[2] == "listen" and op[3] == (None,) and s_res[0] == "exc"
            and type(s_res[1]) is TypeError):
        # listen(None) is listen() (the live maximum): fastsock must do what
        # listen() does, which the stdlib side now runs (its TypeError left
        # the socket as it was)
        s_res2 = call(sw, ("m", op[1], "listen", ()))
        sw.learn_ports()
        s_out2 = outcome(sw, s_res2, op)
        if allow_listen(("m", op[1], "listen", ()), s_res2, f_res, sw, fw) or (
                same(s_out2, f_out, s_res2, f_res) and s_res2[0] == "exc"):
            _compare_reprs(sw, fw, op, on_diff)
            return
        _differ(op, "listen(None) as listen()", s_res2, f_res, s_out2, f_out, on_diff)
        return
    if _pathlike_retry(op) and s_res[0] == "exc" and isinstance(s_res[1], TypeError):
        # os.PathLike AF_UNIX addresses are accepted: fastsock must do what the
        # stdlib does with os.fspath(address)
        a = op[3][-1]
        fs_op = ("m", op[1], op[2], op[3][:-1] + (Ref("path", a.arg),))
        s_res2 = call(sw, fs_op)
        sw.learn_ports()
        s_out2 = outcome(sw, s_res2)
        if same(s_out2, f_out, s_res2, f_res):
            _compare_reprs(sw, fw, op, on_diff)
            return
        _differ(op, "os.PathLike AF_UNIX address", s_res2, f_res, s_out2, f_out, on_diff)
        return
    if _lports(op[1:]) and _in_use_on_one_side(s_res, f_res):
        # a port of one side's socket, re-bound in another protocol or on
        # another address, can be held by anything else on this machine: the
        # run's circumstance, not fastsock's; the sides are out of step
        raise Diverged("port in use elsewhere")
    for name, (pred, diverges) in ALLOWED.items():
        if pred(op, s_res, f_res, sw, fw):
            if diverges:        # the sides are no longer in step: stop here
                raise Diverged(name)
            _compare_reprs(sw, fw, op, on_diff)
            return
    _differ(op, "outcome", s_res, f_res, s_out, f_out, on_diff)


def _compare_reprs(sw: World, fw: World, op, on_diff) -> None:
    if len(sw.socks) != len(fw.socks):
        raise Difference(f"after {describe(op)}: {len(sw.socks)} stdlib sockets, "
                         f"{len(fw.socks)} fastsock sockets")
    for i, (a, b) in enumerate(zip(sw.socks, fw.socks)):
        ra, rb = sw.sock_text(a), fw.sock_text(b)
        if ra != rb:
            _differ(op, f"repr of sock[{i}]", ("ok", ra), ("ok", rb), ("ok", ra, []),
                    ("ok", rb, []), on_diff, fatal=False)


def _differ(op, what, s_res, f_res, s_out, f_out, on_diff, fatal=True) -> None:
    msg = (f"{what} differs for {describe(op)}\n  stdlib:   {show(s_res, s_out)}\n"
           f"  fastsock: {show(f_res, f_out)}")
    if on_diff is not None:
        on_diff(op, what, msg, s_res, f_res)
        if not fatal:
            return
        # the sides may no longer be in step: stop this sequence
    raise Difference(msg)


def fd_count() -> int:
    return len(_fds())


def run_sequence(build, on_diff=None) -> None:
    """Build and run a sequence: ``build(families)`` gives the next op or
    None to stop.  Closes everything; restores the default timeout."""
    default = std.getdefaulttimeout()
    sw, fw = World(std, "S" + os.urandom(4).hex()), World(fastsock, "F" + os.urandom(4).hex())
    families: list = []
    try:
        while True:
            op = build(families)
            if op is None:
                break
            before = len(sw.socks)
            try:
                step(sw, fw, op, on_diff)
            except Diverged:
                break
            for s in sw.socks[before:]:
                try:
                    families.append(s.family)
                except OSError:
                    families.append(None)
    finally:
        std.setdefaulttimeout(default)
        sw.close()
        fw.close()
