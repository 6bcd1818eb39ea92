"""The one place an error becomes text: details, `error: …`, `hint: …` on stderr."""

from __future__ import annotations

from llmdeploy.errors import LlmdeployError
from llmdeploy.output import err


def report(exc: LlmdeployError) -> None:
    if exc.details:
        err(exc.details.rstrip("\n"))
    err(f"error: {exc.message}")
    if exc.hint:
        err(f"hint: {exc.hint}")
