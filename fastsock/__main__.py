"""``python -m fastsock``: what this system allows for listening sockets.

    python -m fastsock [--json]
    python -m fastsock check [HOST:PORT] --backlog N [--json]
    python -m fastsock listeners [--json] [--port N] [--processes] [--watch [SECONDS]]

Exit status: 0 fine; 1 ``check``: the kernel would not honour the backlog;
2 an error (bad arguments, unknown host, port in use).
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import sys
import warnings
from typing import Any, NoReturn

from fastsock._capabilities import (
    _BSDS,
    TFO_SERVER_SYSCTL,
    Capabilities,
    capabilities,
    queue_capacity,
)
from fastsock.errors import SocketError

_SELF_CHECK_BACKLOGS = (None, 1_000_000)
_INT_MAX = 2**31 - 1

_DESCRIPTION = """\
Report what the running system allows for listening sockets, read live: the
real somaxconn of this network namespace (not the compile-time SOMAXCONN), the
kernel's backlog limits, SO_REUSEPORT and whether it balances load, deferred
accept, TCP Fast Open, IPv6 and AF_UNIX support.  Then a live self-check:
listen on 127.0.0.1 port 0 with the default backlog and with 1000000, showing
requested vs effective backlog, the accept queue capacity, and any truncation
with the sysctl that raises the limit.

exit status: 0 ok; 1 check: backlog would be truncated; 2 error"""

_CHECK_DESCRIPTION = """\
Listen on HOST:PORT (default 127.0.0.1:0, any free port) with backlog N and
read back what the kernel applied.  Exits 0 when the kernel honours N
(effective backlog >= N), 1 when it would truncate it (and says which sysctl
raises the limit), 2 on an error (bad address, unknown host, port in use).
Meant for deploy scripts:  python -m fastsock check 0.0.0.0:8080 --backlog 4096
IPv6 addresses go in brackets: [::1]:8080."""

_SECTIONS = {"platform": "Platform", "backlog": "Backlog and accept queue",
             "ports": "Ports", "descriptors": "Descriptors",
             "options": "Listener options", "families": "Address families"}


class _UsageError(Exception):
    """Bad command line: one line on stderr, exit 2."""


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:  # one line, no usage block
        raise _UsageError(f"{message} (see {self.prog} --help)")


def _parser(prog: str) -> argparse.ArgumentParser:
    fmt = argparse.RawDescriptionHelpFormatter
    p = _Parser(prog=prog, description=_DESCRIPTION, formatter_class=fmt)
    p.add_argument("--json", action="store_true",
                   help="print the capabilities and self-check results as JSON")
    sub = p.add_subparsers(dest="command", metavar="{check,listeners}")
    c = sub.add_parser("check", prog=f"{prog} check", description=_CHECK_DESCRIPTION,
                       formatter_class=fmt,
                       help="exit 1 if the kernel would not honour --backlog N")
    c.add_argument("address", nargs="?", default="127.0.0.1:0", metavar="HOST:PORT",
                   help="where to listen (default 127.0.0.1:0; IPv6 as [::1]:8080)")
    c.add_argument("--backlog", required=True, metavar="N",
                   help="the backlog to check, an integer >= 0")
    c.add_argument("--json", action="store_true", default=argparse.SUPPRESS,
                   help="print the result as JSON")
    from fastsock import _listeners_cli
    _listeners_cli.add_parser(sub, prog, fmt)
    return p


# ---- address and backlog arguments ------------------------------------------

def parse_address(text: str) -> tuple[str, int, bool]:
    """'HOST:PORT', '[V6]:PORT', ':PORT' or 'PORT' -> (host, port, is_bracketed_v6)."""
    bracketed = text.startswith("[")
    if bracketed:
        host, sep, rest = text[1:].partition("]")
        if not sep or (rest and not rest.startswith(":")):
            raise _UsageError(f"bad address {text!r}: expected [IPV6]:PORT")
        port = rest[1:] if rest else "0"
    elif ":" in text:
        host, _, port = text.rpartition(":")
        if ":" in host:
            raise _UsageError(f"bad address {text!r}: put IPv6 addresses in brackets, "
                              f"e.g. [{host}]:{port}")
    else:
        host, port = ("127.0.0.1", text) if text.isdigit() else (text, "0")
    if not port.isdigit() or not 0 <= int(port) <= 65535:
        raise _UsageError(f"bad port {port!r} in {text!r}: expected 0..65535")
    return host, int(port), bracketed


def _resolve(text: str) -> tuple[int, Any]:
    host, port, v6 = parse_address(text)
    family = socket.AF_INET6 if v6 else socket.AF_UNSPEC
    try:
        infos = socket.getaddrinfo(host or None, port, family, socket.SOCK_STREAM, 0,
                                   socket.AI_PASSIVE | socket.AI_NUMERICSERV)
    except (socket.gaierror, UnicodeError) as exc:
        raise _UsageError(f"cannot resolve host {host!r}: "
                          f"{getattr(exc, 'strerror', None) or exc}") from None
    family, _, _, _, sockaddr = infos[0]
    return family, sockaddr


def _backlog_arg(text: str) -> int:
    try:
        n = int(text, 10)
    except ValueError:
        raise _UsageError(f"bad backlog {text!r}: expected an integer >= 0") from None
    if n < 0:
        raise _UsageError(f"bad backlog {n}: expected an integer >= 0 "
                          "(fastsock treats negative backlogs as 0)")
    if n > _INT_MAX:
        raise _UsageError(f"bad backlog {n}: listen(2) takes a C int, at most {_INT_MAX}")
    return n


# ---- the live listen --------------------------------------------------------

def live_listen(family: int, sockaddr: Any, backlog: int | None,
                caps: Capabilities) -> dict[str, Any]:
    """Listen once with fastsock's core and report what the kernel applied."""
    from fastsock import _core

    s = socket.socket(family, socket.SOCK_STREAM)
    try:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if family == socket.AF_INET6:
            s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
        _core.bind(s.fileno(), family, sockaddr)
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            effective = _core.listen(s.fileno(), backlog)
        read_back = _core.effective_backlog(s.fileno())
        bound = s.getsockname()
    finally:
        s.close()
    truncated = backlog is not None and effective < backlog
    raise_with = None
    if backlog is not None and truncated and caps.somaxconn_knob \
            and effective < caps.backlog_storage_max:
        raise_with = (f"sysctl -w {caps.somaxconn_knob}="
                      f"{min(backlog, caps.backlog_storage_max)}")
    return {
        "address": list(bound[:2]),
        "requested": backlog,
        "effective": effective,
        "read_back": read_back is not None,
        "queue_capacity": queue_capacity(effective, caps.backlog_rules),
        "truncated": truncated,
        "limit": (caps.somaxconn_knob or caps.somaxconn_source) if truncated else None,
        "raise_with": raise_with,
        "warnings": [str(w.message) for w in caught],
    }


