"""Coverage-guided fuzzing (atheris/libFuzzer) of fastsock's input parsing:
the address encoders ``_core.encode_address``/``decode_address`` and the
backlog argument of ``_core.listen`` / ``_core.plan_backlog``.

Run it through ``fuzz/run_short.sh`` (which installs atheris and a
sanitizer build of fastsock into a venv and runs this inside a private
network namespace), or directly::

    python fuzz/fuzz_core.py -max_total_time=60 fuzz/corpus

Every input must either succeed or raise a documented exception (TypeError,
ValueError, OverflowError, OSError); any other exception, a failed property
or a crash is a finding.  Properties checked on success:

* decode(encode(addr)) gives back the port, and the host for literals;
* encode(decode(raw)) reproduces the family, port and address bytes of any
  AF_INET/AF_INET6 sockaddr (flowinfo above 20 bits aside);
* an abstract AF_UNIX name round-trips byte for byte;
* ``listen(backlog)`` returns the effective backlog of the contract:
  None -> somaxconn, negative -> 0, else min(backlog, somaxconn), and agrees
  with ``plan_backlog`` and the kernel's read-back.

Name look-ups: hosts that are not literals go to getaddrinfo(3).  Inside a
private network namespace (run_short.sh) they fail at once and send nothing;
elsewhere set FUZZ_RESOLVE=0 (the default outside a namespace) and such hosts
are replaced by a literal before the call.
"""

from __future__ import annotations

import os
import socket
import sys
import warnings

import atheris
from _lo import lo_up as _lo_up

with atheris.instrument_imports():
    import fastsock  # noqa: F401  (instruments the pure-Python layer too)
    from fastsock import _core
    from fastsock import errors  # noqa: F401

DOCUMENTED = (TypeError, ValueError, OverflowError, OSError)
RESOLVE = os.environ.get("FUZZ_RESOLVE", "0") == "1"
FAMILIES = (socket.AF_INET, socket.AF_INET6, socket.AF_UNIX)
LINUX = sys.platform.startswith("linux")
warnings.simplefilter("ignore")


@atheris.instrument_func
def refused(exc: BaseException) -> None:
    """A documented refusal.  One branch per kind and errno, so that libFuzzer
    sees reaching a new kind of refusal as new coverage (the compiled core is
    not instrumented when built by gcc)."""
    if isinstance(exc, OverflowError):
        k = 1
    elif isinstance(exc, UnicodeError):
        k = 2
    elif isinstance(exc, ValueError):
        k = 3
    elif isinstance(exc, TypeError):
        k = 4
    elif isinstance(exc, socket.gaierror):
        k = 5
    elif isinstance(exc, OSError):
        k = 6 + (exc.errno or 0) % 64
    else:
        raise exc
    SEEN[k] = SEEN.get(k, 0) + 1


SEEN: dict[int, int] = {}


def _listeners() -> list[tuple[int, bool]]:
    """A TCP socket on 127.0.0.1 (kernel read-back) and an AF_UNIX one."""
    _lo_up()
    out = []
    tcp = _core.socket(socket.AF_INET, socket.SOCK_STREAM)
    _core.bind(tcp, socket.AF_INET, ("127.0.0.1", 0))
    out.append((tcp, True))
    if LINUX:
        unix = _core.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        _core.bind(unix, socket.AF_UNIX, b"\0fastsock-fuzz-%d" % os.getpid())
        out.append((unix, False))
    return out


LISTENERS = _listeners()
SOMAXCONN = _core.somaxconn()[0]


@atheris.instrument_func
def is_literal(family: int, host: object) -> bool:
    if isinstance(host, (bytes, bytearray)):
        try:
            host = bytes(host).decode("ascii")
        except UnicodeDecodeError:
            return False
    if not isinstance(host, str):
        return True                      # wrong type: refused before any look-up
    if host in ("", "<broadcast>") or "\0" in host:
        return True
    try:
        socket.inet_pton(family, host)
        return True
    except (OSError, ValueError):
        return False


