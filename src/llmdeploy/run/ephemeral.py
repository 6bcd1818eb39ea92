"""A deployment that lives as long as one command needs it (`bench --compare`,
`generate PROFILE`): brought up with the `up --detach` machinery (its log shown while it
starts), and taken down afterwards — also when the command fails or is interrupted."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from llmdeploy.errors import LlmdeployError, StopError
from llmdeploy.output import err
from llmdeploy.profile import load as profile_load
from llmdeploy.profile import shipped
from llmdeploy.run import teardown
from llmdeploy.run.signals import SignalCapture
from llmdeploy.run.state import Registry


@contextmanager
def deployment(
    argument: str, *, timeout: float | None = None, grace: float = 15.0
) -> Iterator[str]:
    """Bring the profile up detached, yield its deployment name, take it down at the end.

    A deployment of that name already running is refused (ConflictError), never reused
    nor stopped: we only take down what we brought up."""
    from llmdeploy.cli import up

    name = profile_load.load(shipped.resolve(argument)).name
    code = up.run(
        argument,
        detached=True,
        supervisor=False,
        timeout=timeout,
        probe=True,
        grace=grace,
        gpu_check=True,
    )
    if code != 0:
        raise _not_up(name, code)
    try:
        yield name
    finally:
        stop(name, grace)


def stop(name: str, grace: float) -> None:
    with SignalCapture():  # a second Ctrl-C must not cut the stop itself short
        report = teardown.take_down(Registry(), name, grace=grace)
    if not report.clean:
        left = [f"{m.pid} {m.name}" for m in report.survivors]
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
