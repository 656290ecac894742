#!/usr/bin/env bash
# A short, bounded fuzzing run of fuzz/fuzz_core.py, fuzz/fuzz_differential.py and
# fuzz/fuzz_diag.py for CI.
#
#   bash fuzz/run_short.sh            # 60 s of fuzz_core, 60 of fuzz_differential, 30 of fuzz_diag
#   FUZZ_DIFF_SECONDS=120 FUZZ_DIAG_SECONDS=120 bash fuzz/run_short.sh   # their shares
#   bash fuzz/run_short.sh 600        # longer, by hand
#   FUZZ_DIR=/tmp/fz bash fuzz/run_short.sh   # keep venv, corpus and crashes there
#
# Installs atheris (from PyPI, into a venv of its own: it is not a test
# dependency) and fastsock built with -fsanitize=undefined; runs the harness
# inside a private network namespace when one
# can be made (`unshare -n`, root on Linux: host names then fail at once and
# nothing leaves the machine; elsewhere non-literal hosts are replaced by
# literals).  Exits non-zero on any finding (crash, sanitizer report,
# undocumented exception, failed property); crash inputs are kept in
# $FUZZ_DIR/artifacts-<target>.  If atheris cannot be installed for this Python, says
# so and exits 0 (FUZZ_REQUIRE_ATHERIS=1 makes that a failure).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
exec </dev/null

SECONDS_TO_FUZZ=${1:-${FUZZ_SECONDS:-60}}
PY=${PYTHON:-python3}
CC=${CC:-$(command -v gcc || command -v cc || true)}
say() { printf '%s\n' "$*"; }
die() { printf 'FAIL: %s\n' "$*" >&2; exit 1; }

if [[ -n ${FUZZ_DIR:-} ]]; then
    WORK=$FUZZ_DIR
    mkdir -p "$WORK"
else
    WORK=$(mktemp -d "${TMPDIR:-/tmp}/fastsock-fuzz.XXXXXX")
    trap 'rm -rf "$WORK"' EXIT
fi
VENV=$WORK/venv VPY=$WORK/venv/bin/python

[[ -x $VPY ]] || "$PY" -m venv "$VENV"
if ! "$VPY" -m pip install -q atheris >"$WORK/pip-atheris.log" 2>&1; then
    tail -5 "$WORK/pip-atheris.log"
    msg="atheris did not install for $("$PY" -V 2>&1) on $(uname -sm)"
    [[ ${FUZZ_REQUIRE_ATHERIS:-0} == 1 ]] && die "$msg"
    say "SKIPPED: $msg"
    exit 0
fi
say "atheris $("$VPY" -c 'import importlib.metadata as m; print(m.version("atheris"))')"

# fastsock, built from a copy of the tree with UndefinedBehaviorSanitizer.
# Not with ASan: a preloaded libasan takes over the coverage callbacks and
# libFuzzer then runs blind (ASan covers the same inputs in .ci/sanitize,
# through tests/test_hostile_input.py).  With clang, the C code is also
# instrumented for coverage (-fsanitize=fuzzer-no-link); gcc cannot emit the
# counters libFuzzer reads, so there coverage is the Python layer's.
if [[ -z ${CC_FUZZ:-} ]] && command -v clang >/dev/null; then CC_FUZZ=clang; fi
CC_FUZZ=${CC_FUZZ:-$CC}
if [[ $CC_FUZZ == *clang* ]]; then
    sanflags="-fsanitize=fuzzer-no-link -fsanitize=undefined -fsanitize-trap=undefined -g -O1"
else
    sanflags="-fsanitize=undefined -fno-sanitize-recover=undefined -g -O1"
fi
rm -rf "$WORK/src"
mkdir -p "$WORK/src"
cp -R fastsock csrc setup.py pyproject.toml "$WORK/src"/
for f in README.md MANIFEST.in LICENSE; do [[ -e $f ]] && cp "$f" "$WORK/src"/; done
find "$WORK/src" \( -name '*.so' -o -name '__pycache__' -o -name '_core.c' \) -prune -exec rm -rf {} +
"$VPY" -m pip install -q "setuptools>=77" "Cython>=3.1" wheel
(cd "$WORK/src" && CC=$CC_FUZZ CFLAGS="$sanflags" LDFLAGS="$sanflags" \
    "$VPY" -m pip install -q --no-build-isolation --no-deps --force-reinstall .) \
    || die "building fastsock for fuzzing failed"
say "fastsock built by $CC_FUZZ with: $sanflags"

# Each target gets a private copy of its seed corpus (libFuzzer adds what it
# finds to it) and its own crash directory.
cp fuzz/_lo.py tests/_differential.py "$WORK"/     # what fuzz_differential imports
export FUZZ_RESOLVE=0
netns=()
if [[ $(uname -s) == Linux && $(id -u) == 0 ]] && command -v unshare >/dev/null \
        && unshare -n true 2>/dev/null; then
    export FUZZ_RESOLVE=1
    netns=(unshare -n --)
    say "running in a private network namespace (host names resolve nowhere)"
fi
export UBSAN_OPTIONS="halt_on_error=1:print_stacktrace=1"

# fuzz_one TARGET CORPUS SECONDS [LIBFUZZER-OPTION...]
fuzz_one() {
    local target=$1 corpus=$WORK/$2 art=$WORK/artifacts-${1%.py} log=$WORK/${1%.py}.log
    local secs=$3
    shift 3
    mkdir -p "$corpus" "$art"
    cp "fuzz/${corpus##*/}"/* "$corpus"/ 2>/dev/null || true
    cp "fuzz/$target" "$WORK/$target"
    local run=("${netns[@]}" "$VPY" "$WORK/$target" -max_total_time="$secs" -timeout=20
               -rss_limit_mb=4096 -print_final_stats=1 -artifact_prefix="$art/" "$@" "$corpus")
    say "fuzzing $target for $secs s: ${run[*]}"
    local rc=0
    (cd "$WORK" && timeout --kill-after=30 $((secs + 120)) "${run[@]}") >"$log" 2>&1 || rc=$?
    grep -v -E '^#[0-9]+[[:space:]]+(NEW|REDUCE|pulse)' "$log" | tail -80
    if [[ -n $(ls -A "$art" 2>/dev/null) ]]; then
        say "crash inputs:"
        ls -l "$art"
        die "fuzzing $target found a problem"
    fi
    ((rc == 0)) || die "the fuzzer exited with $rc on $target"
    grep -q -E '^Done [0-9]+ runs' "$log" || die "the fuzzer did not finish $target cleanly"
    say "fuzz $target: no findings"
}

fuzz_one fuzz_core.py corpus "$SECONDS_TO_FUZZ"
# the differential target (stdlib vs fastsock, tests/_differential.py); inputs
# of a few hundred bytes from the start: each call takes several
fuzz_one fuzz_differential.py corpus_differential "${FUZZ_DIFF_SECONDS:-$SECONDS_TO_FUZZ}" \
    -len_control=0 -max_len=1024
# the sock_diag reply parser (csrc/fs_diag.c): a smaller input space
fuzz_one fuzz_diag.py corpus_diag "${FUZZ_DIAG_SECONDS:-30}"
say "fuzz: no findings"
