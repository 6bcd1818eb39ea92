"""`llmdeploy smoke`: parse → smoke/target.py + smoke/session.py → exit code."""

from __future__ import annotations

from pathlib import Path

from llmdeploy.client.interrupt import Interrupted, Interrupts, exiting
from llmdeploy.errors import InputError
from llmdeploy.output import err
from llmdeploy.smoke import checks as smoke
from llmdeploy.smoke.session import run_target
from llmdeploy.smoke.target import resolve_target


def run(
    name: str | None,
    *,
    url: str | None,
    model: str | None,
    profile_path: str | None,
    api_key_env: str | None,
    only: list[str],
    skip: list[str],
    junit: Path | None,
    as_json: bool,
) -> int:
    with Interrupts():
        try:
            try:
                selected = smoke.select(only, skip)
            except ValueError as exc:
                raise InputError(str(exc)) from None
            target = resolve_target(
                name, url=url, model=model, profile_path=profile_path, api_key_env=api_key_env
            )
            return run_target(target, selected, junit=junit, as_json=as_json)
        except Interrupted as exc:
            if not exc.reported:
                err(f"interrupted by {exc.name}")
            exiting()
            return exc.code
