"""The README is the user's manual: every Python example in it runs, and its
exception table says what fastsock.errors does."""

import errno
import pathlib
import re
import subprocess
import sys

import pytest

from fastsock import errors as E

README = pathlib.Path(__file__).resolve().parent.parent / "README.md"


def _readme():
    if not README.exists():  # tests copied out of the tree (wheel checks)
        pytest.skip("README.md is not beside the tests")
    return README.read_text(encoding="utf-8")


def _examples():
    if not README.exists():
        return []
    return re.findall(r"```python\n(.*?)```", README.read_text(encoding="utf-8"), re.S)


@pytest.mark.parametrize("index", range(len(_examples())))
def test_python_example_runs(index, tmp_path):
    code = _examples()[index]
    p = subprocess.run([sys.executable, "-W", "error::ResourceWarning", "-c", code],
                       cwd=tmp_path, capture_output=True, text=True, timeout=60)
    assert p.returncode == 0, f"example {index} failed:\n{code}\n{p.stderr}"


def test_there_are_examples():
    _readme()
    assert len(_examples()) >= 5


def _error_rows():
    rows = {}
    for line in _readme().splitlines():
        m = re.match(r"\| (E[A-Z]+)(?: / (E[A-Z]+))?(?: \([^)]*\))? \| `(\w+)` \| (.*?) \| (.*?) \|$",
                     line)
        if m:
            for name in filter(None, m.group(1, 2)):
                rows[name] = (m.group(3), m.group(4), m.group(5))
    return rows


def test_exception_table_matches_the_errors_module():
    rows = _error_rows()
    assert rows, "no exception table found"
    documented = set()
    for name, (cls_name, builtin, accept) in rows.items():
        num = getattr(errno, name, None)
        if num is None:
            continue  # an errno this platform does not have
        documented.add(num)
        cls = getattr(E, cls_name)
        assert E.ERRNO_CLASSES[num] is cls, name
        parents = {b.__name__ for b in cls.__mro__ if b.__module__ == "builtins"}
        for b in re.findall(r"`(\w+)`", builtin):
            assert b in parents, (name, b)
        acc = type(E.make_error(num, "accept"))
        expect = {"retry now": E.AcceptRetryError, "back off": E.AcceptCapacityError}.get(accept)
        if expect is None:
            assert not issubclass(acc, (E.AcceptRetryError, E.AcceptCapacityError)), name
        else:
            assert issubclass(acc, expect), name
    # and every errno class the module knows is documented
    assert set(E.ERRNO_CLASSES) <= documented
