"""What every engine builder takes and returns. Builders are pure: no engine
import, no I/O, the same Launch for the same inputs (golden-tested)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from llmdeploy.profile.model import Profile
from llmdeploy.versions import Version


@dataclass(frozen=True)
class BuildContext:
    """Everything a launch needs that is not in the profile."""

    model_path: str
    port: int
    python: str  # interpreter for `python -m …` engines
    api_key: str | None = None  # the resolved secret, if the profile names one
    version: Version | None = None  # overrides profile.engine.version (plan --engine-version)


@dataclass(frozen=True)
class Launch:
    argv: tuple[str, ...]
    env: Mapping[str, str]  # set on top of the caller's environment
    health_path: str
    base_url: str  # where clients reach it, e.g. http://127.0.0.1:8000
    # secret value -> how to show it (e.g. "$MY_KEY"); never printed as is
    secrets: Mapping[str, str] = field(default_factory=dict)
    # variables removed from the caller's environment (they would override our flags)
    unset_env: tuple[str, ...] = ()


def client_host(host: str) -> str:
    """A server bound to every interface is reached on loopback."""
    return {"0.0.0.0": "127.0.0.1", "::": "::1", "": "127.0.0.1"}.get(host, host)


def base_url(profile: Profile, port: int) -> str:
    host = client_host(profile.serving.host)
    host = f"[{host}]" if ":" in host else host
    return f"http://{host}:{port}"


def version_of(profile: Profile, ctx: BuildContext) -> Version | None:
    return ctx.version if ctx.version is not None else profile.engine.parsed_version


def secrets_of(profile: Profile, ctx: BuildContext) -> dict[str, str]:
    if ctx.api_key and profile.serving.api_key:
        return {ctx.api_key: "$" + profile.serving.api_key[2:-1]}
    return {}


def common_env(profile: Profile) -> dict[str, str]:
    env: dict[str, str] = {}
    ids = profile.resources.gpu_ids
    if ids is not None:
        env["CUDA_VISIBLE_DEVICES"] = ",".join(str(i) for i in ids)
    return env


def finish(
    profile: Profile,
    ctx: BuildContext,
    argv: list[str],
    env: dict[str, str],
    health_path: str,
    unset_env: tuple[str, ...] = (),
) -> Launch:
    """Append the user's extra flags and environment (theirs win) and wrap up."""
    return Launch(
        argv=(*argv, *profile.extra_args),
        env={**env, **profile.env},
        health_path=profile.engine.health_path or health_path,
        base_url=base_url(profile, ctx.port),
        secrets=secrets_of(profile, ctx),
        unset_env=tuple(v for v in unset_env if v not in profile.env),
    )