def _self_check_lines(checks: list[dict[str, Any]]) -> list[str]:
    out = [f"  {'requested':<12}{'effective':<12}{'queue holds':<13}"]
    for r in checks:
        req = "None" if r["requested"] is None else str(r["requested"])
        if r["truncated"]:
            fix = (f"raise it with: {r['raise_with']}" if r["raise_with"]
                   else "the kernel cannot store more")
            note = f"truncated by {r['limit']}; {fix}"
        else:
            note = "default: the system maximum" if r["requested"] is None else "honoured"
        out.append(f"  {req:<12}{r['effective']:<12}{r['queue_capacity']:<13}{note}")
    if checks:
        how = ("read back from the kernel" if all(r["read_back"] for r in checks)
               else "computed from the rules (this kernel does not report them)")
        out.append(f"  (effective backlogs {how}; queue holds = completed connections "
                   "admitted before the kernel drops or refuses)")
    return out


def _hints(caps: Capabilities) -> list[str]:
    hints = []
    entry = TFO_SERVER_SYSCTL.get(caps.platform)
    if entry and caps.tcp_fastopen and not caps.tcp_fastopen_server \
            and caps.tcp_fastopen_sysctl is not None:
        hints.append(f"TCP Fast Open for servers is off; enable it with: sysctl -w "
                     f"{entry[0]}={caps.tcp_fastopen_sysctl | entry[1]}")
    if caps.platform in _BSDS and not caps.defer_accept:
        hints.append("deferred accept needs the dataready accept filter: kldload accf_data")
    return hints


# ---- commands ---------------------------------------------------------------

