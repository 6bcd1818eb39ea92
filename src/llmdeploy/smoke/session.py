"""Running the smoke checks against a target and reporting them (table or JSON, JUnit):
what `smoke` and `up --smoke` both call."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from llmdeploy.client.interrupt import Interrupted, Interrupts
from llmdeploy.errors import CheckError
from llmdeploy.output import err, out
from llmdeploy.smoke import checks as smoke
from llmdeploy.smoke import report as smoke_report


def run_target(
    target: smoke.Target, selected: list[str], *, junit: Path | None, as_json: bool
) -> int:
    """Run the checks and report them. A signal stops them at once (Interrupted, after one
    line saying how far they got): nothing is reported for checks cut short."""
    done: list[smoke.Check] = []
    with Interrupts() as signals:
        # Imported here, before the event loop: the other commands stay fast, and a signal
        # during this ~1 s import interrupts it (inside the loop it would wait for it).
        from openai import AsyncOpenAI

        try:
            signals.run(lambda: _checks(AsyncOpenAI, target, selected, done))
        except Interrupted as exc:
            exc.reported = True
            err(f"interrupted by {exc.name}: {len(done)} of {len(selected)} checks done")
            raise
        out(smoke_report.to_json(target, done) if as_json else smoke_report.table(target, done))
        if junit:
            smoke_report.write_junit(junit, target, done)
    failed = [c.id for c in done if c.status == "fail"]
    if failed:
        raise CheckError(f"smoke failed: {', '.join(failed)}")
    return 0


async def _checks(
    openai_client: Any, target: smoke.Target, selected: list[str], done: list[smoke.Check]
) -> None:
    client = openai_client(
        base_url=target.base_url + "/v1",
        api_key=target.api_key or "none",
        max_retries=0,
        timeout=120,
    )
    try:
        await smoke.run_checks(target, client, selected, done)
    finally:
        await client.close()
