"""A deployment that lives as long as one command needs it (`bench --compare`,
`generate PROFILE`): started in the background (its log shown while it starts), tied to
this process (see detach.Tie: if this process dies, even by SIGKILL, the deployment
stops itself), and taken down at the end — also when the command fails or is
interrupted."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from llmdeploy.errors import LlmdeployError, StopError
from llmdeploy.output import err
from llmdeploy.run import start, teardown
from llmdeploy.run.detach import Tie
from llmdeploy.run.signals import SignalCapture
from llmdeploy.run.state import Registry


@contextmanager
def deployment(
    argument: str, *, timeout: float | None = None, grace: float = 15.0
) -> Iterator[str]:
    """Bring the profile up, yield its deployment name, take it down at the end.

    A deployment of that name already running is refused (ConflictError), never reused
    nor stopped: we only take down what we brought up."""
    prepared = start.prepare(argument, timeout=timeout, grace=grace)
    name = prepared.profile.name
    tie = Tie()
    try:
        code = start.background(prepared, tie=tie)
        if code != 0:
            raise _not_up(name, code)
        try:
            yield name
        finally:
            stop(name, grace)
    finally:
        tie.close()  # in every case: the supervisor stops if it has not been stopped


def stop(name: str, grace: float) -> None:
    with SignalCapture() as signals:  # a signal now means: kill at once
        hurry = lambda: signals.received is not None  # noqa: E731
        report = teardown.take_down(Registry(), name, grace, hurry=hurry)
    if not report.clean:
        left = [p.label() for p in report.survivors]
        left += [f"{pid} (still on a GPU)" for pid in report.gpu_holders]
        raise StopError(f"processes of {name} survived the stop: {', '.join(left)}")
    err(f"stopped {name} in {report.seconds:.1f} s; no process left")


def _not_up(name: str, code: int) -> LlmdeployError:
    if code >= 128:
        error = LlmdeployError(f"interrupted while {name} was starting")
    else:
        error = LlmdeployError(
            f"{name} did not come up (exit {code}); its log is above",
            hint=f"llmdeploy logs {name}",
        )
    error.exit_code = code  # the start's own code: 3 engine failed, 4 preflight, …
    return error