@atheris.instrument_func
def fuzz_value(fdp: atheris.FuzzedDataProvider) -> object:
    """Any value: ints of every size, and every wrong type."""
    kind = fdp.ConsumeIntInRange(0, 11)
    if kind <= 3:
        return fdp.ConsumeInt(fdp.ConsumeIntInRange(1, 16))
    if kind == 4:
        return fdp.ConsumeIntInRange(-2**31 - 2, 2**31 + 2)
    if kind == 5:
        return fdp.ConsumeFloat()
    if kind == 6:
        return fdp.ConsumeUnicodeNoSurrogates(8)
    if kind == 7:
        return fdp.ConsumeBytes(8)
    if kind == 8:
        return None
    if kind == 9:
        return fdp.ConsumeBool()
    if kind == 10:
        return (fdp.ConsumeInt(4),)
    return [fdp.ConsumeIntInRange(0, 255)]


@atheris.instrument_func
def fuzz_host(fdp: atheris.FuzzedDataProvider, family: int) -> object:
    kind = fdp.ConsumeIntInRange(0, 6)
    if kind <= 2:
        raw = fdp.ConsumeBytes(4 if family == socket.AF_INET else 16)
        raw = raw.ljust(4 if family == socket.AF_INET else 16, b"\0")
        host: object = socket.inet_ntop(family, raw)
    elif kind == 3:
        host = fdp.ConsumeUnicode(fdp.ConsumeIntInRange(0, 64))
    elif kind == 4:
        host = fdp.ConsumeBytes(fdp.ConsumeIntInRange(0, 64))
    elif kind == 5:
        host = bytearray(fdp.ConsumeBytes(fdp.ConsumeIntInRange(0, 40)))
    else:
        host = fuzz_value(fdp)
    if not RESOLVE and not is_literal(family, host):
        host = "127.0.0.1" if family == socket.AF_INET else "::1"
    return host


@atheris.instrument_func
def fuzz_address(fdp: atheris.FuzzedDataProvider, family: int) -> object:
    if family in (socket.AF_INET, socket.AF_INET6):
        shape = fdp.ConsumeIntInRange(0, 6)
        host = fuzz_host(fdp, family)
        port = fdp.ConsumeIntInRange(0, 65535) if shape < 3 else fuzz_value(fdp)
        if shape in (0, 3):
            return (host, port)
        if shape in (1, 4):
            return (host, port, fuzz_value(fdp) if shape == 4 else fdp.ConsumeIntInRange(0, 0xFFFFF),
                    fdp.ConsumeIntInRange(0, 2**32 - 1) if shape == 1 else fuzz_value(fdp))
        if shape == 2:
            return (host, port, fdp.ConsumeIntInRange(0, 0xFFFFF))
        if shape == 5:
            return tuple(fuzz_value(fdp) for _ in range(fdp.ConsumeIntInRange(0, 5)))
        return [host, port]
    kind = fdp.ConsumeIntInRange(0, 4)
    if kind == 0:
        return b"\0" + fdp.ConsumeBytes(fdp.ConsumeIntInRange(0, 120))
    if kind == 1:
        return fdp.ConsumeBytes(fdp.ConsumeIntInRange(0, 120))
    if kind == 2:
        return fdp.ConsumeUnicode(fdp.ConsumeIntInRange(0, 120))
    if kind == 3:
        return bytearray(fdp.ConsumeBytes(fdp.ConsumeIntInRange(0, 120)))
    return fuzz_value(fdp)


