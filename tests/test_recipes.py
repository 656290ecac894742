"""docs/recipes.md, run: each recipe serves real HTTP on a fastsock listener.

Every ``<!-- recipe: NAME -->`` block of docs/recipes.md is written to a file
and run as ``__main__`` in a child process, with a listener this test made
with ``fastsock.listen()`` passed to it by socket activation (placed at fd 3,
``LISTEN_PID``/``LISTEN_FDS`` set), so the recipe's own
``fastsock.listen_fds()`` line is what adopts it.  The test then sends 200
requests with http.client, each on a new connection (8 client threads, every
call with a timeout), checks every response, and reads the listener's
``backlog`` and ``accept_queue()`` while the server serves: the kernel's
limit must stay the backlog the listener was made with (a server that calls
listen() again with its own default would change it).  Recipes whose server
is not installed are skipped (``pip install -e '.[integration]'``; CI:
.ci/integration).
"""

from __future__ import annotations

import concurrent.futures
import http.client
import importlib.util
import os
import pathlib
import re
import signal
import subprocess
import sys
import time

import pytest

import fastsock

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"),
                                reason="accept_queue() and the fd-3 handover: Linux")

DOC = pathlib.Path(__file__).resolve().parent.parent / "docs" / "recipes.md"
BODY = b"hello, world\n"
REQUESTS = 200
CLIENTS = 8

# the module each recipe needs beyond the stdlib
NEEDS = {"asyncio": None, "uvicorn-sockets": "uvicorn", "uvicorn-fd": "uvicorn",
         "gunicorn": "gunicorn", "tornado": "tornado", "aiohttp": "aiohttp",
         "trio": "trio", "http.server": None}

# Run in the child: move the passed listener to fd 3, announce it as
# systemd does, and run the recipe as __main__.
LAUNCHER = """
import os, runpy, sys
path, fd = sys.argv[1], int(sys.argv[2])
if fd != 3:
    os.dup2(fd, 3)
    os.close(fd)
os.environ["LISTEN_PID"] = str(os.getpid())
os.environ["LISTEN_FDS"] = "1"
sys.argv = [path]
runpy.run_path(path, run_name="__main__")
"""


def recipes() -> dict[str, str]:
    text = DOC.read_text() if DOC.exists() else ""
    found = dict(re.findall(r"<!-- recipe: (\S+) -->\n```python\n(.*?)```", text, re.S))
    return found


def test_every_recipe_is_known_to_this_test():
    found = recipes()
    if not found:
        pytest.skip("docs/recipes.md is not here (an installed-package run)")
    assert sorted(found) == sorted(NEEDS)


def fetch(port: int, timeout: float) -> tuple[int, bytes]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        conn.request("GET", "/")
        resp = conn.getresponse()
        return resp.status, resp.read()
    finally:
        conn.close()


def child_env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("LISTEN_")}
    env["PYTHONPATH"] = os.pathsep.join(
        [os.path.dirname(os.path.dirname(fastsock.__file__))] + sys.path)
    return env


@pytest.mark.parametrize("name", sorted(NEEDS))
def test_recipe_serves_real_traffic(name, tmp_path):
    code = recipes().get(name)
    if code is None:
        pytest.skip("docs/recipes.md is not here (an installed-package run)")
    module = NEEDS[name]
    if module is not None and importlib.util.find_spec(module) is None:
        pytest.skip(f"{module} is not installed (pip install -e '.[integration]')")
    path = tmp_path / ("recipe_" + re.sub(r"\W", "_", name) + ".py")
    path.write_text(code)
    log = tmp_path / "server.log"

    with fastsock.listen(("127.0.0.1", 0)) as listener, open(log, "w") as out:
        port = listener.getsockname()[1]
        backlog = listener.backlog
        assert backlog is not None and backlog > 0
        proc = subprocess.Popen(
            [sys.executable, "-c", LAUNCHER, str(path), str(listener.fileno())],
            pass_fds=(listener.fileno(),), stdin=subprocess.DEVNULL, stdout=out,
            stderr=subprocess.STDOUT, env=child_env(), cwd=tmp_path, start_new_session=True)
        try:
            # the first request waits in the accept queue until the server is up
            deadline = time.monotonic() + 30
            while True:
                try:
                    first = fetch(port, timeout=2)
                    break
                except (TimeoutError, ConnectionError):
                    assert proc.poll() is None, "the server exited: " + log.read_text()
                    assert time.monotonic() < deadline, "no answer in 30 s: " + log.read_text()
            assert first == (200, BODY), log.read_text()
            samples = []
            with concurrent.futures.ThreadPoolExecutor(CLIENTS) as pool:
                futures = [pool.submit(fetch, port, 10) for _ in range(REQUESTS)]
                for i, fut in enumerate(futures):
                    if i % 10 == 0:
                        samples.append((listener.backlog, listener.accept_queue()))
                    assert fut.result(timeout=60) == (200, BODY)
            assert proc.poll() is None, "the server exited while serving"
        except BaseException:
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=30)
            print(log.read_text())
            raise
        finally:
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGTERM)
                try:
                    proc.wait(timeout=10)
                except subprocess.TimeoutExpired:
                    os.killpg(proc.pid, signal.SIGKILL)
                    proc.wait(timeout=30)
            try:
                os.killpg(proc.pid, signal.SIGKILL)   # workers a server left behind
            except ProcessLookupError:
                pass
    assert len(samples) == REQUESTS // 10
    for seen_backlog, queue in samples:
        assert seen_backlog == backlog
        assert queue is not None, "accept_queue() reads TCP_INFO on Linux"
        assert queue.limit == backlog, f"the server re-listened: {queue} vs backlog {backlog}"
        assert 0 <= queue.pending <= queue.limit