def _explain(exc: OSError) -> str:
    """The error and, for fastsock's typed ones, the call that failed:
    ``[Errno 98] Address already in use: bind(('127.0.0.1', 8080))``."""
    where = exc.context() if isinstance(exc, SocketError) else ""
    return f"{exc}: {where}" if where else str(exc)


def _fmt(value: object) -> str:
    if isinstance(value, bool):
        return "yes" if value else "no"
    if value is None:
        return "-"
    if isinstance(value, tuple):
        if len(value) == 2 and all(isinstance(v, int) for v in value):
            return f"{value[0]}-{value[1]}"
        return ", ".join(value) or "none"
    return str(value)


def _report(caps: Capabilities, as_json: bool, version: str | None) -> int:
    import dataclasses

    checks, error = [], None
    for backlog in _SELF_CHECK_BACKLOGS:
        try:
            checks.append(live_listen(socket.AF_INET, ("127.0.0.1", 0), backlog, caps))
        except OSError as exc:
            error = f"cannot listen on 127.0.0.1: {_explain(exc)}"
            break
    from fastsock import _listeners_cli
    if as_json:
        try:
            dropping: list[Any] | None = _listeners_cli.dropping()
        except (OSError, NotImplementedError):
            dropping = None
        print(json.dumps({"fastsock": version, "capabilities": caps.to_dict(),
                          "self_check": checks, "self_check_error": error,
                          "listeners_dropping": dropping}, indent=2))
    else:
        out = [f"fastsock {version or ''}: what this system allows for listening sockets"]
        section = None
        for f in dataclasses.fields(caps):
            if f.metadata["section"] != section:
                section = f.metadata["section"]
                out.append(f"\n{_SECTIONS[section]}")
            out.append(f"  {f.metadata['label']:<28} {_fmt(getattr(caps, f.name))}")
        hints = _hints(caps)
        if hints:
            out.append("\nHints")
            out.extend(f"  {h}" for h in hints)
        out.append("\nSelf-check: listen on 127.0.0.1, port 0")
        out.extend(_self_check_lines(checks))
        if error:
            out.append(f"  failed: {error}")
        out.append("\nListeners (python -m fastsock listeners)")
        out.extend(_listeners_cli.report_lines())
        print("\n".join(out))
    return 2 if error else 0


def _check(caps: Capabilities, address: str, backlog_text: str, as_json: bool) -> int:
    backlog = _backlog_arg(backlog_text)
    family, sockaddr = _resolve(address)
    try:
        r = live_listen(family, sockaddr, backlog, caps)
    except OSError as exc:
        raise _UsageError(f"cannot listen on {address}: {_explain(exc)}") from None
    r["honoured"] = not r["truncated"]
    host, port = r["address"]
    where = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
    if as_json:
        print(json.dumps(r, indent=2))
    elif r["honoured"]:
        print(f"ok: backlog {backlog} honoured on {where} (effective {r['effective']}, "
              f"queue holds {r['queue_capacity']} connections)")
    else:
        fix = (f"raise it with: {r['raise_with']}" if r["raise_with"]
               else "the kernel cannot store more")
        print(f"truncated: backlog {backlog} on {where} would be {r['effective']}, "
              f"limited by {r['limit']}; {fix}")
    return 0 if r["honoured"] else 1


def _version() -> str | None:
    try:
        from importlib.metadata import version

        return version("fastsock")
    except ImportError:  # not installed: running from a tree
        return getattr(sys.modules.get("fastsock"), "__version__", None)


def main(argv: list[str] | None = None) -> int:
    """Run the CLI on ``argv`` (default ``sys.argv[1:]``); return the exit status."""
    prog = "fastsock" if os.path.basename(sys.argv[0] or "") == "fastsock" \
        else "python -m fastsock"
    try:
        try:
            args = _parser(prog).parse_args(argv)
        except SystemExit as exc:  # --help
            return exc.code if isinstance(exc.code, int) else 0
        if args.command == "listeners":
            from fastsock import _listeners_cli
            return _listeners_cli.run(args)
        caps = capabilities()
        if args.command == "check":
            return _check(caps, args.address, args.backlog, args.json)
        return _report(caps, args.json, _version())
    except _UsageError as exc:
        print(f"{prog}: error: {exc}", file=sys.stderr)
        return 2
    except BrokenPipeError:  # e.g. | head: stop quietly
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    except Exception as exc:
        if os.environ.get("FASTSOCK_DEBUG"):
            raise
        print(f"{prog}: error: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
