"""Which server a command talks to: a deployment by name (or the only one), or a URL;
with what it should expect from the profile. Shared by smoke, bench and generate."""

from __future__ import annotations

import os

from llmdeploy.errors import InputError, LlmdeployError, NotFoundError
from llmdeploy.profile import load as profile_load
from llmdeploy.profile.model import Profile
from llmdeploy.run.state import Registry
from llmdeploy.smoke import checks as smoke

# Engines whose OpenAI server enforces response_format json_schema.
JSON_SCHEMA_ENGINES = {"vllm", "sglang"}


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
        except LlmdeployError as exc:
            # Its checks, sampling and reasoning settings come from the profile it was
            # started from; say why that no longer loads (a file gone, an unset ${VAR}).
            raise NotFoundError(
                f"{name!r} was started from {record.profile}, which does not load here: "
                f"{exc.message}",
                hint="set what it needs (e.g. its ${VAR}s) or pass the profile with --profile",
            ) from None
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
        engine_version=profile.engine.version,
        reasoning_field=profile.reasoning.field,
        tool_parser=profile.tools.parser if profile.tools else None,
    )


def _key(variable: str | None) -> str | None:
    if variable is None:
        return None
    value = os.environ.get(variable)
    if not value:
        raise InputError(f"the API key variable {variable} is not set")
    return value
