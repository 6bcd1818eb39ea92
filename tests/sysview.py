"""What the tests (and benchmarks) read of the machine: free loopback ports, a process's
/proc entries, the /dev/shm files it holds. Plain reads, no llmdeploy code: the tests
judge llmdeploy by what the kernel says, not by what llmdeploy reports."""

from __future__ import annotations

import os
import socket
from collections.abc import Iterable
from pathlib import Path


def port_free(port: int) -> bool:
    with socket.socket() as sock:
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def free_port_block(size: int, avoid: Iterable[int] = ()) -> int:
    """A port that is free now, with the `size - 1` after it free too (none in `avoid`)."""
    avoided = set(avoid)
    for _ in range(100):
        base = free_port()
        block = range(base, base + size)
        if base + size > 65000 or avoided.intersection(block):
            continue
        if all(port_free(port) for port in block):
            return base
    raise AssertionError(f"no block of {size} free ports")


def proc_stat(pid: int) -> tuple[str, int, int] | None:
    """(state, session, start time) of a process, None if it is gone."""
    try:
        raw = Path(f"/proc/{pid}/stat").read_text(errors="replace")
    except OSError:
        return None
    fields = raw.rpartition(")")[2].split()  # comm may hold spaces and parentheses
    return fields[0], int(fields[3]), int(fields[19])


def read_bytes(path: str) -> bytes:
    """A /proc file's bytes, or b"" once the process is gone."""
    try:
        with open(path, "rb") as handle:
            return handle.read()
    except OSError:
        return b""


def shm_of(pid: int) -> set[str]:
    """Names of the /dev/shm files a process has open or mapped."""
    found = set()
    for line in read_bytes(f"/proc/{pid}/maps").decode(errors="replace").splitlines():
        parts = line.split(None, 5)
        if len(parts) == 6 and parts[5].startswith("/dev/shm/"):
            found.add(parts[5].removesuffix(" (deleted)")[len("/dev/shm/") :])
    try:
        fds = os.listdir(f"/proc/{pid}/fd")
    except OSError:
        fds = []
    for fd in fds:
        try:
            target = os.readlink(f"/proc/{pid}/fd/{fd}")
        except OSError:
            continue
        if target.startswith("/dev/shm/"):
            found.add(target.removesuffix(" (deleted)")[len("/dev/shm/") :])
    return found
