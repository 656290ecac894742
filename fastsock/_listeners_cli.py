"""``python -m fastsock listeners``: the namespace's listeners as a table, JSON,
or watched over time (see ``add_parser`` for the options).

The table shows address, backlog, pending, a fill gauge (pending/backlog) and
drops; in watch mode also drops per second since the previous sample, worst
first.  ``--watch`` redraws in place on a terminal (plain ANSI) and prints one
line per change otherwise; Ctrl-C ends it with exit 0 and a summary.
"""

from __future__ import annotations

import argparse
import json
import signal
import socket
import sys
import time
from typing import Any, TextIO

from fastsock._listeners import Listener, listen_counters, listeners

_DESCRIPTION = """\
Every listening socket of this network namespace (TCP over IPv4 and IPv6,
AF_UNIX), read from the kernel with one sock_diag dump per family: address,
backlog (the limit in force), pending (completed connections not yet
accepted), a fill gauge (pending / backlog) and drops (connection requests
the kernel dropped on it, e.g. on a full queue).  With --watch, samples every
SECONDS (default 1) and shows drops per second, worst first; on a terminal the
table is redrawn in place, otherwise one line is printed per change.  Ctrl-C
ends it with exit status 0 and a summary of the listeners that dropped.
Availability: Linux."""

_GAUGE = 10
_CLEAR = "\x1b[H\x1b[2J"


def add_parser(sub: Any, prog: str, fmt: type[argparse.HelpFormatter]) -> None:
    p = sub.add_parser("listeners", prog=f"{prog} listeners", description=_DESCRIPTION,
                       formatter_class=fmt, help="every listener of this namespace, "
                       "its backlog, queue and drops")
    p.add_argument("--json", action="store_true", default=argparse.SUPPRESS,
                   help="print the records as JSON (--watch: one JSON array per sample)")
    p.add_argument("--port", type=_port, metavar="N", help="only inet listeners on port N")
    p.add_argument("--processes", action="store_true",
                   help="show the processes holding each listener (walks /proc/*/fd)")
    p.add_argument("--watch", nargs="?", type=_interval, const=1.0, metavar="SECONDS",
                   help="sample every SECONDS (default 1) until Ctrl-C")
    p.add_argument("--count", type=_count, metavar="N",
                   help="with --watch: stop after N samples")


def _port(text: str) -> int:
    if not text.isdigit() or not 0 <= int(text) <= 65535:
        raise argparse.ArgumentTypeError(f"bad port {text!r}: expected 0..65535")
    return int(text)


def _interval(text: str) -> float:
    try:
        v = float(text)
    except ValueError:
        v = -1.0
    if not 0.01 <= v <= 86400:
        raise argparse.ArgumentTypeError(f"bad interval {text!r}: expected 0.01..86400 seconds")
    return v


def _count(text: str) -> int:
    if not text.isdigit() or int(text) < 1:
        raise argparse.ArgumentTypeError(f"bad count {text!r}: expected an integer >= 1")
    return int(text)


# ---- formatting -------------------------------------------------------------------

def format_address(rec: Listener) -> str:
    """'127.0.0.1:80', '[::1]:80' ('%scope' if any), a path, or '@name' for
    an abstract AF_UNIX name (as ss prints it)."""
    a = rec.address
    if isinstance(a, bytes):
        return "@" + a[1:].decode("utf-8", "backslashreplace")
    if isinstance(a, str):
        return a or "(unnamed)"
    if rec.family == socket.AF_INET6:
        scope = f"%{a[3]}" if a[3] else ""
        return f"[{a[0]}{scope}]:{a[1]}"
    return f"{a[0]}:{a[1]}"


def _gauge(rec: Listener) -> str:
    if rec.backlog is None or rec.pending is None:
        return "-"
    # Linux admits backlog + 1: a full queue can show more than 100%
    frac = rec.pending / rec.backlog if rec.backlog else (1.0 if rec.pending else 0.0)
    filled = min(_GAUGE, round(frac * _GAUGE))
    return f"[{'#' * filled}{'.' * (_GAUGE - filled)}] {frac * 100:3.0f}%"


def _num(v: int | None) -> str:
    return "-" if v is None else str(v)


def _key(rec: Listener) -> tuple[int, int, str]:
    return (rec.family, rec.inode, format_address(rec))


def table(recs: list[Listener], rates: dict[tuple[int, int, str], float] | None,
          processes: bool) -> list[str]:
    """The table's lines, worst first: by drops per second (watch), queue
    fill, then drops."""
    def worst(r: Listener) -> tuple[float, float, int]:
        fill = (r.pending or 0) / r.backlog if r.backlog else float(bool(r.pending))
        return (-(rates or {}).get(_key(r), 0.0), -fill, -(r.drops or 0))

    rows = []
    for r in sorted(recs, key=worst):
        row = [format_address(r), _num(r.backlog), _num(r.pending), _gauge(r), _num(r.drops)]
        if rates is not None:
            row.append(f"{rates.get(_key(r), 0.0):.1f}")
        if processes:
            row.append(",".join(f"{pid}/{name}" for pid, name in r.processes) or "-")
        rows.append(row)
    head = ["address", "backlog", "pending", "fill", "drops"]
    if rates is not None:
        head.append("drops/s")
    if processes:
        head.append("processes")
    widths = [max(len(x) for x in col) for col in zip(head, *rows, strict=True)]
    left = {0, 3, len(head) - 1} if processes else {0, 3}     # text columns
    return ["  ".join(c.ljust(w) if i in left else c.rjust(w)
                      for i, (c, w) in enumerate(zip(cells, widths, strict=True))).rstrip()
            for cells in [head, *rows]]


