"""Third-party suites, stdlib socket vs fastsock swapped in (run by .ci/thirdparty).

    python .ci/thirdparty.py --work DIR [--only NAME]... [--report FILE]

Run with the interpreter of a venv that has fastsock installed.  For each suite
in SUITES: install its packages (pinned by .ci/thirdparty-constraints.txt), fetch
its sdist when its tests live there, run its socket-related tests under its own
pytest/trial configuration twice, with the stdlib socket module and with fastsock
swapped in by thirdparty_swap/sitecustomize.py, and compare the outcome of every
test.  A test whose outcome differs is re-run once more in both modes; it counts
as a difference when the re-runs differ too (otherwise it is reported as flaky).
Fails on any difference, on a run that crashed, timed out, collected nothing or
had a collection error, and when the swap did not take effect inside the test
process (the probe records ``socket.socket is fastsock.socket`` there).
"""
import argparse
import collections
import json
import os
import shutil
import signal
import subprocess
import sys
import tarfile
import time
from dataclasses import dataclass, field

HERE = os.path.dirname(os.path.abspath(__file__))
CONSTRAINTS = os.path.join(HERE, "thirdparty-constraints.txt")
MODES = ("stdlib", "fastsock")
RERUN_MAX = 200          # differing tests re-run per suite; more is a difference anyway
RERUN_TIMEOUT = 240
DEADLINE = [float("inf")]   # time.monotonic() by which every run must have ended (--budget)


@dataclass
class Suite:
    name: str
    packages: list              # pip requirements (pinned by the constraints file)
    runner: str                 # "pytest" or "trial"
    tests: list                 # test selection (modules, files)
    opts: list = field(default_factory=list)   # runner options ({sdist} expanded)
    sdist: str = ""             # project whose sdist holds the tests/config
    in_sdist: bool = False      # run from the unpacked sdist's root
    timeout: int = 180          # seconds per run


# One line per suite.
SUITES = [
    Suite("trio", ["trio", "pytest", "trustme", "pyOpenSSL", "cryptography"], "pytest",
          ["trio._tests.test_socket", "trio._tests.test_highlevel_open_tcp_listeners",
           "trio._tests.test_highlevel_open_tcp_stream", "trio._tests.test_highlevel_socket",
           "trio._tests.test_highlevel_open_unix_stream", "trio._tests.test_highlevel_serve_listeners",
           "trio._tests.test_highlevel_ssl_helpers", "trio._tests.test_ssl", "trio._tests.test_dtls",
           "trio._core._tests.test_io"],
          opts=["-c", "{sdist}/pyproject.toml", "--pyargs"], sdist="trio", timeout=120),
    Suite("anyio", ["anyio", "trio", "pytest", "pytest-mock", "pytest-timeout", "trustme",
                    "truststore", "blockbuster", "hypothesis", "psutil", "uvloop"], "pytest",
          ["tests/test_sockets.py", "tests/streams/test_tls.py"], sdist="anyio", in_sdist=True,
          timeout=240),
    Suite("twisted", ["Twisted[test,tls]"], "trial",
          ["twisted.internet.test.test_tcp", "twisted.internet.test.test_unix",
           "twisted.internet.test.test_socket", "twisted.test.test_tcp", "twisted.test.test_unix",
           "twisted.test.test_loopback"], timeout=120),
    # --no-cov: their configurations measure coverage, which changes no outcome and
    # takes 4/5 of the time.  cheroot: -n 0 overrides its -n auto (xdist) so the tests
    # run in the process the probe checks; test_ssl.py is left out (hangs here with
    # the stdlib too).
    Suite("waitress", ["waitress", "pytest", "pytest-cov", "coverage"], "pytest",
          ["tests"], opts=["--no-cov"], sdist="waitress", in_sdist=True, timeout=120),
    Suite("cheroot", ["cheroot", "requests", "chardet", "jaraco.context", "jaraco.text",
                      "portend", "pyOpenSSL", "pypytools", "pytest-cov", "pytest-mock",
                      "pytest-rerunfailures", "pytest-xdist", "requests-unixsocket",
                      "requests_toolbelt", "trustme"], "pytest",
          [f"cheroot/test/test_{m}.py" for m in ("conn", "core", "server", "wsgi", "errors", "makefile")],
          opts=["-n", "0", "--no-cov"], sdist="cheroot", in_sdist=True, timeout=180),
]


