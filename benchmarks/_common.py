"""Shared helpers for the fastsock benchmarks (not part of the package).

Every benchmark prints per-variant medians and ratios measured in the same
run, with the variants interleaved round by round (the order rotates each
round), because these machines are noisy: compare the ratios, not the
absolute times.  Traffic goes to 127.0.0.1 only.
"""

from __future__ import annotations

import gc
import importlib.util
import os
import platform
import shutil
import socket
import statistics
import struct
import subprocess
import sys
import sysconfig
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
if importlib.util.find_spec("fastsock") is None:  # a checkout, built in place
    sys.path.insert(0, str(ROOT))

LOOPBACK = "127.0.0.1"
_TCP_INFO = getattr(socket, "TCP_INFO", None)


def machine() -> str:
    """One line naming the machine, kernel and Python the figures come from."""
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    impl = f"{platform.python_implementation()} {platform.python_version()}"
    return (f"{cpu}, {os.cpu_count()} CPUs, {platform.system()} {platform.release()}, "
            f"{impl}")


def pin(cpu: str) -> str:
    """Pin this process (and the children it starts) to one CPU: ``cpu`` is a
    number, "last" or "none".  Every variant then runs on the same CPU without
    migrations, which narrows the spread between rounds on these VMs.  Returns
    what was done, for the header."""
    if cpu == "none" or not hasattr(os, "sched_setaffinity"):
        return "unpinned"
    cpus = sorted(os.sched_getaffinity(0))
    chosen = cpus[-1] if cpu == "last" else int(cpu)
    os.sched_setaffinity(0, {chosen})
    return f"pinned to CPU {chosen}"


def header(title: str, **params: object) -> None:
    print(f"# {title}")
    print(f"# machine: {machine()}")
    print(f"# command: {' '.join([os.path.basename(sys.executable)] + sys.argv)}")
    if params:
        print("# " + ", ".join(f"{k}={v}" for k, v in params.items()))


def median(xs: Sequence[float]) -> float:
    return statistics.median(xs)


def ratio_line(name: str, num: Sequence[float], den: Sequence[float], base: str,
               target: str = "") -> str:
    """Median of the per-round ratios num[i]/den[i] (paired, same round)."""
    r = median([a / b for a, b in zip(num, den)])
    lo = min(a / b for a, b in zip(num, den))
    hi = max(a / b for a, b in zip(num, den))
    t = f"   target {target}" if target else ""
    return f"ratio {name} / {base}: {r:.3f}x  (rounds: min {lo:.3f}, max {hi:.3f}){t}"


def interleave(rounds: int, variants: dict[str, Callable[[], float]],
               warmup: int = 1) -> dict[str, list[float]]:
    """Run every variant once per round, rotating the order; return the samples."""
    names = list(variants)
    out: dict[str, list[float]] = {n: [] for n in names}
    for r in range(-warmup, rounds):
        shift = r % len(names)
        for n in names[shift:] + names[:shift]:
            v = variants[n]()
            if r >= 0:
                out[n].append(v)
    return out


# ---- C baseline ------------------------------------------------------------

def compiler() -> str | None:
    """The system C compiler ($CC, cc, gcc or clang), or None."""
    return (os.environ.get("CC") or shutil.which("cc") or shutil.which("gcc")
            or shutil.which("clang"))


def compile_c(source: str, tmp: str, shared: bool = False,
              extension: bool = False) -> str | None:
    """Compile benchmarks/<source> with the system compiler (-O2) into ``tmp``,
    as a program or, with ``shared``, a shared library (``extension``: one
    that includes this interpreter's Python.h, to import as a module).

    Returns the path, or None (with a note on stderr) when there is no
    compiler or the build fails, so callers can skip the C rows.
    """
    cc = compiler()
    if not cc:
        print("# no C compiler (cc): C baseline skipped", file=sys.stderr)
        return None
    out = os.path.join(tmp, Path(source).stem + (".so" if shared or extension else ""))
    flags = ["-shared", "-fPIC"] if shared or extension else []
    if extension:
        flags.append("-I" + sysconfig.get_paths()["include"])
    proc = subprocess.run([cc, "-O2", *flags, "-o", out, str(HERE / source)],
                          capture_output=True, text=True)
    if proc.returncode != 0:
        print(f"# {source} did not build, C rows skipped:\n{proc.stderr}", file=sys.stderr)
        return None
    return out


def load_extension(path: str, name: str):
    """Import the extension module ``name`` built by compile_c(extension=True)."""
    import importlib.machinery
    loader = importlib.machinery.ExtensionFileLoader(name, path)
    spec = importlib.util.spec_from_file_location(name, path, loader=loader)
    assert spec is not None
    module = importlib.util.module_from_spec(spec)
    loader.exec_module(module)
    return module


def tempdir() -> tempfile.TemporaryDirectory[str]:
    return tempfile.TemporaryDirectory(prefix="fastsock-bench-")


# ---- a pre-filled accept queue ------------------------------------------------

def pending(listener: socket.socket) -> int | None:
    """Completed connections waiting in the listener's accept queue (Linux
    TCP_INFO: tcpi_unacked at offset 24 on a listener), None where unknown."""
    if _TCP_INFO is None:
        return None
    try:
        raw = listener.getsockopt(socket.IPPROTO_TCP, _TCP_INFO, 104)
    except OSError:
        return None
    return int(struct.unpack_from("I", raw, 24)[0])


def fill(listener: socket.socket, k: int) -> list[socket.socket]:
    """Queue ``k`` completed connections on ``listener`` (non-blocking connects
    from this process, made before any timing) and wait until the kernel holds
    all ``k`` in the accept queue.  Returns the client sockets; the caller
    closes them after the timed drain.
    """
    addr = listener.getsockname()
    clients = []
    for _ in range(k):
        c = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        c.setblocking(False)
        err = c.connect_ex(addr)
        if err not in (0, 115, 36, 11):  # 0, EINPROGRESS (Linux, BSD), EAGAIN
            c.close()
            raise OSError(err, os.strerror(err))
        clients.append(c)
    deadline = time.monotonic() + 10
    gc.collect()  # every variant starts its drain with the same, empty GC state
    while True:
        n = pending(listener)
        if n is None:
            time.sleep(0.05)
            break
        if n >= k:
            break
        if time.monotonic() > deadline:
            raise RuntimeError(f"accept queue holds {n} of {k} connections")
        time.sleep(0.0005)
    return clients


def close_all(socks: list[socket.socket]) -> None:
    for s in socks:
        s.close()


def rss_kib() -> int:
    """VmRSS of this process in KiB (Linux /proc/self/status)."""
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise RuntimeError("no VmRSS in /proc/self/status")
