from __future__ import annotations

import time

from llmdeploy.console import LogFollower
from llmdeploy.errors import NotFoundError
from llmdeploy.output import out
from llmdeploy.run import diagnosis
from llmdeploy.run.signals import SignalCapture, exit_code
from llmdeploy.run.state import Registry


def run(name: str, *, follow: bool, lines: int) -> int:
    registry = Registry()
    path = registry.log_path(name)
    if not path.exists() or (path.stat().st_size == 0 and name not in registry.names()):
        raise NotFoundError(f"no log for {name!r}", hint="`llmdeploy status` lists deployments")
    for line in diagnosis.tail(path, lines):
        out(line)
    if not follow:
        return 0
    follower = LogFollower(path, from_end=True)
    with SignalCapture() as signals:
        while not signals.received:
            for line in follower.read():
                out(line)
            if not registry.is_live(name):
                for line in follower.read():
                    out(line)
                return 0
            time.sleep(0.1)
        return exit_code(signals.received)