# ---- the command ------------------------------------------------------------------

def run(args: argparse.Namespace, out: TextIO = sys.stdout) -> int:
    as_json = getattr(args, "json", False)
    if args.watch is None:
        recs = listeners(port=args.port, processes=args.processes)
        if as_json:
            print(json.dumps([r.to_dict() for r in recs], indent=2), file=out)
        else:
            lines = table(recs, None, args.processes)
            print("\n".join(lines), file=out)
            print(f"{len(recs)} listener(s)", file=out)
        return 0
    return _watch(args, out, as_json)


class _Stop(Exception):
    pass


def _interrupted(signum: int, frame: object) -> None:
    raise _Stop


def _watch(args: argparse.Namespace, out: TextIO, as_json: bool) -> int:
    tty = out.isatty() and not as_json
    first: dict[tuple[int, int, str], tuple[Listener, float]] = {}
    prev: dict[tuple[int, int, str], tuple[Listener, float]] = {}
    samples = 0
    started = time.monotonic()
    old = signal.signal(signal.SIGINT, _interrupted)
    try:
        while True:
            now = time.monotonic()
            recs = listeners(port=args.port, processes=args.processes)
            samples += 1
            rates = {}
            for r in recs:
                k = _key(r)
                if k in prev and r.drops is not None and prev[k][0].drops is not None:
                    dt = now - prev[k][1]
                    rates[k] = (r.drops - (prev[k][0].drops or 0)) / dt if dt > 0 else 0.0
                first.setdefault(k, (r, now))
            if as_json:
                print(json.dumps([dict(r.to_dict(), drops_per_second=rates.get(_key(r)))
                                  for r in recs]), file=out, flush=True)
            elif tty:
                stamp = time.strftime("%H:%M:%S")
                lines = table(recs, rates, args.processes)
                out.write(_CLEAR + f"{len(recs)} listener(s) at {stamp}, every "
                          f"{args.watch:g} s; Ctrl-C to stop\n" + "\n".join(lines) + "\n")
                out.flush()
            else:
                _changes(out, prev, recs, rates)
            prev = {_key(r): (r, now) for r in recs}
            if args.count is not None and samples >= args.count:
                break
            time.sleep(max(0.0, args.watch - (time.monotonic() - now)))
    except (_Stop, KeyboardInterrupt):
        pass
    finally:
        signal.signal(signal.SIGINT, old)
    _summary(out, first, prev, samples, time.monotonic() - started)
    return 0


def _changes(out: TextIO, prev: dict[tuple[int, int, str], tuple[Listener, float]],
             recs: list[Listener], rates: dict[tuple[int, int, str], float]) -> None:
    """One line per listener that appeared, changed (backlog, pending, drops)
    or went away since the previous sample."""
    stamp = time.strftime("%Y-%m-%dT%H:%M:%S")
    seen = set()
    for r in recs:
        k = _key(r)
        seen.add(k)
        old = prev.get(k)
        state = f"backlog={_num(r.backlog)} pending={_num(r.pending)} drops={_num(r.drops)}"
        if old is None:
            print(f"{stamp} {format_address(r)} listening {state}", file=out)
        elif (old[0].backlog, old[0].pending, old[0].drops) != (r.backlog, r.pending, r.drops):
            more = ""
            if r.drops is not None and old[0].drops is not None and r.drops != old[0].drops:
                more = f" (+{r.drops - old[0].drops} drops, {rates.get(k, 0.0):.1f}/s)"
            print(f"{stamp} {format_address(r)} {state}{more}", file=out)
    for k, (r, _) in prev.items():
        if k not in seen:
            print(f"{stamp} {format_address(r)} closed", file=out)
    out.flush()


def _summary(out: TextIO, first: dict[tuple[int, int, str], tuple[Listener, float]],
             last: dict[tuple[int, int, str], tuple[Listener, float]], samples: int,
             seconds: float) -> None:
    dropped = []
    for k, (r, t) in last.items():
        r0 = first.get(k, (r, t))[0]
        if r.drops is not None and r0.drops is not None and r.drops > r0.drops:
            dropped.append((r.drops - r0.drops, format_address(r)))
    dropped.sort(reverse=True)
    print(f"watched {seconds:.1f} s, {samples} sample(s): "
          + ("; ".join(f"{a} dropped {n}" for n, a in dropped) if dropped
             else "no listener dropped"), file=out, flush=True)


def report_lines() -> list[str]:
    """For the main report: the listeners of this namespace that have
    dropped connection requests, and the namespace's overflow counters."""
    try:
        recs = listeners()
        counters = listen_counters()
    except (OSError, NotImplementedError) as exc:
        return [f"  not available: {exc}"]
    bad = sorted((r for r in recs if r.drops), key=lambda r: -(r.drops or 0))
    lines = [f"  {len(recs)} listener(s) in this network namespace; "
             + (f"{len(bad)} dropping:" if bad else "none has dropped a connection request")]
    for r in bad[:10]:
        lines.append(f"    {format_address(r)}: {r.drops} drops, queue {_num(r.pending)}"
                     f"/{_num(r.backlog)}")
    if len(bad) > 10:
        lines.append(f"    ... and {len(bad) - 10} more (python -m fastsock listeners)")
    if counters:
        lines.append("  since boot: " + ", ".join(
            f"{k} {counters[k]}" for k in ("ListenOverflows", "ListenDrops") if k in counters))
    return lines


def dropping(recs: list[Listener] | None = None) -> list[dict[str, Any]]:
    """The JSON form of the report's dropping listeners."""
    return [r.to_dict() for r in (recs if recs is not None else listeners()) if r.drops]
