"""`llmdeploy scale NAME N`: ask a running routed deployment's supervisor for N replicas
(run/scaling.py), then wait until it has them — new ones ready and admitted by the
router, removed ones drained and stopped — or says why not."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Annotated

import typer

from llmdeploy.cli.options import SECONDS, NumberRule, number_option
from llmdeploy.profile.replicas import MAX_REPLICAS

if TYPE_CHECKING:
    from llmdeploy.run.scaling import ScaleRequest
    from llmdeploy.run.state import Record, Registry

REPLICAS = NumberRule(int, 1, maximum=MAX_REPLICAS)


def scale_command(
    name: Annotated[str, typer.Argument(help="A running deployment started with replicas.")],
    replicas: Annotated[
        str,
        typer.Argument(
            help=f"Replicas wanted (1-{MAX_REPLICAS}).",
            parser=str,
            callback=REPLICAS.check,
            metavar="N",
        ),
    ],
    timeout: Annotated[
        float, number_option(help="Seconds to wait for the new shape.", rule=SECONDS)
    ] = 600.0,
) -> None:
    """Add or remove replicas of a running deployment without restarting the others:
    new replicas join the router once ready; removed ones leave the router first, finish
    what they were sent (router.drain_s), then stop. Ctrl-C stops only the waiting."""
    raise typer.Exit(run(name, int(replicas), timeout=timeout))


def run(name: str, replicas: int, *, timeout: float) -> int:
    from llmdeploy.errors import ConflictError, StartError
    from llmdeploy.output import err, out
    from llmdeploy.run import scaling
    from llmdeploy.run.signals import SignalCapture, exit_code
    from llmdeploy.run.state import Record, Registry, check_name

    registry = Registry()
    first = _running(registry, check_name(name))
    mine = scaling.ScaleRequest(first.run_id, replicas, time.time())
    _write(registry, name, mine)
    deadline, shown = time.monotonic() + timeout, ""
    with SignalCapture() as signals:
        while not signals.received:
            record = registry.read(name)
            if (
                not isinstance(record, Record)  # removed by `down` (or corrupt)
                or record.run_id != first.run_id
                or not record.owner_alive()
            ):
                raise StartError(f"{name} stopped while scaling", hint=f"llmdeploy logs {name}")
            why = scaling.refused(record, replicas)
            if why:
                raise ConflictError(f"scale {name}: {why}")
            now = scaling.progress(record, replicas)
            if now.done:
                out(f"{name}: {replicas} replica(s) ready")
                return 0
            _check_still_asked(registry, name, mine)
            if now.text != shown:
                err(f"scaling {name} to {replicas}: {now.text}")
                shown = now.text
            if time.monotonic() > deadline:
                raise StartError(
                    f"{name} did not reach {replicas} ready replicas in {timeout:g} s "
                    f"({now.text})",
                    hint=f"`llmdeploy status` and `llmdeploy logs {name}` say why",
                )
            time.sleep(0.2)
        err(f"stopped waiting; {name} goes on scaling to {replicas}")
        return exit_code(signals.received)
    return 0


def _running(registry: Registry, name: str) -> Record:
    from llmdeploy.errors import ConflictError
    from llmdeploy.run.phases import Phase

    record = registry.load(name)
    if not record.owner_alive() or record.phase.terminal:
        raise ConflictError(f"{name} is not running ({record.phase.value})")
    if not record.members:
        raise ConflictError(
            f"{name} runs one engine without a router: it cannot scale",
            hint="give its profile `replicas:` (or `router:`) and start it again",
        )
    if record.phase is not Phase.READY:
        raise ConflictError(
            f"{name} is {record.phase.value}; scale a deployment once it is ready"
        )
    return record


def _write(registry: Registry, name: str, request: ScaleRequest) -> None:
    """Leave the request; a path that cannot take it (a directory planted there, a full
    disk) is a one-line error before anything changed."""
    from llmdeploy.errors import LlmdeployError

    try:
        request.write(registry, name)
    except OSError as exc:
        path = registry.scale_path(name)
        raise LlmdeployError(
            f"cannot write the scale request {path}: {exc.strerror or exc}"
        ) from None


def _check_still_asked(registry: Registry, name: str, mine: ScaleRequest) -> None:
    """A later `scale` replaced this one's request (there is one per deployment): the
    supervisor goes for that one, so waiting for this shape would last until the timeout.
    One asking the same number is the same wish: the wait goes on."""
    from llmdeploy.errors import ConflictError
    from llmdeploy.run import scaling

    now = scaling.ScaleRequest.read(registry, name)
    if now is None or (now.run_id, now.replicas) == (mine.run_id, mine.replicas):
        return  # none: `down` removing it (the record goes first: the loop says so)
    what = f"another `scale` asked for {now.replicas}"
    raise ConflictError(
        f"scale {name} to {mine.replicas}: superseded ({what})",
        hint="`llmdeploy status` shows the deployment",
    )
