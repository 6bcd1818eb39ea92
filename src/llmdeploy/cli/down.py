"""`llmdeploy down`: parse → run/teardown.py → report."""

from __future__ import annotations

from llmdeploy.errors import InputError, NotFoundError, StopError
from llmdeploy.output import out
from llmdeploy.run import teardown
from llmdeploy.run.signals import SignalCapture
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
    failed = []
    with SignalCapture() as signals:  # a signal to `down` means: skip the grace, kill now
        for name in names:
            try:
                report = teardown.take_down(
                    registry, name, grace, hurry=lambda: signals.received is not None
                )
            except NotFoundError:
                if not every:
                    raise
                continue  # stopped by someone else meanwhile
            extra = f" (removed a record that was {report.note})" if report.note else ""
            if report.clean:
                out(f"stopped {name} in {report.seconds:.1f} s; no process left{extra}")
                continue
            left = [p.label() for p in report.survivors]
            left += [f"{pid} (still on a GPU)" for pid in report.gpu_holders]
            failed.append(f"{name}: {', '.join(left)}")
        if failed:
            raise StopError(
                "processes survived: " + "; ".join(failed),
                hint="they may be stuck in the kernel (D state); check `ps -o pid,stat,cmd -p PID`",
            )
        return 128 + signals.received if signals.received else 0
