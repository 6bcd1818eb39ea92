"""`up --detach`: the same supervisor as a foreground `up`, run in the background.

This process starts `llmdeploy up … --supervisor` in a new session (so it outlives
the terminal), shows the deployment's log while it starts, and returns as soon as
the supervisor records "ready" — or with its exit code if it fails. Ctrl-C here
stops the starting deployment.
"""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from pathlib import Path

from llmdeploy.console import Console, LogFollower
from llmdeploy.errors import NotFoundError
from llmdeploy.output import out
from llmdeploy.run.signals import SignalCapture, exit_code
from llmdeploy.run.state import Registry


def run_detached(
    name: str,
    supervisor_args: list[str],
    *,
    registry: Registry,
    console: Console,
    signals: SignalCapture,
) -> int:
    log_path = registry.log_path(name)
    log_path.touch()
    follower = LogFollower(log_path, from_end=True)
    with open(log_path, "ab") as log:
        daemon = subprocess.Popen(
            [sys.executable, "-m", "llmdeploy", "up", *supervisor_args, "--supervisor"],
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=log,
            start_new_session=True,
        )
    started = time.monotonic()
    while True:
        for line in follower.read():
            console.line(line)
        if signals.received:
            console.line(f"received signal {signals.received}, stopping {name}")
            daemon.send_signal(signal.SIGTERM)
            daemon.wait()
            _drain(follower, console)
            return exit_code(signals.received)
        code = daemon.poll()
        if code is not None:
            _drain(follower, console)
            return code
        if _is_ready(registry, name, daemon.pid):
            _drain(follower, console)
            record = registry.load(name)
            out(f"{name}: ready at {record.base_url}/v1 (model {record.served_model_name!r})")
            return 0
        console.status(f"starting {name} … {time.monotonic() - started:.0f} s")
        time.sleep(0.02)


def _is_ready(registry: Registry, name: str, pid: int) -> bool:
    try:
        record = registry.load(name)
    except NotFoundError:
        return False
    return record.supervisor_pid == pid and record.phase == "ready"


def _drain(follower: LogFollower, console: Console) -> None:
    time.sleep(0.05)
    for line in follower.read():
        console.line(line)
    console.clear_status()


def supervisor_args(profile: Path, options: dict[str, str | None]) -> list[str]:
    args = [str(profile.resolve())]
    for flag, value in options.items():
        if value is not None:
            args += [flag] if value == "" else [flag, value]
    return args
