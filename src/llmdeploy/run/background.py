"""The background supervisor of `up --detach` (and of deployments a command brings up
for itself): the same Supervisor as a foreground `up`, in a process of its own.

    python -m llmdeploy.run.background JOB_JSON     (a `BackgroundJob`)

It inherits the deployment's lock from the parent that took it (so two racing starts
are decided, and reported, in the foreground), writes everything to the deployment's
log, and exits with the code a foreground `up` would have.
"""

from __future__ import annotations

import json
import os
import sys
from dataclasses import asdict, dataclass
from pathlib import Path

from llmdeploy.errors import LlmdeployError
from llmdeploy.run.signals import SignalCapture
from llmdeploy.run.state import Registry
from llmdeploy.run.supervisor import RunOptions, Supervisor
from llmdeploy.run.waits import Ticker


@dataclass(frozen=True)
class BackgroundJob:
    profile: str
    options: RunOptions
    lock_fd: int
    state_dir: str

    def to_argv(self) -> list[str]:
        return [sys.executable, "-m", "llmdeploy.run.background", json.dumps(asdict(self))]

    @classmethod
    def parse(cls, text: str) -> BackgroundJob:
        data = json.loads(text)
        return cls(
            profile=str(data["profile"]),
            options=RunOptions(**data["options"]),
            lock_fd=int(data["lock_fd"]),
            state_dir=str(data["state_dir"]),
        )


def run(job: BackgroundJob) -> int:
    from llmdeploy.engines import planning
    from llmdeploy.profile import distributed, load

    profile_file = Path(job.profile)
    options = job.options
    profile = distributed.node_profile(load.load(profile_file), options.node_rank, options.head)
    plan = planning.make_plan(
        profile,
        environ=os.environ,
        cache=Path(options.cache),
        port=options.port,
        node_rank=options.node_rank,
        head=options.head,
    )
    registry = Registry(Path(job.state_dir))
    with SignalCapture() as signals:
        ticker = Ticker(
            registry,
            signals,
            console=None,
            follower=None,
            tie_fd=job.options.tie_fd,
        )
        supervisor = Supervisor(
            plan, profile_file, job.options, ticker, planning.api_key(profile, os.environ)
        )
        return supervisor.run(lock_fd=job.lock_fd)


def main(argv: list[str]) -> int:
    try:
        return run(BackgroundJob.parse(argv[0]))
    except LlmdeployError as error:
        print(f"[llmdeploy] error: {error.message}", file=sys.stderr, flush=True)
        if error.hint:
            print(f"[llmdeploy] hint: {error.hint}", file=sys.stderr, flush=True)
        return error.exit_code


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
