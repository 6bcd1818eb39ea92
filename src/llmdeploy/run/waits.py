"""Waiting without ever missing a signal: every wait of a supervisor is a loop of short
ticks, and each tick checks for a signal (or for the death of the command a deployment
was started for) before anything else. `Interrupted` carries the signal up to the one
place that stops the deployment (Supervisor.stop_all)."""

from __future__ import annotations

import os
import select
import signal
import time

from llmdeploy.console import Console, LogFollower
from llmdeploy.engines import render
from llmdeploy.run.signals import SignalCapture
from llmdeploy.run.state import Registry

TICK = 0.02  # "ready" is reported within a tick of the first 200


class Interrupted(Exception):
    def __init__(self, signum: int, why: str):
        super().__init__(why)
        self.signum = signum
        self.why = why


class Ticker:
    def __init__(
        self,
        registry: Registry,
        signals: SignalCapture,
        *,
        console: Console | None,
        follower: LogFollower | None,
        tie_fd: int | None = None,
        secrets: dict[str, str] | None = None,
    ):
        self.registry = registry
        self.signals = signals
        self.console = console
        self.follower = follower
        self.tie_fd = tie_fd
        self.secrets = secrets or {}

    def check(self) -> None:
        """Raise Interrupted if a signal came or the tie to our requester broke."""
        if self.signals.received:
            raise Interrupted(self.signals.received, "signal")
        if self.tie_fd is not None and _hung_up(self.tie_fd):
            self.tie_fd = None
            raise Interrupted(signal.SIGTERM, "the command that started it is gone")

    def tick(self, status: str | None = None, seconds: float = TICK) -> None:
        self.check()
        self.pump(status)
        time.sleep(seconds)
        self.check()

    def sleep(self, seconds: float, status: str | None = None) -> None:
        deadline = time.monotonic() + seconds
        while (left := deadline - time.monotonic()) > 0:
            self.tick(status, min(0.1, left))

    def pump(self, status: str | None) -> None:
        if self.follower is not None and self.console is not None:
            for line in self.follower.read():
                self.console.line(render.mask_text(line, self.secrets))
        if status and self.console is not None:
            self.console.status(status)

    def console_clear(self) -> None:
        self.pump(None)
        if self.console is not None:
            self.console.clear_status()


def _hung_up(fd: int) -> bool:
    """True once the other end of the pipe is closed (its holder died or let go)."""
    try:
        ready, _, _ = select.select([fd], [], [], 0)
        if not ready:
            return False
        return os.read(fd, 1) == b""
    except OSError:
        return True
