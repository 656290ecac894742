"""trial reporter for .ci/thirdparty (``--reporter=fsprobe``, registered by
twisted/plugins/fs_thirdparty_plugin.py next to this file): trial's verbose
output plus a JSON record of every test's outcome (see fs_thirdparty_probe)."""
from twisted.trial import reporter, runner

from fs_thirdparty_probe import write_record


def _text(err):
    value = getattr(err, "value", None)
    if value is None and isinstance(err, tuple):
        value = err[1]
    return f"{type(value).__name__}: {value}"[:2000] if value is not None else str(err)[:2000]


class ProbeReporter(reporter.VerboseTextReporter):
    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self._tests = {}
        self._collect_errors = []

    def _set(self, test, outcome, message=""):
        tid = test.id()
        t = self._tests.get(tid)
        if t is None:
            self._tests[tid] = {"outcome": outcome, "message": message, "rerun": tid}
        else:                                    # a second report: cleanup error
            t["outcome"] += "+" + outcome
            t["message"] = (t["message"] + "\n" + message).strip()

    def addSuccess(self, test):
        super().addSuccess(test)
        self._set(test, "passed")

    def addFailure(self, test, fail):
        super().addFailure(test, fail)
        self._set(test, "failed", _text(fail))

    def addError(self, test, error):
        super().addError(test, error)
        if isinstance(test, runner.ErrorHolder):  # import or loader error
            self._collect_errors.append({"id": test.id(), "message": _text(error)})
        else:
            self._set(test, "error", _text(error))

    def addSkip(self, test, reason):
        super().addSkip(test, reason)
        self._set(test, "skipped", str(reason)[:500])

    def addExpectedFailure(self, test, failure, todo=None):
        super().addExpectedFailure(test, failure, todo)
        self._set(test, "xfailed")

    def addUnexpectedSuccess(self, test, todo=None):
        super().addUnexpectedSuccess(test, todo)
        self._set(test, "xpassed")

    def done(self):
        super().done()
        write_record(self._tests, self._collect_errors, 0 if self.wasSuccessful() else 1)