def say(*args):
    print(*args, flush=True)


def pip(*args):
    subprocess.run([sys.executable, "-m", "pip", "--disable-pip-version-check", *args], check=True)


def fetch_sdist(project, dest):
    """Unpack the pinned sdist of project under dest; return its root."""
    dl = os.path.join(dest, "download")
    os.makedirs(dl, exist_ok=True)
    pip("download", "-q", "--no-binary", ":all:", "--no-deps", "-c", CONSTRAINTS, "-d", dl, project)
    [archive] = [f for f in os.listdir(dl) if f.endswith(".tar.gz")]   # --no-deps: just one
    with tarfile.open(os.path.join(dl, archive)) as tar:
        tar.extractall(dest, filter="data")
    return os.path.join(dest, archive[: -len(".tar.gz")])


def command(suite, sdist_root, tests):
    opts = [o.replace("{sdist}", sdist_root or "") for o in suite.opts]
    if suite.runner == "pytest":
        return [sys.executable, "-m", "pytest", "-p", "fs_thirdparty_probe", "-p", "no:cacheprovider",
                *opts, *tests]
    if suite.runner == "trial":
        return [sys.executable, "-m", "twisted.trial", "--reporter=fsprobe", *opts, *tests]
    raise ValueError(f"unknown runner {suite.runner!r}")


def start(suite, mode, tests, tag, work, support, sdist_root):
    """Start one run; returns (process, record path, log path, start time)."""
    rundir = os.path.join(work, f"run-{suite.name}-{mode}-{tag}")
    os.makedirs(rundir, exist_ok=True)
    record = os.path.join(rundir, "record.json")
    log = os.path.join(rundir, "log.txt")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTHON", "PYTEST"))}
    path = [os.path.join(support, "probe")]
    if mode == "fastsock":
        path.insert(0, os.path.join(support, "swap"))
    env.update(PYTHONPATH=os.pathsep.join(path), FS_THIRDPARTY_OUT=record,
               PYTHONDONTWRITEBYTECODE="1")
    cwd = sdist_root if suite.in_sdist else rundir
    with open(log, "wb") as out:
        proc = subprocess.Popen(command(suite, sdist_root, tests), cwd=cwd, env=env, stdout=out,
                                stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                start_new_session=True)
    return proc, record, log, time.monotonic()


def finish(run, timeout):
    """Wait for a run; returns (record or None, seconds, problem or None)."""
    proc, record, log, t0 = run
    problem = None
    if t0 + timeout > DEADLINE[0]:
        timeout = max(1, int(DEADLINE[0] - t0))
    try:
        proc.wait(timeout=max(1, timeout - (time.monotonic() - t0)))
    except subprocess.TimeoutExpired:
        problem = f"timed out after {timeout} s"
    try:                                   # the run's whole session: children too
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    proc.wait()
    took = time.monotonic() - t0
    rec = None
    if os.path.exists(record):
        with open(record, encoding="utf-8") as f:
            rec = json.load(f)
    elif problem is None:
        problem = f"exit {proc.returncode} without an outcome record (crashed?)"
    if problem:
        with open(log, encoding="utf-8", errors="replace") as f:
            tail = f.read()[-3000:]
        problem += f"; log {log} ends:\n{tail}"
    return rec, took, problem


def run_modes(suite, tests, tag, work, support, sdist_root, timeout, parallel):
    """Run both modes (side by side when parallel); {mode: (record, secs, problem)}."""
    if parallel:
        runs = {m: start(suite, m, tests, tag, work, support, sdist_root) for m in MODES}
        return {m: finish(runs[m], timeout) for m in MODES}
    return {m: finish(start(suite, m, tests, tag, work, support, sdist_root), timeout) for m in MODES}


