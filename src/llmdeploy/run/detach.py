"""Starting a deployment in the background (`up --detach`, `up --smoke`, and the
deployments `bench --compare` / `generate PROFILE` bring up for themselves).

This process takes the deployment's lock first — so of two racing starts the loser
learns it here and says so itself — then hands the lock to the background supervisor
(background.py), shows this run's log lines while it starts, and returns once the record
of *this run* says ready, or with the supervisor's exit code if it fails. A signal here
is passed on to the supervisor (which stops everything); a second one too (it kills).

`tie=True` makes the deployment live only as long as this process: the supervisor holds
the read end of a pipe whose write end only this process has, and stops when it reads
EOF — also when this process is SIGKILLed.
"""

from __future__ import annotations

import os
import secrets
import subprocess
import time
from dataclasses import replace
from pathlib import Path

from llmdeploy.console import Console, LogFollower
from llmdeploy.engines.planning import Plan
from llmdeploy.files import open_regular
from llmdeploy.output import out
from llmdeploy.run.background import BackgroundJob
from llmdeploy.run.phases import Phase
from llmdeploy.run.signals import SignalCapture, exit_code
from llmdeploy.run.state import Owner, Record, Registry
from llmdeploy.run.supervisor import RunOptions, first_record


def new_run_id() -> str:
    return time.strftime("%Y%m%d-%H%M%S-") + secrets.token_hex(3)


class Tie:
    """The write end of the pipe a tied deployment watches; `close()` lets it go."""

    def __init__(self) -> None:
        self.read_fd, self.write_fd = os.pipe()
        os.set_inheritable(self.write_fd, False)

    def close(self) -> None:
        if self.write_fd >= 0:
            os.close(self.write_fd)
            self.write_fd = -1


def start(
    plan: Plan,
    profile: Path,
    options: RunOptions,
    *,
    registry: Registry,
    console: Console,
    signals: SignalCapture,
    tie: Tie | None = None,
) -> int:
    name = plan.profile.name
    owner = registry.own(name)  # ConflictError: reported by this process, not the loser's log
    log_path = registry.log_path(name)
    port = int(plan.launch.base_url.rsplit(":", 1)[1])
    options = replace(options, detached=True, tie_fd=tie.read_fd if tie else None, port=port)
    # The deployment exists from now on: `status` and `down` see it before the
    # background supervisor (which takes this record over) has even started.
    owner.create(first_record(plan, profile, options, log_path))
    follower = LogFollower(log_path, from_end=True)
    job = BackgroundJob(str(profile.resolve()), options, owner.lock_fd, str(registry.root))
    passed = (owner.lock_fd,) + ((tie.read_fd,) if tie else ())
    with open_regular(log_path, "ab") as log:
        daemon = subprocess.Popen(
            job.to_argv(),
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=log,
            start_new_session=True,
            pass_fds=passed,
        )
    owner.release()  # the supervisor holds it now
    if tie:
        os.close(tie.read_fd)
    code = _follow(name, options.run_id, daemon, registry, console, follower, signals)
    if code != 0:
        _clean_after(registry, name, options.run_id)
    return code


def _clean_after(registry: Registry, name: str, run_id: str) -> None:
    """The background supervisor died before it took the record over (a signal while it
    started): the record this process wrote is ours to remove. It spawned nothing."""
    found = registry.read(name)
    if not isinstance(found, Record) or found.run_id != run_id or found.phase.terminal:
        return
    if found.supervisor.pid != os.getpid():
        return  # taken over: that supervisor (or its guardian) records its own end
    fd = registry.try_lock(name)
    if fd is not None:
        owner = Owner(registry, name, fd)
        owner.remove()
        owner.release()


def _follow(
    name: str,
    run_id: str,
    daemon: subprocess.Popen[bytes],
    registry: Registry,
    console: Console,
    follower: LogFollower,
    signals: SignalCapture,
) -> int:
    started, forwarded = time.monotonic(), 0
    while True:
        for line in follower.read():
            console.line(line)
        if signals.count > forwarded:  # pass each signal on: the second one kills
            forwarded = signals.count
            daemon.terminate()
        code = daemon.poll()
        if code is not None:
            _drain(follower, console)
            return exit_code(signals.received) if signals.received else code
        record = registry.read(name)
        if not isinstance(record, Record) or record.run_id != run_id:
            record = None  # another run's record (or none yet): never report on it
        if not signals.received and record is not None and record.phase is Phase.READY:
            _drain(follower, console)
            out(f"{name}: ready at {record.base_url}/v1 (model {record.served_model_name!r})")
            return 0
        console.status(_status(name, record, time.monotonic() - started))
        time.sleep(0.02)


def _status(name: str, record: Record | None, elapsed: float) -> str:
    phase = record.phase.value if record is not None else "starting"
    return f"{phase} {name} … {elapsed:.0f} s"


def _drain(follower: LogFollower, console: Console) -> None:
    for line in follower.read():
        console.line(line)
    console.clear_status()
