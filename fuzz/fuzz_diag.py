"""Coverage-guided fuzzing (atheris/libFuzzer) of the sock_diag reply parser,
csrc/fs_diag.c's ``fs_diag_parse`` (through ``_core.diag_parse``), the C code
that reads what the kernel sends to ``fastsock.listeners()``.

Run it through ``fuzz/run_short.sh`` (with fuzz_core.py), or directly::

    python fuzz/fuzz_diag.py -max_total_time=60 fuzz/corpus_diag

The first byte picks the reply kind (inet_diag or unix_diag) and the mode:

* raw: the rest is the buffer, as is;
* built: the rest describes well-formed messages (records with attributes,
  an optional NLMSG_DONE), which are then cut short or given a lying
  nlmsg_len or attribute length at a fuzzed place.

Every input must either parse or raise ``OSError`` (EPROTO for a malformed
buffer; the errno of an NLMSG_ERROR message).  Properties checked:

* every record has 9 fields, a known family, and an address of the shape
  ``getsockname()`` gives (inet: a port within 0..65535; AF_UNIX: str or
  bytes within sun_path);
* a built buffer left intact parses, with one record per message built;
* whatever follows NLMSG_DONE is never read: appending bytes after a buffer
  that ended with DONE changes nothing.
"""

from __future__ import annotations

import socket
import struct
import sys

import atheris

with atheris.instrument_imports():
    from fastsock import _core

KINDS = (_core.DIAG_INET, _core.DIAG_UNIX)


def _pad(n: int) -> bytes:
    return b"\0" * (-n % 4)


def _nlmsg(type_: int, payload: bytes) -> bytes:
    n = 16 + len(payload)
    return struct.pack("=IHHII", n, type_, 2, 1, 0) + payload + _pad(n)


def _rta(type_: int, data: bytes) -> bytes:
    n = 4 + len(data)
    return struct.pack("=HH", n, type_) + data + _pad(n)


@atheris.instrument_func
def build(fdp: atheris.FuzzedDataProvider, kind: int) -> tuple[bytes, int, bool]:
    """Well-formed messages from the fuzz data: (buffer, records, ends with DONE)."""
    out, n = b"", 0
    for _ in range(fdp.ConsumeIntInRange(0, 6)):
        attrs = b""
        for _ in range(fdp.ConsumeIntInRange(0, 4)):
            t = fdp.ConsumeIntInRange(0, 9)
            attrs += _rta(t, fdp.ConsumeBytes(fdp.ConsumeIntInRange(0, 120 if t == 0 else 48)))
        if kind == _core.DIAG_INET:
            fam = 10 if fdp.ConsumeBool() else 2
            body = bytes([fam]) + fdp.ConsumeBytes(71).ljust(71, b"\0")
        else:
            body = b"\x01" + fdp.ConsumeBytes(15).ljust(15, b"\0")
        out += _nlmsg(20, body + attrs)
        n += 1
    done = fdp.ConsumeBool()
    if done:
        out += _nlmsg(3, struct.pack("=i", 0))
    return out, n, done


@atheris.instrument_func
def check_records(recs: list[tuple[object, ...]]) -> None:
    for r in recs:
        assert len(r) == 9, r
        fam, addr = r[0], r[2]
        if fam == socket.AF_UNIX:
            assert isinstance(addr, (str, bytes)) and len(addr) <= 108, r
        else:
            assert fam in (socket.AF_INET, socket.AF_INET6), r
            assert isinstance(addr, tuple) and 0 <= addr[1] <= 65535, r
            assert len(addr) == (2 if fam == socket.AF_INET else 4), r


@atheris.instrument_func
def parse(kind: int, buf: bytes) -> tuple[list[tuple[object, ...]], bool] | None:
    try:
        recs, done = _core.diag_parse(kind, buf)
    except OSError:
        return None
    check_records(recs)
    return recs, done


@atheris.instrument_func
def TestOneInput(data: bytes) -> None:
    fdp = atheris.FuzzedDataProvider(data)
    mode = fdp.ConsumeIntInRange(0, 3)
    kind = KINDS[mode & 1]
    if mode < 2:
        buf = fdp.ConsumeBytes(fdp.remaining_bytes())
        got = parse(kind, buf)
        if got is not None and got[1]:
            assert parse(kind, buf + b"\xff" * 7) == got
        return
    buf, n, done = build(fdp, kind)
    if not fdp.ConsumeBool():
        # left intact: inet replies must parse (no attribute of theirs can be
        # refused); unix_diag ones may be refused for a name longer than
        # sun_path or a short RQLEN/UID attribute
        got = parse(kind, buf)
        assert got is not None or kind == _core.DIAG_UNIX, buf
        if got is not None:
            assert len(got[0]) == n and got[1] is done, (got, n, done)
            if done:
                assert parse(kind, buf + fdp.ConsumeBytes(16)) == got
        return
    if not buf:
        return
    at = fdp.ConsumeIntInRange(0, len(buf) - 1)
    how = fdp.ConsumeIntInRange(0, 2)
    if how == 0:
        buf = buf[:at]                                              # cut short
    else:
        size = 4 if how == 1 else 2                                 # nlmsg_len or rta_len
        lie = fdp.ConsumeIntInRange(0, 2 ** (8 * size) - 1)
        buf = buf[:at] + lie.to_bytes(size, sys.byteorder) + buf[at + size:]
    parse(kind, buf)


def main() -> None:
    atheris.Setup(sys.argv, TestOneInput)
    atheris.Fuzz()


if __name__ == "__main__":
    main()
