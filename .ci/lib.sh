# shellcheck shell=bash
# Helpers sourced by the .ci scripts (bash).  Not a script of its own.

CI_ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
export CI_ROOT

say() { printf '%s\n' "$*"; }
die() { printf 'FAIL: %s\n' "$*" >&2; exit 1; }

# find_python X.Y: print the path of a CPython X.Y interpreter, or return 1.
# Looks under $(pyenv root)/versions/X.Y.N (newest patch release first, no
# free-threaded or dev builds), then at pythonX.Y on PATH (a pyenv shim for a
# version that is not selected fails the check and is skipped).
find_python() {
    local want=$1 root="" cand re
    local -a found=() cands=()
    if command -v pyenv >/dev/null 2>&1; then root=$(pyenv root 2>/dev/null || true); fi
    root=${root:-${PYENV_ROOT:-$HOME/.pyenv}}
    re="/versions/${want//./\\.}\\.[0-9]+/bin/python${want//./\\.}\$"
    for cand in "$root"/versions/"$want".*/bin/python"$want"; do
        if [[ -x $cand && $cand =~ $re ]]; then found+=("$cand"); fi
    done
    if ((${#found[@]} > 0)); then
        mapfile -t cands < <(printf '%s\n' "${found[@]}" | sort -rV)
    fi
    if command -v "python$want" >/dev/null 2>&1; then cands+=("$(command -v "python$want")"); fi
    for cand in "${cands[@]}"; do
        if [[ $("$cand" -c 'import sys; print("%d.%d" % sys.version_info[:2])' 2>/dev/null) == "$want" ]]; then
            printf '%s\n' "$cand"
            return 0
        fi
    done
    return 1
}

# new_venv PYTHON DIR: create a fresh virtual environment in DIR.
new_venv() {
    rm -rf "$2"
    "$1" -m venv "$2"
}

# run_suite_outside PYTHON LABEL: run the test suite with PYTHON (a venv's
# interpreter with fastsock and the test extra installed) from a temporary
# directory holding only copies of tests/ and pyproject.toml, so that the
# installed package is what the tests import.  pytest exit 5 (no tests
# collected) is a failure.
run_suite_outside() {
    local py=$1 label=$2 dir rc=0
    dir=$(mktemp -d "${TMPDIR:-/tmp}/fastsock-tests.XXXXXX")
    cp -R "$CI_ROOT/tests" "$dir/tests"
    cp "$CI_ROOT/pyproject.toml" "$dir/pyproject.toml"
    find "$dir" -name __pycache__ -prune -exec rm -rf {} +
    (cd "$dir" && "$py" - "$CI_ROOT" <<'EOF'
import pathlib
import sys

import fastsock
import fastsock._core

root = pathlib.Path(sys.argv[1]).resolve()
for mod in (fastsock, fastsock._core):
    where = pathlib.Path(mod.__file__).resolve()
    if where.is_relative_to(root):
        sys.exit(f"{mod.__name__} was imported from the source tree: {where}")
print(f"testing the installed package: {pathlib.Path(fastsock._core.__file__).resolve()}")
EOF
    ) || rc=$?
    if ((rc == 0)); then
        (cd "$dir" && "$py" -m pytest -p no:cacheprovider) || rc=$?
    fi
    rm -rf "$dir"
    if ((rc == 5)); then
        say "FAIL: pytest collected no tests ($label)"
    elif ((rc != 0)); then
        say "FAIL: test suite ($label), exit $rc"
    fi
    return "$rc"
}

# debian_install PKG...: install the Debian packages (name or name:arch) that
# are not installed yet, with apt-get as root; adds the arm64 architecture
# first when a :arm64 package is asked for.  Fails where that is impossible.
debian_install() {
    local pkg missing=()
    for pkg in "$@"; do
        dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q 'install ok installed' \
            || missing+=("$pkg")
    done
    ((${#missing[@]} > 0)) || return 0
    command -v apt-get >/dev/null 2>&1 && [[ $(id -u) == 0 ]] \
        || die "need Debian packages ${missing[*]} (apt-get as root)"
    if [[ " ${missing[*]}" == *:arm64* ]] && ! dpkg --print-foreign-architectures | grep -qx arm64; then
        dpkg --add-architecture arm64
    fi
    say "apt-get install ${missing[*]}"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
}
