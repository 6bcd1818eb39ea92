"""`llmdeploy up`: parse → run/start.py → exit code. Foreground supervises here;
`--detach` and `--smoke` start the same supervisor in the background."""

from __future__ import annotations

from pathlib import Path

from llmdeploy.client.interrupt import Interrupted
from llmdeploy.engines.exposure import exposure_warning
from llmdeploy.errors import StopError
from llmdeploy.output import err
from llmdeploy.run import start, teardown
from llmdeploy.run.detach import Tie
from llmdeploy.run.signals import SignalCapture
from llmdeploy.run.state import Registry


def run(
    argument: str,
    *,
    detached: bool,
    timeout: float | None,
    probe: bool,
    grace: float,
    gpu_check: bool,
    smoke: bool = False,
    junit: Path | None = None,
    offline: bool = False,
    node_rank: int = 0,
    head: str | None = None,
) -> int:
    prepared = start.prepare(
        argument,
        timeout=timeout,
        probe=probe,
        grace=grace,
        gpu_check=gpu_check,
        offline=offline,
        node_rank=node_rank,
        head=head,
    )
    _warn_exposure(prepared)
    if not (detached or smoke):
        return start.foreground(prepared)
    # `up --smoke` without --detach: the deployment lives only as long as this command.
    tie = None if detached else Tie()
    try:
        code = start.background(prepared, tie=tie)
        if code != 0 or not smoke:
            return code
        try:
            return _smoke_then(prepared.profile.name, keep=detached, junit=junit, grace=grace)
        except Interrupted as stop:  # said so in one line; the deployment is down already
            return stop.code
    finally:
        if tie is not None:
            tie.close()


def _warn_exposure(prepared: start.Prepared) -> None:
    warning = exposure_warning(prepared.profile)
    if warning:
        err(warning)


def _smoke_then(name: str, *, keep: bool, junit: Path | None, grace: float) -> int:
    """Smoke a deployment that just became ready; keep it only if asked and all passed."""
    from llmdeploy.smoke import checks, session, target

    passed = False
    try:
        found = target.resolve_target(
            name, url=None, model=None, profile_path=None, api_key_env=None
        )
        session.run_target(found, checks.select([], []), junit=junit, as_json=False)
        passed = True
    finally:
        if not (keep and passed):
            with SignalCapture() as signals:
                report = teardown.take_down(
                    Registry(), name, grace, hurry=lambda: signals.received is not None
                )
            if not report.clean:
                raise StopError(f"processes of {name} survived the stop")
    return 0
