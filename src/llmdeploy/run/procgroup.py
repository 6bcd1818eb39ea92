"""Process sessions on Linux, read from /proc. Standard library only: the guardian
imports this in a bare interpreter.

An engine is started as the leader of a new session (`start_new_session=True`), so
its session id is its pid. Every process it forks stays in that session, even one
that moves to another process group, which is why membership is by session.
"""

from __future__ import annotations

import os
import signal
import time
from dataclasses import dataclass


@dataclass(frozen=True)
class Member:
    pid: int
    name: str  # the kernel's comm, e.g. "VLLM::EngineCor"


def _stat(pid: int) -> tuple[str, str, int, int] | None:
    """(comm, state, pgrp, session) of a process, or None once it is gone."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as handle:
            raw = handle.read().decode(errors="replace")
    except OSError:
        return None
    # comm may contain spaces and parentheses: it ends at the last ')'.
    head, _, tail = raw.rpartition(")")
    fields = tail.split()
    return head.partition("(")[2], fields[0], int(fields[2]), int(fields[3])


def members(session: int) -> list[Member]:
    """Live (non-zombie) processes of a session. Zombies hold no memory or GPU,
    and are reaped by whoever inherited them."""
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        stat = _stat(int(entry))
        if stat and stat[3] == session and stat[1] != "Z":
            found.append(Member(int(entry), stat[0]))
    return sorted(found, key=lambda m: m.pid)


def signal_all(session: int, signum: int) -> None:
    """Signal the session's process group, then any member that left the group."""
    try:
        os.killpg(session, signum)
    except (ProcessLookupError, PermissionError):
        pass
    for member in members(session):
        try:
            os.kill(member.pid, signum)
        except (ProcessLookupError, PermissionError):
            pass


def wait_gone(session: int, timeout: float, poll: float = 0.02) -> list[Member]:
    """Wait until no member is left or `timeout` passes; return the survivors."""
    deadline = time.monotonic() + timeout
    while True:
        left = members(session)
        if not left or time.monotonic() >= deadline:
            return left
        time.sleep(poll)


def terminate(session: int, grace: float) -> list[Member]:
    """TERM the whole session, wait `grace`, KILL what is left, verify. Returns survivors."""
    if not members(session):
        return []
    signal_all(session, signal.SIGTERM)
    if not wait_gone(session, grace):
        return []
    signal_all(session, signal.SIGKILL)
    return wait_gone(session, 5.0)


def alive(pid: int) -> bool:
    stat = _stat(pid)
    return stat is not None and stat[1] != "Z"
