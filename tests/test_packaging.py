"""Packaging facts of the installed distribution.

These hold for every way the suite runs: the editable install of the README
command, the wheel in .ci/dist-check, .ci/multi-python, and every wheel
cibuildwheel builds and tests.  Facts that only a built wheel can show (what
its RECORD lists) are skipped for an editable install.
"""

import importlib.machinery
import importlib.metadata
import json
import pathlib
import sys
import sysconfig

import pytest

import fastsock
import fastsock._core


def _installed() -> importlib.metadata.Distribution:
    # The installed .dist-info (it has a RECORD), not a fastsock.egg-info a
    # build left in the source tree, which sys.path may also reach.
    for dist in importlib.metadata.distributions(name="fastsock"):
        if dist.read_text("RECORD") is not None:
            return dist
    pytest.fail("fastsock is not installed (no .dist-info with a RECORD)")


DIST = _installed()
PACKAGE_DIR = pathlib.Path(fastsock.__file__).resolve().parent


def _editable() -> bool:
    direct_url = DIST.read_text("direct_url.json")
    return bool(direct_url and json.loads(direct_url).get("dir_info", {}).get("editable"))


def _record() -> list[str]:
    if _editable():
        pytest.skip("editable install: the package files are not in RECORD")
    return [f.as_posix() for f in DIST.files or ()]


def test_version_matches_distribution_metadata():
    assert fastsock.__version__ == DIST.version == importlib.metadata.version("fastsock")


def test_no_runtime_dependencies():
    # Requires-Dist entries may only come from extras (test, check).
    for requirement in DIST.requires or ():
        _, _, marker = requirement.partition(";")
        assert "extra ==" in marker, f"runtime dependency: {requirement}"


def test_requires_python():
    assert DIST.metadata["Requires-Python"] == ">=3.11"


def test_core_is_a_compiled_extension():
    assert fastsock._core.__file__.endswith(tuple(importlib.machinery.EXTENSION_SUFFIXES))


def test_typing_files_next_to_the_core():
    core_dir = pathlib.Path(fastsock._core.__file__).resolve().parent
    assert core_dir == PACKAGE_DIR
    assert (core_dir / "_core.pyi").is_file()
    assert (core_dir / "py.typed").is_file()


def test_wheel_ships_typing_files_and_the_compiled_core():
    record = _record()
    assert "fastsock/_core.pyi" in record
    assert "fastsock/py.typed" in record
    assert any(
        name.startswith("fastsock/_core.") and name.endswith(tuple(importlib.machinery.EXTENSION_SUFFIXES))
        for name in record
    ), record


def test_wheel_ships_no_build_sources():
    record = _record()
    sources = [name for name in record if name.endswith((".pyx", ".pxd", ".c", ".h"))]
    assert sources == []
    assert not [name for name in record if name.startswith(("tests/", "csrc/"))]


def test_console_script_entry_point_loads():
    (entry_point,) = [ep for ep in DIST.entry_points if ep.group == "console_scripts" and ep.name == "fastsock"]
    assert callable(entry_point.load())


@pytest.mark.skipif(not sysconfig.get_config_var("Py_GIL_DISABLED"), reason="not a free-threaded build")
def test_free_threaded_build_keeps_the_gil_disabled():
    # The core declares freethreading_compatible; importing it (done above)
    # must not re-enable the GIL.
    assert not sys._is_gil_enabled()
