"""A download as a process of its own, so that `up` can cancel it at once.

Hub clients download in their own threads and do not stop when asked; a download run
inside the supervisor would keep it from acting on Ctrl-C for as long as the download
lasts (hours on a real model). As a child process carrying the deployment's tag it is
stopped like any other process of the deployment, and a later pull resumes it.

    python -m llmdeploy.hub.worker JOB_JSON      (a `PullJob`, see below)

stdout: one JSON object per line — {"progress": [done, total]} while it runs, then
{"done": {...}} or {"error": {"kind", "message", "hint"}}. Notes and the plain progress
line go to stderr (the deployment's log).
"""

from __future__ import annotations

import json
import sys
from dataclasses import asdict, dataclass
from pathlib import Path

from llmdeploy import errors
from llmdeploy.hub.clients import hub_for
from llmdeploy.hub.pull import PullResult, pull
from llmdeploy.profile.source import ModelSpec


@dataclass(frozen=True)
class PullJob:
    model: dict[str, object]  # ModelSpec.model_dump(mode="json")
    cache: str
    offline: bool

    def to_argv(self) -> list[str]:
        return [sys.executable, "-m", "llmdeploy.hub.worker", json.dumps(asdict(self))]


def _emit(obj: dict[str, object]) -> None:
    sys.stdout.write(json.dumps(obj) + "\n")
    sys.stdout.flush()


def run(job: PullJob) -> PullResult:
    model = ModelSpec.model_validate(job.model)
    cache = Path(job.cache)
    hub = None if job.offline else hub_for(model.source, cache)

    def note(text: str) -> None:
        print(f"[llmdeploy] {text}", file=sys.stderr, flush=True)

    return pull(
        model,
        cache,
        hub=hub,
        offline=job.offline,
        note=note,
        observe=lambda done, total: _emit({"progress": [done, total]}),
    )


def main(argv: list[str]) -> int:
    job = PullJob(**json.loads(argv[0]))
    try:
        result = run(job)
    except errors.LlmdeployError as exc:
        _emit({"error": {"kind": type(exc).__name__, "message": exc.message, "hint": exc.hint}})
        return exc.exit_code
    _emit(
        {
            "done": {
                "path": str(result.path),
                "fetched": result.fetched,
                "cached": result.cached,
                "bytes_fetched": result.bytes_fetched,
                "seconds": result.seconds,
                "found": result.found,
            }
        }
    )
    return 0


def error_from(report: dict[str, object]) -> errors.LlmdeployError:
    """The worker's error, raised again in the supervisor as the same kind."""
    kind = getattr(errors, str(report.get("kind")), errors.HubError)
    if not (isinstance(kind, type) and issubclass(kind, errors.LlmdeployError)):
        kind = errors.HubError
    hint = report.get("hint")
    error: errors.LlmdeployError = kind.__new__(kind)
    errors.LlmdeployError.__init__(
        error, str(report.get("message")), hint=str(hint) if hint else None
    )
    return error


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