@atheris.instrument_func
def check_encode(fdp: atheris.FuzzedDataProvider) -> None:
    family = FAMILIES[fdp.ConsumeIntInRange(0, 2)] if fdp.ConsumeIntInRange(0, 7) \
        else fdp.ConsumeInt(4)
    address = fuzz_address(fdp, family if family in FAMILIES else socket.AF_INET)
    try:
        raw = _core.encode_address(family, address)
    except DOCUMENTED as exc:
        refused(exc)
        return
    assert isinstance(raw, bytes) and 2 <= len(raw) <= 128, raw
    back = _core.decode_address(family, raw)
    if family in (socket.AF_INET, socket.AF_INET6):
        assert back[1] == int(address[1]), (address, back)
        host = address[0]
        if isinstance(host, str) and host and host != "<broadcast>":
            try:
                packed = socket.inet_pton(family, host)
            except OSError:
                packed = None
            if packed is not None:
                assert socket.inet_pton(family, back[0].split("%")[0]) == packed, (address, back)
    elif family == socket.AF_UNIX and isinstance(address, (bytes, bytearray)) \
            and address[:1] == b"\0":
        assert back == bytes(address), (address, back)


@atheris.instrument_func
def check_decode(fdp: atheris.FuzzedDataProvider) -> None:
    family = FAMILIES[fdp.ConsumeIntInRange(0, 2)] if fdp.ConsumeIntInRange(0, 7) \
        else fdp.ConsumeInt(4)
    raw = fdp.ConsumeBytes(fdp.ConsumeIntInRange(0, 140))
    try:
        out = _core.decode_address(family, raw)
    except DOCUMENTED as exc:
        refused(exc)
        return
    assert isinstance(out, (tuple, str, bytes)), out
    if len(raw) < 2:
        return
    real = int.from_bytes(raw[:2], sys.byteorder)
    if real == socket.AF_INET and len(raw) >= 8:
        again = _core.encode_address(socket.AF_INET, out)
        assert again[:8] == raw[:8], (raw, out, again)
    elif real == socket.AF_INET6 and len(raw) >= 28:
        try:
            again = _core.encode_address(socket.AF_INET6, out)
        except OverflowError:            # flowinfo beyond 20 bits: refused on the way in
            assert out[2] > 0xFFFFF, out
            return
        if "%" not in out[0]:
            assert again[:24] == raw[:24] and again[24:28] == raw[24:28], (raw, out, again)


@atheris.instrument_func
def check_backlog(fdp: atheris.FuzzedDataProvider) -> None:
    backlog = fuzz_value(fdp) if fdp.ConsumeIntInRange(0, 3) else None
    fd, readback = LISTENERS[fdp.ConsumeIntInRange(0, len(LISTENERS) - 1)]
    rules = _core.RULES[fdp.ConsumeIntInRange(0, len(_core.RULES) - 1)]
    maximum = fuzz_value(fdp) if fdp.ConsumeBool() else SOMAXCONN
    try:
        plan = _core.plan_backlog(rules, backlog, maximum)
        assert all(isinstance(v, int) for v in plan), plan
        passed, effective, capacity, flags = plan
        if isinstance(maximum, int) and maximum >= 1:
            assert 0 <= passed <= max(maximum, 1) and capacity >= 1, (rules, backlog, maximum, plan)
    except DOCUMENTED as exc:
        refused(exc)
    try:
        got = _core.listen(fd, backlog)
    except DOCUMENTED as exc:
        refused(exc)
        assert backlog is not None
        return
    assert backlog is None or (isinstance(backlog, int) and not isinstance(backlog, bool)), \
        (backlog, got)
    if not LINUX:                        # the contract's numbers below are Linux's
        return
    want = SOMAXCONN if backlog is None else min(max(backlog, 0), SOMAXCONN)
    assert got == want, (backlog, got, want)
    if readback:
        assert _core.effective_backlog(fd) == want, (backlog, want)
    assert _core.plan_backlog(_core.BACKLOG_RULES, backlog, SOMAXCONN)[1] == want


@atheris.instrument_func
def TestOneInput(data: bytes) -> None:
    fdp = atheris.FuzzedDataProvider(data)
    what = fdp.ConsumeIntInRange(0, 2)
    if what == 0:
        check_encode(fdp)
    elif what == 1:
        check_decode(fdp)
    else:
        check_backlog(fdp)


def main() -> None:
    atheris.Setup(sys.argv, TestOneInput)
    atheris.Fuzz()


if __name__ == "__main__":
    main()
