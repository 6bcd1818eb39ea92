"""`down`: stop a registered deployment and prove nothing of it is left.

A living supervisor is asked first (SIGTERM): it stops its engine the way a
foreground Ctrl-C would. Whatever happens, the engine's session is then swept
(TERM, grace, KILL) and verified empty — also in the GPU's process list where
there is one — before the record is removed.
"""

from __future__ import annotations

import os
import signal
import time
from dataclasses import dataclass

from llmdeploy.run import preflight, procgroup
from llmdeploy.run.state import Registry


@dataclass(frozen=True)
class StopReport:
    name: str
    seconds: float
    survivors: list[procgroup.Member]
    gpu_holders: list[int]

    @property
    def clean(self) -> bool:
        return not self.survivors and not self.gpu_holders


def take_down(registry: Registry, name: str, grace: float) -> StopReport:
    record = registry.load(name)
    started = time.monotonic()
    session = record.engine_pid
    known = {m.pid for m in procgroup.members(session)} if session else set()
    if registry.is_live(name) and procgroup.alive(record.supervisor_pid):
        _signal(record.supervisor_pid, signal.SIGTERM)
        if not _wait_unlocked(registry, name, grace + 5):
            # The supervisor does not answer: stop its engine ourselves, then it.
            if session:
                procgroup.terminate(session, grace)
            _signal(record.supervisor_pid, signal.SIGKILL)
            _wait_unlocked(registry, name, 10)
    elif registry.is_live(name):
        _wait_unlocked(registry, name, grace + 5)  # a guardian is cleaning up
    _wait_exit(record.supervisor_pid, 5)  # it released the lock and is on its way out
    survivors = procgroup.terminate(session, grace) if session else []
    on_gpu = preflight.gpu_pids()
    holders = sorted(known & on_gpu) if on_gpu else []
    if not survivors and not holders:
        registry.remove(name)
    return StopReport(name, time.monotonic() - started, survivors, holders)


def _signal(pid: int, signum: int) -> None:
    try:
        os.kill(pid, signum)
    except ProcessLookupError:
        pass


def _wait_exit(pid: int, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while procgroup.alive(pid) and time.monotonic() < deadline:
        time.sleep(0.02)


def _wait_unlocked(registry: Registry, name: str, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while registry.is_live(name):
        if time.monotonic() >= deadline:
            return False
        time.sleep(0.02)
    return True
