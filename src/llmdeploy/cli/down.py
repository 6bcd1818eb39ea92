"""`llmdeploy down`: parse → run/teardown.py → report. With several names (or --all),
one that cannot be stopped does not keep the others running."""

from __future__ import annotations

from llmdeploy.errors import InputError, LlmdeployError, NotFoundError, StopError
from llmdeploy.output import err, out
from llmdeploy.run import teardown
from llmdeploy.run.signals import SignalCapture, exit_code
from llmdeploy.run.state import Registry


def run(names: list[str], *, every: bool, grace: float) -> int:
    registry = Registry()
    if every:
        names = registry.names()
        if not names:
            out("nothing to stop")
            return 0
    elif not names:
        raise InputError("name a deployment, or pass --all", hint="`llmdeploy status` lists them")
    failures: list[LlmdeployError] = []
    with SignalCapture() as signals:  # a signal to `down` means: skip the grace, kill now
        for name in names:
            try:
                _one(registry, name, grace, lambda: signals.received is not None)
            except NotFoundError as error:
                if not every:  # --all: stopped by someone else meanwhile, fine
                    failures.append(error)
            except LlmdeployError as error:
                failures.append(error)
    if len(failures) == 1:
        raise failures[0]
    if failures:
        for earlier in failures[:-1]:
            err(f"error: {earlier.message}")
        raise failures[-1]
    return exit_code(signals.received) if signals.received else 0


def _one(registry: Registry, name: str, grace: float, hurry: teardown.Hurry) -> None:
    report = teardown.take_down(registry, name, grace, hurry=hurry)
    extra = f" (removed a record that was {report.note})" if report.note else ""
    if report.clean:
        out(f"stopped {name} in {report.seconds:.1f} s; no process left{extra}")
        return
    left = [p.label() for p in report.survivors]
    left += [f"{pid} (still on a GPU)" for pid in report.gpu_holders]
    raise StopError(
        f"processes of {name} survived: {', '.join(left)}",
        hint="they may be stuck in the kernel (D state); check `ps -o pid,stat,cmd -p PID`",
    )
