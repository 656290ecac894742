"""Smoke run of benchmarks/: every script executes with tiny parameters and
prints its figures.  Not a timing test: no number is checked, only that the
comparison each script exists for is printed.  Skips what the machine lacks:
no C compiler -> the C baseline rows; no wrk -> the end-to-end benchmark; no
benchmarks/ directory (tests run from an installed wheel or an sdist) -> all.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parent.parent / "benchmarks"

pytestmark = [
    pytest.mark.skipif(not (BENCH / "_common.py").is_file(),
                       reason="benchmarks/ is not next to tests/ (installed package)"),
    pytest.mark.skipif(not sys.platform.startswith("linux"),
                       reason="the benchmarks read Linux's /proc and TCP_INFO"),
]

HAVE_CC = bool(os.environ.get("CC") or shutil.which("cc") or shutil.which("gcc")
               or shutil.which("clang"))


def run(script: str, *args: str, timeout: float = 240) -> str:
    p = subprocess.run([sys.executable, str(BENCH / script), *args], capture_output=True,
                       text=True, timeout=timeout, cwd=BENCH.parent)
    assert p.returncode == 0, f"{script} failed:\n{p.stdout}\n{p.stderr}"
    assert "# machine:" in p.stdout and "# command:" in p.stdout, p.stdout
    return p.stdout


def test_bench_accept():
    args = ["--k", "30", "--rounds", "1", "--batch", "8", "--blocking-many"]
    out = run("bench_accept.py", *args, *([] if HAVE_CC else ["--no-c"]))
    for name in ("stdlib _accept()", "stdlib accept()", "fastsock accept()",
                 "core accept_many(), fds", "fastsock accept_many()",
                 "fastsock accept_many(), blocking listener"):
        assert f"\n{name} " in out, out
    assert "ratio fastsock accept() / stdlib accept():" in out, out
    if HAVE_CC:
        assert "ratio fastsock accept() / C loop:" in out, out
        assert "ratio fastsock accept_many() / C loop:" in out, out
        assert "ratio C loop in this process / C loop:" in out, out
        if "io_uring_setup failed" not in out:
            assert "ratio fastsock accept_many() / C io_uring loop:" in out, out


def test_bench_listen():
    out = run("bench_listen.py", "--n", "20", "--rounds", "1")
    assert "ratio fastsock.socket / stdlib:" in out, out
    assert "ratio fastsock.listen() / stdlib create_server():" in out, out
    if HAVE_CC:
        assert "ratio stdlib socket.socket / C loop:" in out, out


def test_bench_import():
    out = run("bench_import.py", "--rounds", "1")
    assert "import fastsock - import socket (site, in-process):" in out, out


def test_bench_memory():
    out = run("bench_memory.py", "--n", "300", "--warmup", "50")
    for name in ("accept", "accept_many", "stdlib"):
        assert f"\n{name} " in out, out
    assert "target < 1024 KiB" in out, out


@pytest.mark.skipif(shutil.which("wrk") is None, reason="no wrk (apt-get install wrk)")
def test_bench_e2e():
    out = run("bench_e2e.py", "--rounds", "1", "--duration", "1", "--connections", "4")
    assert "ratio fastsock accept() / stdlib accept() (connections/s):" in out, out
    assert "ratio fastsock accept_many() / stdlib accept() (connections/s):" in out, out


def test_bench_e2e_without_wrk_says_so(tmp_path):
    """No wrk on PATH: the script explains and exits 0 instead of failing."""
    env = dict(os.environ, PATH=str(tmp_path))
    p = subprocess.run([sys.executable, str(BENCH / "bench_e2e.py"), "--rounds", "1"],
                       capture_output=True, text=True, timeout=60, env=env, cwd=BENCH.parent)
    assert p.returncode == 0, p.stderr
    assert "wrk not found" in p.stdout


def test_bench_listeners():
    if shutil.which("ss") is None:
        pytest.skip("no ss (iproute2)")
    out = run("bench_listeners.py", "--n", "50", "--rounds", "1")
    assert "\nfastsock.listeners() " in out and "\nfastsock processes=True " in out, out
    assert "ratio fastsock.listeners() / ss -ltnmH + split:" in out, out


@pytest.mark.skipif(shutil.which("wrk") is None, reason="no wrk (apt-get install wrk)")
def test_bench_servers():
    import importlib.util
    if importlib.util.find_spec("waitress") is None:
        pytest.skip("waitress is not installed (pip install -e '.[integration]')")
    out = run("bench_servers.py", "--servers", "waitress", "--rounds", "1", "--duration", "1",
              "--connections", "4")
    assert "ratio waitress fastsock / waitress stdlib (connections/s):" in out, out
