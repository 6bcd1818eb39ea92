from __future__ import annotations

import os
from pathlib import Path

from llmdeploy import paths
from llmdeploy.console import Console
from llmdeploy.engines import planning
from llmdeploy.errors import CheckError, ConflictError, StopError
from llmdeploy.profile import load as profile_load
from llmdeploy.profile import shipped
from llmdeploy.profile.model import Profile
from llmdeploy.run import detach
from llmdeploy.run.lifecycle import Deployment, UpOptions
from llmdeploy.run.signals import SignalCapture
from llmdeploy.run.state import Registry


def run(
    argument: str,
    *,
    detached: bool,
    supervisor: bool,
    timeout: float | None,
    probe: bool,
    grace: float,
    gpu_check: bool,
    smoke: bool = False,
    junit: Path | None = None,
    offline: bool = False,
) -> int:
    """A foreground `up` supervises in this process; `--detach` (and `--smoke`) start the
    same supervisor in the background (`--supervisor`) and follow it until ready."""
    path = shipped.resolve(argument)
    profile = profile_load.load(path)
    options = UpOptions(
        timeout_s=timeout if timeout is not None else profile.readiness.timeout_s,
        probe=probe,
        grace=grace,
        gpu_check=gpu_check,
        detached=supervisor,
        offline=offline,
        cache=paths.cache_dir(),
    )
    if (detached or smoke) and not supervisor:
        code = _start_in_background(path, profile, options)
        if code != 0 or not smoke:
            return code
        return _smoke_then(profile.name, Registry(), keep=detached, junit=junit)
    plan = planning.make_plan(profile, environ=os.environ, cache=options.cache)
    with SignalCapture() as signals:
        return Deployment(
            plan,
            profile_file=path,
            registry=Registry(),
            console=None if supervisor else Console(),  # the detached parent shows the log
            signals=signals,
            options=options,
            api_key=planning.api_key(profile, os.environ),
        ).run()


def _start_in_background(path: Path, profile: Profile, options: UpOptions) -> int:
    registry = Registry()
    if registry.is_live(profile.name):
        raise ConflictError(
            f"deployment {profile.name!r} is already running",
            hint=f"`llmdeploy down {profile.name}` first",
        )
    planning.api_key(profile, os.environ)  # a missing key fails here, not in the background
    flags = {
        "--timeout": str(options.timeout_s),
        "--grace": str(options.grace),
        "--no-probe": None if options.probe else "",
        "--skip-gpu-check": None if options.gpu_check else "",
        "--offline": "" if options.offline else None,
    }
    with SignalCapture() as signals:
        return detach.run_detached(
            profile.name,
            detach.supervisor_args(path, flags),
            registry=registry,
            console=Console(),
            signals=signals,
        )


def _smoke_then(name: str, registry: Registry, *, keep: bool, junit: Path | None) -> int:
    """Smoke a deployment that just became ready; keep it only if asked and all passed."""
    from llmdeploy.cli import smoke as smoke_command
    from llmdeploy.run import teardown
    from llmdeploy.smoke import checks as smoke

    passed = False
    try:
        target = smoke_command.resolve_target(
            name, url=None, model=None, profile_path=None, api_key_env=None
        )
        smoke_command.run_target(target, smoke.select([], []), junit=junit, as_json=False)
        passed = True
    finally:
        if not (keep and passed):
            report = teardown.take_down(registry, name, grace=15.0)
            if not report.clean:
                raise StopError(f"processes of {name} survived the stop")
    return 0


__all__ = ["CheckError", "run"]
