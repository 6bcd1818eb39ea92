from __future__ import annotations

from llmdeploy.errors import InputError, StopError
from llmdeploy.output import out
from llmdeploy.run import teardown
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
    for name in names:
        report = teardown.take_down(registry, name, grace)
        if report.clean:
            out(f"stopped {name} in {report.seconds:.1f} s; no process left")
            continue
        left = [f"{m.pid} ({m.name})" for m in report.survivors]
        left += [f"{pid} (still on a GPU)" for pid in report.gpu_holders]
        failed.append(f"{name}: {', '.join(left)}")
    if failed:
        raise StopError(
            "processes survived: " + "; ".join(failed),
            hint="they may be stuck in the kernel (D state); check `ps -o pid,stat,cmd -p PID`",
        )
    return 0
