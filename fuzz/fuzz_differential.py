"""Coverage-guided fuzzing (atheris/libFuzzer) of the drop-in promise: the
fuzz bytes choose a sequence of calls (tests/_differential.py, the engine of
tests/test_differential.py) run on a stdlib socket world and a fastsock
world side by side; any outcome that differs (return value, exception
class/str/args/errno/strerror/filename/filename2/notes, warnings, reprs)
other than the documented differences in ``_differential.ALLOWED`` is a
finding, as is a leaked file descriptor or a crash.

Run it through ``fuzz/run_short.sh`` (FUZZ_TARGET=fuzz_differential), or::

    python fuzz/fuzz_differential.py -max_total_time=60

No name resolution: every host is a numeric literal or refused before any
look-up; everything runs on loopback or in temporary directories.
"""

from __future__ import annotations

import os
import sys

import atheris

HERE = os.path.dirname(os.path.abspath(__file__))
for _p in (os.path.join(HERE, "..", "tests"), HERE):
    if os.path.exists(os.path.join(_p, "_differential.py")):
        sys.path.insert(0, _p)
        break

from _lo import lo_up  # noqa: E402

with atheris.instrument_imports():
    import fastsock  # noqa: F401
    import _differential as D

MAX_OPS = 16


def TestOneInput(data: bytes) -> None:
    fdp = atheris.FuzzedDataProvider(data)

    def choose(seq):
        seq = list(seq)
        return seq[fdp.ConsumeIntInRange(0, len(seq) - 1)]

    n = fdp.ConsumeIntInRange(1, MAX_OPS)
    ops: list = []
    inner = D.sequence(choose, n)

    def build(families):
        op = inner(families)
        if op is not None:
            ops.append(op)
        return op

    before = D.fd_count()
    try:
        D.run_sequence(build)
    except D.Difference as e:
        seq = "\n".join(f"  call {i + 1}: {D.describe(o)}" for i, o in enumerate(ops))
        raise AssertionError(f"{e}\nsequence:\n{seq}") from None
    after = D.fd_count()
    if after != before:
        raise AssertionError(f"file descriptors leaked: {before} -> {after}")


def main() -> None:
    lo_up()
    atheris.Setup(sys.argv, TestOneInput)
    atheris.Fuzz()


if __name__ == "__main__":
    main()
