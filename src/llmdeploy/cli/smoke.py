from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from llmdeploy.client.interrupt import Interrupted, Interrupts, exiting
from llmdeploy.errors import CheckError, InputError, NotFoundError
from llmdeploy.output import err, out
from llmdeploy.profile import load as profile_load
from llmdeploy.profile.model import Profile
from llmdeploy.run.state import Registry
from llmdeploy.smoke import checks as smoke
from llmdeploy.smoke import report as smoke_report

# Engines whose OpenAI server enforces response_format json_schema.
JSON_SCHEMA_ENGINES = {"vllm", "sglang"}


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


def resolve_target(
    name: str | None,
    *,
    url: str | None,
    model: str | None,
    profile_path: str | None,
    api_key_env: str | None,
    verb: str = "smoke",
) -> smoke.Target:
    """The deployment NAME (or the only one running), or the server at `url`; `verb`
    names the command in the hint when there is nothing to pick."""
    profile = profile_load.load(profile_path) if profile_path else None
    if url:
        if not (model or profile):
            raise InputError("--url needs --model (or --profile)")
        return target_for(
            url.rstrip("/").removesuffix("/v1"),
            model or (profile.served_model_name if profile else ""),
            profile,
            _key(api_key_env),
        )
    registry = Registry()
    if name is None:
        names = registry.names()
        if len(names) != 1:
            raise InputError(
                "name the deployment to check" if names else "no deployment is running",
                hint=f"llmdeploy {verb} NAME, or --url URL --model M",
            )
        name = names[0]
    record = registry.load(name)
    if profile is None:
        try:
            profile = profile_load.load(record.profile)
        except Exception:
            raise NotFoundError(f"the profile of {name!r} is gone: {record.profile}") from None
    return target_for(
        record.base_url, record.served_model_name, profile, _key(api_key_env or record.api_key_env)
    )


def target_for(
    base_url: str, model: str, profile: Profile | None, api_key: str | None
) -> smoke.Target:
    if profile is None:
        return smoke.Target(base_url=base_url, model=model, api_key=api_key)
    return smoke.Target(
        base_url=base_url,
        model=model,
        engine=profile.engine.type,
        api_key=api_key,
        max_model_len=profile.resources.max_model_len,
        reasoning_parser=profile.reasoning.parser,
        prompt_switches=profile.reasoning.prompt_switches,
        sampling={
            "thinking": profile.sampling.thinking.model_dump(),
            "non_thinking": profile.sampling.non_thinking.model_dump(),
        },
        json_schema=profile.engine.type in JSON_SCHEMA_ENGINES,
    )


def _key(variable: str | None) -> str | None:
    if variable is None:
        return None
    value = os.environ.get(variable)
    if not value:
        raise InputError(f"the API key variable {variable} is not set")
    return value
