"""`down`: stop a deployment in any phase and prove nothing of it is left.

A live owner is asked (its grace in a stop request, then SIGTERM to the recorded
supervisor — only if pid *and* start time still match): it stops its processes the way
a foreground Ctrl-C would, cancelling a download if one runs. If it does not finish in
time it is killed, and its guardian cleans up. Then `down` takes the lock itself —
becoming the owner — sweeps every process tagged with the deployment's name (any run:
orphans of a run whose supervisor and guardian both died too), checks the GPUs' process
lists, and only then removes the record. A signal to `down` means "kill now".
"""

from __future__ import annotations

import signal
import time
from collections.abc import Callable
from dataclasses import dataclass

from llmdeploy.errors import ConflictError, NotFoundError
from llmdeploy.run import preflight, procs
from llmdeploy.run.phases import Phase
from llmdeploy.run.state import Corrupt, Owner, Record, Registry, StopRequest

Hurry = Callable[[], bool]
MARGIN = 10.0  # beyond the grace, for the owner's own bookkeeping


@dataclass(frozen=True)
class StopReport:
    name: str
    seconds: float
    survivors: list[procs.Proc]
    gpu_holders: list[int]
    note: str = ""

    @property
    def clean(self) -> bool:
        return not self.survivors and not self.gpu_holders


def take_down(
    registry: Registry, name: str, grace: float, *, hurry: Callable[[], bool] = lambda: False
) -> StopReport:
    """Stop `name`; `hurry()` returning True (a signal to `down`) skips every grace."""
    found = registry.read(name)
    if found is None:
        raise NotFoundError(f"no deployment named {name!r}", hint="`llmdeploy status` lists them")
    started = time.monotonic()
    note = found.problem if isinstance(found, Corrupt) else ""
    # What ran before the stop, to check the GPUs' lists against afterwards (a pid there
    # is only compared, never signalled: the record may be trusted for that).
    prefix = registry.tag_prefix(name)
    known = {p.pid for p in procs.find(lambda v: v.startswith(prefix))}
    if isinstance(found, Record) and found.engine_proc:
        known.add(found.engine_proc.pid)
    if isinstance(found, Record) and found.owner_alive():
        _ask_owner(registry, found, grace, hurry)
    fd = _wait_lock(registry, name, grace + MARGIN, hurry)
    if fd is None:
        raise ConflictError(
            f"{name!r} is held by another llmdeploy command (a start, or another down)",
            hint="try again in a moment",
        )
    owner = Owner(registry, name, fd)
    try:
        report = _sweep(owner, known, 0 if hurry() else grace, started, note, hurry)
    finally:
        owner.release()
    # An owner lets go of the lock a moment before its process is gone: "stopped" means
    # the supervisor and guardian are gone too.
    if isinstance(found, Record):
        _wait_exit(found.owners, 5.0)
    return report


def _ask_owner(
    registry: Registry, record: Record, grace: float, hurry: Callable[[], bool]
) -> None:
    StopRequest(record.run_id, grace).write(registry, record.name)
    _signal_owner(record.supervisor, signal.SIGTERM)
    if _wait_free(registry, record.name, grace + MARGIN, hurry):
        return
    # The supervisor does not finish: kill it; its guardian (an owner too) then sweeps.
    _signal_owner(record.supervisor, signal.SIGKILL)
    if _wait_free(registry, record.name, grace + MARGIN, hurry):
        return
    for owner in record.owners:
        _signal_owner(owner, signal.SIGKILL)  # then we sweep ourselves
    _wait_free(registry, record.name, 5.0, lambda: False)


def _wait_exit(owners: list[procs.Proc], timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while any(p.alive() for p in owners) and time.monotonic() < deadline:
        time.sleep(0.02)


def _signal_owner(owner: procs.Proc, signum: int) -> None:
    if procs.runs_llmdeploy(owner.pid):  # never another program that got the pid
        owner.signal(signum)


def _wait_free(registry: Registry, name: str, timeout: float, hurry: Callable[[], bool]) -> bool:
    """Wait for the record's owners to be gone (pid + start time), without locking."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and not hurry():
        found = registry.read(name)
        if not isinstance(found, Record) or not found.owner_alive():
            return True
        time.sleep(0.02)
    return False


def _wait_lock(
    registry: Registry, name: str, timeout: float, hurry: Callable[[], bool]
) -> int | None:
    """The lock, once the last owner let go (5 s more: a dying owner closes it last).
    In a hurry, the owners still holding it are killed first."""
    deadline = time.monotonic() + timeout + 5.0
    killed = False
    while True:
        fd = registry.try_lock(name)
        if fd is not None or time.monotonic() >= deadline:
            return fd
        if hurry() and not killed:
            killed = True
            found = registry.read(name)
            for owner in found.owners if isinstance(found, Record) else []:
                _signal_owner(owner, signal.SIGKILL)
        time.sleep(0.02)


def _sweep(
    owner: Owner,
    known: set[int],
    grace: float,
    started: float,
    note: str,
    hurry: Callable[[], bool],
) -> StopReport:
    name = owner.name
    # By tag only: a record on disk is not trusted to name a session or a pid to kill.
    prefix = owner.registry.tag_prefix(name)
    known |= {p.pid for p in procs.find(lambda v: v.startswith(prefix))}
    left = procs.stop(
        lambda: procs.find(lambda v: v.startswith(prefix)), grace, escalate=hurry
    )
    on_gpu = preflight.gpu_pids()
    holders = sorted(known & on_gpu) if on_gpu else []
    current = owner.registry.read(name)
    if not left and not holders:
        owner.remove()
    elif isinstance(current, Record):
        owner.adopt(current)
        if current.phase is not Phase.FAILED:
            if current.phase is not Phase.STOPPING:
                owner.move(Phase.STOPPING)
            listed = ", ".join(p.label() for p in left) or ", ".join(map(str, holders))
            owner.move(Phase.FAILED, reason=f"processes survived `down`: {listed}")
    return StopReport(name, time.monotonic() - started, left, holders, note)
