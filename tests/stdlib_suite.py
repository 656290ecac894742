"""Run CPython's own test suites with ``socket`` replaced by fastsock.

    python3 tests/stdlib_suite.py [--fastsock] [--out FILE] [--exclude TEXT]...
                                  [--per-test-timeout SECONDS] [--resources R,R]
                                  SPEC [SPEC ...]

SPEC is a test module (``test.test_selectors``) or a module and a
comma-separated list of names in it (``test.test_socket:BasicTCPTest,BasicUDPTest``).
With ``--fastsock`` the first thing this script does is
``import fastsock, sys; sys.modules['socket'] = fastsock``, so every module
imported afterwards (the test module, ``test.support``, ``socketserver``,
``http.server``, ``asyncio``, ...) gets fastsock where it imports ``socket``.
Without it the same tests run against the stdlib, for comparison.

Output (stdout, or FILE): JSON lines.  The first is
``{"socket_module": ..., "socket_class": ...}``; then ``{"start": id}`` before
each test and ``{"id": id, "outcome": ..., "detail": ..., "time": seconds}``
after it, so a test that hangs is named by its unmatched ``start``.  Outcomes: ok, fail,
error, skip, xfail, xpass.  ``--exclude`` drops tests whose id contains TEXT
(in both runs: tests that cannot work in this environment).  A test running
longer than ``--per-test-timeout`` (default 60 s) ends the process after
faulthandler dumped the stacks; so does anything between tests (class and
module set-up and tear-down, the interpreter's exit waiting for a thread a
test left behind) that takes as long.  ``test.support.use_resources`` is the
``--resources`` list (default: none).
"""

import sys

if "--fastsock" in sys.argv:
    import fastsock
    sys.modules["socket"] = fastsock

import faulthandler  # noqa: E402
import importlib  # noqa: E402
import json  # noqa: E402
import time  # noqa: E402
import traceback  # noqa: E402
import unittest  # noqa: E402


class _Recorder(unittest.TestResult):
    """Writes one JSON line per test; a failing tearDown turns ok into error."""

    def __init__(self, out, per_test_timeout):
        super().__init__()
        self.out = out
        self.per_test_timeout = per_test_timeout
        self.current = {}

    def _emit(self, obj):
        self.out.write(json.dumps(obj) + "\n")
        self.out.flush()

    def startTest(self, test):
        super().startTest(test)
        self.current = {"id": test.id(), "outcome": "ok", "detail": "",
                        "started": time.monotonic()}
        self._emit({"start": test.id()})
        faulthandler.dump_traceback_later(self.per_test_timeout, exit=True)

    def stopTest(self, test):
        # re-armed, not cancelled: what runs until the next startTest (class
        # and module tear-down and set-up, the exit) is bounded the same way
        faulthandler.dump_traceback_later(self.per_test_timeout, exit=True)
        super().stopTest(test)
        if self.current:
            self.current["time"] = round(time.monotonic() - self.current.pop("started"), 3)
            self._emit(self.current)
        self.current = {}

    def _put(self, test, outcome, detail=""):
        if self.current.get("id") == test.id():
            if self.current["outcome"] in ("ok", "skip") or outcome in ("fail", "error"):
                self.current.update(outcome=outcome, detail=detail)
        else:                           # setUpClass/setUpModule failures
            self._emit({"id": test.id() if hasattr(test, "id") else str(test),
                        "outcome": outcome, "detail": detail})

    def addFailure(self, test, err):
        self._put(test, "fail", self._tb(err))

    def addError(self, test, err):
        self._put(test, "error", self._tb(err))

    def addSkip(self, test, reason):
        self._put(test, "skip", reason)

    def addExpectedFailure(self, test, err):
        self._put(test, "xfail")

    def addUnexpectedSuccess(self, test):
        self._put(test, "xpass")

    def addSubTest(self, test, subtest, err):
        if err is not None:
            kind = "fail" if issubclass(err[0], test.failureException) else "error"
            self._put(test, kind, f"{subtest.id()}: {self._tb(err)}")

    @staticmethod
    def _tb(err):
        return "".join(traceback.format_exception(*err))[-3000:]


def _tests(suite):
    for t in suite:
        if isinstance(t, unittest.TestSuite):
            yield from _tests(t)
        else:
            yield t


def _load(spec, exclude):
    modname, _, names = spec.partition(":")
    module = importlib.import_module(modname)
    loader = unittest.TestLoader()
    if names:
        suite = unittest.TestSuite(loader.loadTestsFromName(n, module)
                                   for n in names.split(","))
    else:
        suite = loader.loadTestsFromModule(module)
    return unittest.TestSuite(t for t in _tests(suite)
                              if not any(x in t.id() for x in exclude))


def main(argv):
    opts = {"--out": None, "--per-test-timeout": "60", "--resources": ""}
    exclude, specs = [], []
    args = iter(argv)
    for a in args:
        if a == "--exclude":
            exclude.append(next(args))
        elif a in opts:
            opts[a] = next(args)
        elif a != "--fastsock":
            specs.append(a)
    out = open(opts["--out"], "w") if opts["--out"] else sys.stdout
    import test.support
    # the same in both runs; "network" only for suites that refuse to load
    # without it (they use loopback; tests that need the internet still skip)
    test.support.use_resources = [r for r in opts["--resources"].split(",") if r]
    test.support.verbose = False
    import socket
    rec = _Recorder(out, float(opts["--per-test-timeout"]))
    rec._emit({"socket_module": socket.__name__,
               "socket_class": f"{socket.socket.__module__}.{socket.socket.__qualname__}"})
    for spec in specs:
        _load(spec, exclude).run(rec)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
