"""Bring ``lo`` up: a fresh network namespace (``unshare -n``, as
fuzz/run_short.sh runs the fuzz targets) has it down.  SIOCGIFFLAGS then
SIOCSIFFLAGS, no ``ip`` needed; best effort.  Availability: Linux."""

import fcntl
import socket
import struct


def lo_up() -> None:
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        req = struct.pack("16sH22x", b"lo", 0)
        flags = struct.unpack("16sH22x", fcntl.ioctl(s, 0x8913, req))[1]
        fcntl.ioctl(s, 0x8914, struct.pack("16sH22x", b"lo", flags | 1))
    except OSError:
        pass
    finally:
        s.close()
