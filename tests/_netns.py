"""Run Python inside a private network namespace (``unshare -n``) for tests.

The namespace gets ``lo`` up and the given sysctls written (e.g.
``{"net.core.somaxconn": "16"}``), so tests can make the kernel truncate a
backlog or narrow the port range without touching the host.  Where this is
not possible (not Linux, not root, no ``unshare``, unshare refused, /proc/sys
read-only) the calling test is skipped with the reason.

The child runs with ``cwd`` in a fresh temporary directory, so it imports the
installed fastsock, never the source tree.  ``run_python`` runs a snippet the
same way but in this process's namespace, for tests that need a child process
(resource limits, dropped privileges) and no namespace.
"""

from __future__ import annotations

import functools
import json
import os
import shutil
import subprocess
import sys
import tempfile

import pytest

__all__ = ["netns_skip_reason", "require_netns", "run_in_netns", "run_python"]

_SETUP_FAILED = 77

# Runs first inside the namespace: lo up (SIOCGIFFLAGS/SIOCSIFFLAGS, no `ip`
# needed), sysctls written and read back, then the snippet or an exec.
_PRELUDE = r"""
import fcntl, json, os, socket, struct, sys
_spec = json.loads(sys.argv[1])
def _lo_up():
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        req = struct.pack("16sH22x", b"lo", 0)
        flags = struct.unpack("16sH22x", fcntl.ioctl(s, 0x8913, req))[1]
        fcntl.ioctl(s, 0x8914, struct.pack("16sH22x", b"lo", flags | 1))
    finally:
        s.close()
try:
    _lo_up()
    for _name, _value in _spec["sysctls"].items():
        _path = "/proc/sys/" + _name.replace(".", "/")
        with open(_path, "w") as _f:
            _f.write(_value)
        with open(_path) as _f:
            if _f.read().split() != _value.split():
                raise OSError(f"{_name} did not take {_value!r}")
except OSError as _e:
    # not permitted here (read-only /proc/sys, no CAP_NET_ADMIN): skip; anything
    # else (a misspelt sysctl, a value the kernel rejects) is the test's error
    _denied = _e.errno in (1, 13, 30)  # EPERM, EACCES, EROFS
    print(f"netns setup {'failed' if _denied else 'error'}: {_e}", file=sys.stderr)
    sys.exit(__SETUP_FAILED__ if _denied else 1)
del _spec["sysctls"]
sys.argv = [sys.argv[0]]
if _spec.get("argv") is not None:
    sys.stdout.flush()
    os.execv(sys.executable, [sys.executable, *_spec["argv"]])
exec(compile(_spec["code"], "<netns>", "exec"), {"__name__": "__main__"})
""".replace("__SETUP_FAILED__", str(_SETUP_FAILED))


@functools.cache
def netns_skip_reason() -> str | None:
    """Why a private network namespace cannot be made here, or None."""
    if not sys.platform.startswith("linux"):
        return "network namespaces are Linux-only"
    if os.geteuid() != 0:
        return "unshare -n needs root"
    if shutil.which("unshare") is None:
        return "no unshare(1) on PATH"
    try:
        r = subprocess.run(["unshare", "-n", "true"], capture_output=True, text=True,
                           timeout=20, check=False)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return f"unshare -n failed: {exc}"
    if r.returncode != 0:
        return f"unshare -n not permitted: {r.stderr.strip()}"
    return None


def require_netns() -> None:
    """pytest.skip() unless a private network namespace can be made."""
    reason = netns_skip_reason()
    if reason:
        pytest.skip(reason)


def run_in_netns(code: str | None = None, *, argv: list[str] | None = None,
                 sysctls: dict[str, str] | None = None,
                 timeout: float = 60) -> subprocess.CompletedProcess:
    """Run ``code`` (a Python snippet) or ``python *argv`` inside a fresh
    network namespace with lo up and ``sysctls`` written; return the finished
    process (text stdout/stderr).  Skips the test where that is not possible.
    """
    if (code is None) == (argv is None):
        raise TypeError("give exactly one of code and argv")
    require_netns()
    spec = {"sysctls": dict(sysctls or {}), "code": code, "argv": argv}
    r = _run(["unshare", "-n", "--", sys.executable, "-c", _PRELUDE, json.dumps(spec)],
             timeout)
    if r.returncode == _SETUP_FAILED and "netns setup failed" in r.stderr:
        pytest.skip(r.stderr.strip())
    return r


def run_python(code: str, *, timeout: float = 60) -> subprocess.CompletedProcess:
    """Run ``code`` (a Python snippet) in a child process in this network
    namespace, ``cwd`` a fresh temporary directory as for ``run_in_netns``;
    return the finished process (text stdout/stderr).  Needs no root.
    """
    return _run([sys.executable, "-c", code], timeout)


def _run(argv: list[str], timeout: float) -> subprocess.CompletedProcess:
    with tempfile.TemporaryDirectory() as cwd:
        return subprocess.run(argv, capture_output=True, text=True, timeout=timeout,
                              cwd=cwd, check=False)
