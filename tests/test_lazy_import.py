"""What ``import fastsock`` does not do, and the lazily created errno classes.

``import fastsock`` must stay cheap next to ``import socket`` (benchmarks/
bench_import.py measures it): it imports no ``typing``, ``contextlib`` or ``re``
and creates none of the 62 errno classes of ``fastsock.errors``, which are made
on first use (``make_error`` or an attribute access).  The tests here run in
fresh interpreters, since this process has long created them.
"""

from __future__ import annotations

import ast
import errno
import os
import pickle
import subprocess
import sys
import textwrap

import pytest

import fastsock
from fastsock import errors

# where fastsock is imported from, for the children (a checkout or an install)
PKG_PARENT = os.path.dirname(os.path.dirname(os.path.abspath(fastsock.__file__)))


def run_child(code: str, *args: str, no_site: bool = True) -> str:
    """Run ``code`` in a fresh interpreter (by default without site, so that
    nothing is preloaded) and return its stdout."""
    env = dict(os.environ, PYTHONPATH=PKG_PARENT)
    cmd = [sys.executable, *(["-S"] if no_site else []), "-c", textwrap.dedent(code), *args]
    p = subprocess.run(cmd, check=False, capture_output=True, text=True, env=env, timeout=60)
    assert p.returncode == 0, p.stderr
    return p.stdout


def test_import_pulls_in_nothing_heavy():
    out = ast.literal_eval(run_child("""
        import sys
        import fastsock
        print(repr({
            "modules": sorted(m for m in ("typing", "contextlib", "re", "dataclasses")
                              if m in sys.modules),
            "fastsock": sorted(m for m in sys.modules if m.startswith("fastsock")),
            "created": "AddressInUseError" in vars(fastsock.errors),
        }))
    """))
    assert out["modules"] == []
    assert out["fastsock"] == ["fastsock", "fastsock._core", "fastsock._sock", "fastsock.errors"]
    assert out["created"] is False


def test_lazy_names_before_first_use():
    data = pickle.dumps(errors.make_error(errno.ECONNREFUSED, "connect", address=("h", 1)))
    out = run_child("""
        import pickle, pydoc, sys
        import fastsock
        from fastsock import errors
        assert set(errors.__all__) <= set(dir(errors))       # listed before they exist
        assert set(fastsock.__all__) <= set(dir(fastsock))
        assert "AddressInUseError" not in vars(errors)
        e = pickle.loads(bytes.fromhex(sys.argv[1]))       # created by unpickling
        assert type(e) is errors.RefusedError is fastsock.RefusedError
        assert e.syscall == "connect" and e.address == ("h", 1)
        assert fastsock.AddressInUseError is errors.AddressInUseError
        assert errors.ERRNO_CLASSES[98] is errors.AddressInUseError
        assert "AcceptRetryError" in pydoc.render_doc(errors)
        print("ok")
    """, data.hex())
    assert out.strip() == "ok"


def test_star_import_creates_them():
    out = run_child("""
        from fastsock import *
        import fastsock
        assert AcceptTooManyOpenFilesError is fastsock.errors.AcceptTooManyOpenFilesError
        assert issubclass(AcceptTooManyOpenFilesError, AcceptCapacityError)
        assert callable(listen) and listen is fastsock.listen
        print("ok")
    """)
    assert out.strip() == "ok"


def test_threads_racing_for_the_first_error_share_one_set():
    out = run_child("""
        import errno, threading
        from fastsock import errors
        barrier = threading.Barrier(8)
        got = []
        def first_error():
            barrier.wait()
            got.append(type(errors.make_error(errno.EADDRINUSE, "bind")))
        threads = [threading.Thread(target=first_error) for _ in range(8)]
        for t in threads: t.start()
        for t in threads: t.join()
        assert got == [errors.AddressInUseError] * 8, got
        assert errors.ERRNO_CLASSES[errno.EADDRINUSE] is errors.AddressInUseError
        print("ok")
    """)
    assert out.strip() == "ok"


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="Linux descriptor limits")
def test_first_error_when_out_of_descriptors():
    """The classes are created from code already in memory: the very first
    error of a process that has run out of descriptors is still typed."""
    out = run_child("""
        import os, resource, fastsock
        server = fastsock.listen(("127.0.0.1", 0), 8)
        client = fastsock.create_connection(server.getsockname())
        lowest_free = os.dup(0)
        os.close(lowest_free)
        hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
        resource.setrlimit(resource.RLIMIT_NOFILE, (lowest_free, hard))  # no new descriptor
        assert "AddressInUseError" not in vars(fastsock.errors)
        try:
            server.accept()
        except fastsock.AcceptCapacityError as e:
            print(type(e).__name__)
    """)
    assert out.strip() == "AcceptTooManyOpenFilesError"


def test_type_checker_declarations_match_the_classes():
    """errors.py declares the lazily created classes for type checkers under
    ``if TYPE_CHECKING:``; names and bases must be those created at run time."""
    with open(errors.__file__, encoding="utf-8") as f:
        tree = ast.parse(f.read())
    declared = {}
    defined_at_import = set()
    for node in tree.body:
        if isinstance(node, ast.ClassDef):
            defined_at_import.add(node.name)
        elif (isinstance(node, ast.If) and isinstance(node.test, ast.Name)
              and node.test.id == "TYPE_CHECKING"):
            declared.update({c.name: [ast.unparse(b) for b in c.bases]
                             for c in node.body if isinstance(c, ast.ClassDef)})
    public_classes = {n for n in errors.__all__ if isinstance(getattr(errors, n), type)}
    assert set(declared) == public_classes - defined_at_import
    for name, bases in declared.items():
        assert bases == [b.__name__ for b in getattr(errors, name).__bases__], name