def outcome(rec, tid):
    t = rec["tests"].get(tid)
    return (t["outcome"] or "unknown") if t else "absent"


def message(rec, tid):
    t = rec["tests"].get(tid)
    return (t or {}).get("message", "")


def check_swap(mode, rec):
    c = rec["check"]
    if mode == "stdlib" and c["socket_is_fastsock"]:
        return "stdlib run: socket.socket is fastsock.socket inside the test process"
    if mode == "fastsock":
        if not c["socket_is_fastsock"]:
            return (f"swapped run: socket.socket is not fastsock.socket inside the test process "
                    f"(socket module: {c['socket_module']})")
        if c["stdlib_refs"]:
            return ("swapped run: modules still hold the stdlib socket module or class: "
                    + ", ".join(c["stdlib_refs"][:20]))
    return None


def counts(rec):
    return dict(sorted(collections.Counter(
        (t["outcome"] or "unknown") for t in rec["tests"].values()).items()))


def clip(text, lines=12):
    text = (text or "").strip()
    parts = text.splitlines()
    if len(parts) > lines:
        text = "\n".join(parts[:lines] + [f"... ({len(parts) - lines} more lines)"])
    return "    " + text.replace("\n", "\n    ") if text else "    (no message)"


def run_suite(suite, work, support, parallel, report):
    """Returns a list of failure strings for the suite (empty: it passed)."""
    say(f"\n======== {suite.name}: {suite.runner} {' '.join(suite.tests)}")
    sdist_root = ""
    if suite.sdist:
        sdist_root = fetch_sdist(suite.sdist, os.path.join(work, "src", suite.name))
    t0 = time.monotonic()
    first = run_modes(suite, suite.tests, "full", work, support, sdist_root, suite.timeout, parallel)
    failures = []
    for mode, (rec, took, problem) in first.items():
        if problem:
            failures.append(f"{mode} run: {problem}")
            continue
        say(f"  {mode:8s} {took:6.1f} s  {sum(counts(rec).values())} tests {counts(rec)}")
        if not rec["tests"]:
            failures.append(f"{mode} run: no tests ran")
        for err in rec["collect_errors"]:
            failures.append(f"{mode} run: collection error in {err['id']}:\n{clip(err['message'])}")
        bad = check_swap(mode, rec)
        if bad:
            failures.append(bad)
        else:
            say(f"  {mode:8s} inside the test process: socket module = {rec['check']['socket_module']}, "
                f"socket.socket is fastsock.socket: {rec['check']['socket_is_fastsock']}")
    if failures:
        return failures
    recs = {m: first[m][0] for m in MODES}
    ids = sorted(set(recs["stdlib"]["tests"]) | set(recs["fastsock"]["tests"]))
    differing = [t for t in ids if outcome(recs["stdlib"], t) != outcome(recs["fastsock"], t)]
    say(f"  {len(ids)} test ids, {len(differing)} with differing outcomes in the full runs")
    confirmed, flaky = [], []
    if differing:
        rerun, rest = differing[:RERUN_MAX], differing[RERUN_MAX:]
        confirmed += [(t, None) for t in rest]
        if rest:
            say(f"  {len(rest)} differing tests beyond {RERUN_MAX} not re-run: counted as differences")
        rerun_ids = [recs["stdlib"]["tests"].get(t, recs["fastsock"]["tests"].get(t))["rerun"]
                     for t in rerun]
        say(f"  re-running {len(rerun)} differing tests in both modes (one after the other)")
        second = run_modes(suite, rerun_ids, "rerun", work, support, sdist_root, RERUN_TIMEOUT, False)
        for mode, (rec, took, problem) in second.items():
            if problem:
                failures.append(f"{mode} re-run: {problem}")
            else:
                say(f"  {mode:8s} re-run {took:6.1f} s  {counts(rec)}")
        if failures:
            return failures + [f"{len(differing)} tests differed in the full runs"]
        rerec = {m: second[m][0] for m in MODES}
        # The re-run's ids can differ from the full run's (a path instead of --pyargs):
        # map them through the rerun id every record keeps.
        by_rerun = {m: {v["rerun"]: k for k, v in rerec[m]["tests"].items()} for m in MODES}
        for t, rid in zip(rerun, rerun_ids):
            again = {m: by_rerun[m].get(rid) for m in MODES}
            o2 = {m: outcome(rerec[m], again[m]) if again[m] else "absent" for m in MODES}
            o1 = {m: outcome(recs[m], t) for m in MODES}
            if o2["stdlib"] != o2["fastsock"]:
                confirmed.append((t, {m: (o2[m], message(rerec[m], again[m] or "")) for m in MODES}))
            else:
                flaky.append((t, o1, o2))
    say(f"  total {time.monotonic() - t0:.1f} s")
    for t, o1, o2 in flaky:
        say(f"  FLAKY (not reproduced in the re-run): {t}: full run stdlib={o1['stdlib']} "
            f"fastsock={o1['fastsock']}; re-run both {o2['stdlib']}")
        report.append(f"[{suite.name}] flaky: {t}: full run stdlib={o1['stdlib']} "
                      f"fastsock={o1['fastsock']}, re-run both {o2['stdlib']}")
    for t, again in confirmed:
        o = {m: outcome(recs[m], t) for m in MODES}
        text = f"[{suite.name}] {t}: stdlib {o['stdlib']}, fastsock {o['fastsock']}"
        if again:
            text += f" (re-run: stdlib {again['stdlib'][0]}, fastsock {again['fastsock'][0]})"
        for m in MODES:
            msg = message(recs[m], t)
            if msg:
                text += f"\n  {m}:\n{clip(msg)}"
        failures.append(text)
        report.append(text)
    return failures


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--work", required=True)
    ap.add_argument("--only", action="append", help="run only this suite (repeatable)")
    ap.add_argument("--report", help="also write the differences and flaky tests here")
    ap.add_argument("--budget", type=int, default=480,
                    help="seconds for everything (runs are stopped at this deadline)")
    ap.add_argument("--serial", action="store_true",
                    help="run the two modes one after the other (default: side by side)")
    args = ap.parse_args()
    DEADLINE[0] = time.monotonic() + args.budget
    suites = [s for s in SUITES if not args.only or s.name in args.only]
    if not suites:
        sys.exit(f"no suite named {args.only}")
    work = os.path.abspath(args.work)
    os.makedirs(work, exist_ok=True)
    support = os.path.join(work, "support")    # copies: trial writes a plugin cache there
    shutil.rmtree(support, ignore_errors=True)
    shutil.copytree(os.path.join(HERE, "thirdparty_probe"), os.path.join(support, "probe"))
    shutil.copytree(os.path.join(HERE, "thirdparty_swap"), os.path.join(support, "swap"))

    import fastsock
    say(f"fastsock under test: {fastsock.__file__}")
    packages = sorted({p for s in suites for p in s.packages})
    t0 = time.monotonic()
    pip("install", "-q", "-c", CONSTRAINTS, *packages)
    say(f"installed {' '.join(packages)} ({time.monotonic() - t0:.0f} s)")

    report, summary, failed = [], [], 0
    for suite in suites:
        t1 = time.monotonic()
        problems = run_suite(suite, work, support, not args.serial, report)
        took = time.monotonic() - t1
        if problems:
            failed += 1
            say(f"\n{suite.name}: FAILED ({len(problems)} problem(s)):")
            for p in problems:
                say(p)
        summary.append(f"{suite.name:10s} {'FAIL' if problems else 'PASS'}  {took:6.1f} s"
                       + (f"  {len(problems)} problem(s)" if problems else ""))
    say("\n======== third-party suites, stdlib vs fastsock")
    for line in summary:
        say(line)
    if args.report:
        with open(args.report, "w", encoding="utf-8") as f:
            f.write("\n\n".join(report) + "\n")
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
