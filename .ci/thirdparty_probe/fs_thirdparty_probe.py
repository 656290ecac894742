"""Outcome recorder for .ci/thirdparty, loaded into the third-party test process.

As a pytest plugin (``-p fs_thirdparty_probe``) it records every test's outcome
(passed, failed, skipped, xfailed, xpassed, error, with ``+error`` for a failing
teardown), collection errors and, from inside the test process, which socket
module the tests saw.  ``fs_thirdparty_trial`` does the same for trial.  The
record is JSON, written to $FS_THIRDPARTY_OUT when the session ends.
"""
import json
import os
import sys


def socket_check():
    """What ``import socket`` gives in this process, and which modules (other
    than fastsock's own) still hold the stdlib module or its socket class."""
    mod = sys.modules.get("socket")
    fs = sys.modules.get("fastsock")
    real = getattr(sys.modules.get("sitecustomize"), "STDLIB_SOCKET", None)
    refs = []
    if real is not None and real is not fs:
        targets = (real, getattr(real, "socket", real))
        for name, m in list(sys.modules.items()):
            owner = getattr(m, "__name__", name)
            if m is fs or name == "sitecustomize" or owner.split(".")[0] == "fastsock":
                continue
            try:
                items = list(vars(m).items())
            except TypeError:
                continue
            refs += [f"{name}.{key}" for key, value in items
                     if any(value is t for t in targets)]
    return {
        "socket_module": getattr(mod, "__name__", repr(mod)),
        "socket_is_fastsock": bool(fs is not None and mod is fs
                                   and getattr(mod, "socket", None) is fs.socket),
        "stdlib_refs": sorted(refs),
    }


def write_record(tests, collect_errors, exitstatus):
    """tests: {id: {"outcome", "message", "rerun"}}."""
    record = {"tests": tests, "collect_errors": collect_errors,
              "exitstatus": exitstatus, "check": socket_check()}
    with open(os.environ["FS_THIRDPARTY_OUT"], "w", encoding="utf-8") as f:
        json.dump(record, f, indent=1, sort_keys=True)


def _message(report):
    crash = getattr(report.longrepr, "reprcrash", None)
    if crash is not None:
        return crash.message
    if isinstance(report.longrepr, tuple):      # skip: (file, line, reason)
        return str(report.longrepr[2])
    return str(report.longreprtext)[-2000:]


_tests = {}
_ids = {}            # nodeid -> (id recorded, id for the re-run)
_collect_errors = []


def pytest_itemcollected(item):
    rest = item.nodeid.split("::")[1:]
    tid = item.nodeid
    if tid.startswith("::"):         # outside the rootdir (--pyargs): name the module
        mod = getattr(getattr(item, "module", None), "__name__", str(item.path))
        tid = "::".join([mod] + rest)
    # The re-run id: one pytest accepts as an argument from any directory.
    _ids[item.nodeid] = (tid, "::".join([str(item.path)] + rest))


def pytest_collectreport(report):
    if report.failed:
        _collect_errors.append({"id": report.nodeid, "message": str(report.longreprtext)[-3000:]})


def pytest_runtest_logreport(report):
    tid, rerun = _ids.get(report.nodeid, (report.nodeid, report.nodeid))
    t = _tests.setdefault(tid, {"outcome": None, "message": "", "rerun": rerun})
    xfail = hasattr(report, "wasxfail")
    if report.when == "setup":
        if report.failed:
            t["outcome"], t["message"] = "error", _message(report)
        elif report.skipped:
            t["outcome"] = "xfailed" if xfail else "skipped"
            t["message"] = _message(report)
    elif report.when == "call":
        if report.passed:
            t["outcome"] = "xpassed" if xfail else "passed"
        elif report.skipped:
            t["outcome"] = "xfailed" if xfail else "skipped"
        else:
            t["outcome"], t["message"] = "failed", _message(report)
    elif report.failed:                          # teardown
        t["outcome"] = f"{t['outcome'] or 'passed'}+error"
        t["message"] = (t["message"] + "\n[teardown] " + _message(report)).strip()


def pytest_sessionfinish(session, exitstatus):
    write_record(_tests, _collect_errors, int(exitstatus))
