"""import fastsock vs import socket, each in a fresh interpreter.

    python benchmarks/bench_import.py [--rounds 41]

Each round starts, for each variant (the order rotates every round), a new
interpreter that imports one module and reports how long the import
statement took (perf_counter_ns around it, so interpreter start-up is not in
the figure); the whole process is timed too, and a bare interpreter
(``-c pass``) is run in the same round so its start-up can be subtracted.
Both are measured twice:

  site     python -c "import X": what a user gets here (site runs first and may
           have imported modules that X needs, e.g. an editable install's finder)
  -S       python -S -c "import X" with PYTHONPATH naming fastsock's directory:
           no site, so nothing is preloaded and X pays for everything it imports

Bytecode is cached, as after "pip install": the runs use a private
PYTHONPYCACHEPREFIX (a temporary directory, filled by a warm-up run) with
PYTHONDONTWRITEBYTECODE unset, so an environment that disables .pyc files
does not charge fastsock (a source tree) for compiling while the stdlib
(installed with its .pyc) pays nothing.

Printed: medians in milliseconds, and fastsock minus socket, with and without
site (target: at most 3 ms more in both).
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time

import _common as C

CODE = ("import time; t = time.perf_counter_ns(); import {mod}; "
        "print(time.perf_counter_ns() - t)")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rounds", type=int, default=41)
    args = ap.parse_args(argv)
    C.header("import fastsock vs import socket, fresh interpreter per run",
             rounds=args.rounds)

    import fastsock  # where it is, for the -S runs
    pkg_parent = os.path.dirname(os.path.dirname(os.path.abspath(fastsock.__file__)))
    tmp = C.tempdir()
    env = dict(os.environ, PYTHONPYCACHEPREFIX=tmp.name)
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    env_s = dict(env, PYTHONPATH=pkg_parent)

    def run(mod: str | None, no_site: bool) -> tuple[float, float]:
        code = "pass" if mod is None else CODE.format(mod=mod)
        cmd = [sys.executable, *(["-S"] if no_site else []), "-c", code]
        t0 = time.perf_counter_ns()
        out = subprocess.run(cmd, capture_output=True, text=True,
                             env=env_s if no_site else env, check=True).stdout
        wall = (time.perf_counter_ns() - t0) / 1e6
        return (int(out) / 1e6 if mod else 0.0), wall

    samples: dict[str, list[tuple[float, float]]] = {}

    def variant(name: str, mod: str | None, no_site: bool):
        def go() -> float:
            r = run(mod, no_site)
            samples.setdefault(name, []).append(r)
            return r[1]
        return go

    def drop_warmup() -> None:
        for xs in samples.values():
            del xs[0]

    variants = {}
    for flag, no_site in (("site", False), ("-S", True)):
        variants[f"bare interpreter ({flag})"] = variant(f"bare {flag}", None, no_site)
        variants[f"import socket ({flag})"] = variant(f"socket {flag}", "socket", no_site)
        variants[f"import fastsock ({flag})"] = variant(f"fastsock {flag}", "fastsock",
                                                         no_site)
    try:
        C.interleave(args.rounds, variants, warmup=1)   # the warm-up writes the .pyc
    finally:
        tmp.cleanup()
    drop_warmup()
    print(f"{'':<10} {'import socket':>14} {'import fastsock':>16} {'difference':>11}"
          f"   (ms, median of {args.rounds})")
    for flag in ("site", "-S"):
        sock = samples[f"socket {flag}"]
        fast = samples[f"fastsock {flag}"]
        bare = samples[f"bare {flag}"]
        ins = C.median([s[0] for s in sock]), C.median([f[0] for f in fast])
        print(f"{flag:<10} {ins[0]:14.2f} {ins[1]:16.2f} {ins[1] - ins[0]:+11.2f}"
              "   in-process import statement")
        # whole process minus the bare interpreter of the same round
        ws = C.median([s[1] - b[1] for s, b in zip(sock, bare)])
        wf = C.median([f[1] - b[1] for f, b in zip(fast, bare)])
        print(f"{flag:<10} {ws:14.2f} {wf:16.2f} {wf - ws:+11.2f}"
              "   process wall time minus bare interpreter")
    for flag in ("site", "-S"):
        d = C.median([f[0] for f in samples[f"fastsock {flag}"]]) - \
            C.median([s[0] for s in samples[f"socket {flag}"]])
        print(f"import fastsock - import socket ({flag}, in-process): {d:+.2f} ms"
              "   target <= +3.00")
    return 0


if __name__ == "__main__":
    sys.exit(main())
