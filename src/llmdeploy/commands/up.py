from __future__ import annotations

import os

from llmdeploy import detach, paths, planning, profile_load, shipped
from llmdeploy.console import Console
from llmdeploy.errors import ConflictError
from llmdeploy.lifecycle import Deployment, UpOptions
from llmdeploy.signals import SignalCapture
from llmdeploy.state import Registry


def run(
    argument: str,
    *,
    detached: bool,
    supervisor: bool,
    timeout: float | None,
    probe: bool,
    grace: float,
    gpu_check: bool,
) -> int:
    path = shipped.resolve(argument)
    profile = profile_load.load(path)
    registry = Registry()
    budget = timeout if timeout is not None else profile.readiness.timeout_s
    if detached and not supervisor:
        if registry.is_live(profile.name):
            raise ConflictError(
                f"deployment {profile.name!r} is already running",
                hint=f"`llmdeploy down {profile.name}` first",
            )
        planning.api_key(profile, os.environ)  # a missing key fails here, not in the background
        options = {
            "--timeout": str(budget),
            "--grace": str(grace),
            "--no-probe": None if probe else "",
            "--skip-gpu-check": None if gpu_check else "",
        }
        with SignalCapture() as signals:
            return detach.run_detached(
                profile.name,
                detach.supervisor_args(path, options),
                registry=registry,
                console=Console(),
                signals=signals,
            )
    plan = planning.make_plan(profile, environ=os.environ, cache=paths.cache_dir())
    console = None if supervisor else Console()  # the detached parent shows the log
    options_ = UpOptions(
        timeout_s=budget, probe=probe, grace=grace, gpu_check=gpu_check, detached=supervisor
    )
    with SignalCapture() as signals:
        return Deployment(
            plan,
            profile_file=path,
            registry=registry,
            console=console,
            signals=signals,
            options=options_,
            api_key=planning.api_key(profile, os.environ),
        ).run()
