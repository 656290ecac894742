"""``python -m fastsock`` as a subprocess: the text and JSON reports, ``check``
exit codes (also inside a namespace with somaxconn 16), and one-line errors.

Every run has cwd in a temporary directory so the installed package is
imported, never the source folder."""

from __future__ import annotations

import json
import socket
import subprocess
import sys

import pytest
from _netns import run_in_netns

from fastsock.__main__ import main, parse_address
from fastsock._capabilities import Capabilities, capabilities, queue_capacity

LINUX = sys.platform.startswith("linux")


@pytest.fixture
def cli(tmp_path):
    def run(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-m", "fastsock", *args], capture_output=True,
                              text=True, timeout=60, cwd=tmp_path, check=False)
    return run


def one_line_error(r: subprocess.CompletedProcess, code: int = 2) -> str:
    assert r.returncode == code, (r.stdout, r.stderr)
    assert "Traceback" not in r.stderr
    lines = r.stderr.splitlines()
    assert len(lines) == 1, r.stderr
    assert lines[0].startswith("python -m fastsock: error: ")
    return lines[0]


# ---- the report -------------------------------------------------------------------

def test_text_report(cli):
    caps = capabilities()
    r = cli()
    assert r.returncode == 0, r.stderr
    assert r.stderr == ""
    for heading in ("Platform", "Backlog and accept queue", "Listener options",
                    "Address families", "Self-check: listen on 127.0.0.1"):
        assert f"\n{heading}" in r.stdout, heading
    lines = {ln.split("  ", 2)[1].strip(): ln for ln in r.stdout.splitlines()
             if ln.startswith("  ") and len(ln.split("  ", 2)) == 3}
    assert lines["somaxconn"].split()[-1] == str(caps.somaxconn)
    assert lines["SO_REUSEPORT"].split()[-1] == ("yes" if caps.reuse_port else "no")
    default = next(ln for ln in r.stdout.splitlines() if ln.startswith("  None "))
    assert default.split()[1:3] == [
        str(caps.default_backlog), str(queue_capacity(caps.default_backlog, caps.backlog_rules))]
    big = next(ln for ln in r.stdout.splitlines() if ln.startswith("  1000000 "))
    if caps.default_backlog < 1_000_000:
        assert "truncated" in big
        if LINUX:
            assert "sysctl -w net.core.somaxconn=1000000" in big


def test_json_report_matches_capabilities(cli):
    r = cli("--json")
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout)
    caps = capabilities()
    assert out["capabilities"] == caps.to_dict()
    assert set(out["capabilities"]) == set(Capabilities.__dataclass_fields__)
    assert out["self_check_error"] is None
    default, big = out["self_check"]
    assert default["requested"] is None
    assert default["effective"] == caps.default_backlog
    assert default["truncated"] is False and default["warnings"] == []
    assert big["requested"] == 1_000_000
    assert big["effective"] == min(1_000_000, caps.default_backlog)
    assert big["truncated"] is (caps.default_backlog < 1_000_000)
    assert big["warnings"] == []    # 65535 and more mean "as large as possible": no warning
    if LINUX:
        assert default["read_back"] is True
        assert big["queue_capacity"] == big["effective"] + 1
        with open("/proc/sys/net/core/somaxconn") as f:
            assert default["effective"] == int(f.read())


# ---- check -------------------------------------------------------------------------

def test_check_exit_codes_against_the_live_limit(cli):
    limit = capabilities().default_backlog
    ok = cli("check", "--backlog", str(limit))
    assert ok.returncode == 0, ok.stderr
    assert ok.stdout.startswith("ok: backlog")
    over = cli("check", "--backlog", str(limit + 1))
    assert over.returncode == 1, over.stderr
    assert over.stdout.startswith(f"truncated: backlog {limit + 1}")
    if LINUX:
        assert f"sysctl -w net.core.somaxconn={limit + 1}" in over.stdout
    small = cli("check", "127.0.0.1:0", "--backlog", "0")
    assert small.returncode == 0, small.stderr


def test_check_json(cli):
    limit = capabilities().default_backlog
    for n, code in ((1, 0), (limit + 1, 1)):
        r = cli("check", "--backlog", str(n), "--json")
        assert r.returncode == code, r.stderr
        out = json.loads(r.stdout)
        assert out["requested"] == n
        assert out["honoured"] is (code == 0)
        assert out["effective"] == min(n, limit)


@pytest.mark.parametrize("backlog, code", [("16", 0), ("17", 1), ("1", 0)])
def test_check_in_a_namespace_with_somaxconn_16(backlog, code):
    r = run_in_netns(argv=["-m", "fastsock", "check", "--backlog", backlog],
                     sysctls={"net.core.somaxconn": "16"})
    assert r.returncode == code, (r.stdout, r.stderr)
    if code:
        assert "sysctl -w net.core.somaxconn=17" in r.stdout


def test_check_ipv6_literal(cli):
    if not capabilities().ipv6:
        pytest.skip("no IPv6 loopback")
    r = cli("check", "[::1]:0", "--backlog", "5")
    assert r.returncode == 0, r.stderr
    assert "on [::1]:" in r.stdout


def test_port_in_use_is_one_line_and_exit_2(cli):
    holder = socket.socket()
    try:
        holder.bind(("127.0.0.1", 0))
        holder.listen(1)
        port = holder.getsockname()[1]
        r = cli("check", f"127.0.0.1:{port}", "--backlog", "5")
    finally:
        holder.close()
    line = one_line_error(r)
    assert "Address already in use" in line and str(port) in line
    assert r.stdout == ""


@pytest.mark.parametrize("args, words", [
    (["check", "--backlog", "-1"], "bad backlog -1"),
    (["check", "--backlog", "many"], "bad backlog 'many'"),
    (["check", "--backlog", str(2**31)], "C int"),
    (["check", "127.0.0.1:99999", "--backlog", "1"], "bad port"),
    (["check", "::1:80", "--backlog", "1"], "brackets"),
    (["check", "[::1", "--backlog", "1"], "bad address"),
    (["check", "no-such-host.invalid:80", "--backlog", "1"], "cannot resolve host"),
    (["check"], "--backlog"),
    (["--frobnicate"], "unrecognized arguments"),
])
def test_errors_are_one_line(cli, args, words):
    assert words in one_line_error(cli(*args))


def test_help(cli):
    r = cli("--help")
    assert r.returncode == 0 and r.stderr == ""
    for word in ("check", "--json", "somaxconn", "exit status"):
        assert word in r.stdout
    r = cli("check", "--help")
    assert r.returncode == 0
    for word in ("HOST:PORT", "--backlog", "[::1]:8080", "Exits 0", "1 when"):
        assert word in r.stdout


# ---- in process ----------------------------------------------------------------------

def test_main_returns_exit_codes(capsys):
    assert main(["check", "--backlog", "1"]) == 0
    assert main(["check", "--backlog", "x"]) == 2
    assert main(["--help"]) == 0
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "bad backlog 'x'" in err


@pytest.mark.parametrize("text, expected", [
    ("127.0.0.1:8080", ("127.0.0.1", 8080, False)),
    ("[::1]:80", ("::1", 80, True)),
    ("[::1]", ("::1", 0, True)),
    ("localhost:0", ("localhost", 0, False)),
    (":9000", ("", 9000, False)),
    ("9000", ("127.0.0.1", 9000, False)),
])
def test_parse_address(text, expected):
    assert parse_address(text) == expected
