"""Replicas behind a router: the profile's `replicas` and `router` settings and the rules
between them and the rest of the profile. The router is SMG (package `smg`), a real
gateway, not ours; llmdeploy only starts it, tells it the replicas' URLs, and supervises it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Literal

from pydantic import Field

from llmdeploy.profile.strict import Strict

if TYPE_CHECKING:
    from llmdeploy.profile.model import Profile

# SMG's load-balancing policies (`--policy`, smg 1.13).
POLICIES = ("round_robin", "random", "cache_aware", "power_of_two")
Policy = Literal["round_robin", "random", "cache_aware", "power_of_two"]
MAX_REPLICAS = 64

# SMG admits a worker only once the worker's `/health` answers (it probes that path
# whatever its health-check flag says), so an engine without one is never served.
NO_HEALTH = {
    "llamacpp": "llama-cpp-python's server has no /health, and the router (SMG) admits a "
    "worker only after its /health answers",
}


class Router(Strict):
    policy: Policy = Field("round_robin", description="How requests are spread over replicas")
    drain_s: float = Field(
        5.0,
        ge=0,
        le=3600,
        description="Seconds a replica keeps serving after the router "
        "stops sending it new requests, before it is stopped (scale down)",
    )
    extra_args: list[str] = Field(
        default_factory=list, description="Router (SMG) flags passed verbatim, after llmdeploy's"
    )


def check(profile: Profile) -> None:
    """Raise ValueError (a one-line message naming the field) for replica settings that
    cannot work. Called from the profile's cross-field validation."""
    if profile.router is None and profile.replicas == 1:
        return
    engine = profile.engine.type
    if engine in NO_HEALTH:
        raise ValueError(f"replicas: {engine} cannot run behind the router: {NO_HEALTH[engine]}")
    health = profile.engine.health_path
    if engine == "command" and health not in (None, "/health"):
        raise ValueError(
            f"replicas: the router (SMG) admits a worker only once its /health answers; "
            f"engine.health_path is {health}"
        )
    ids = profile.resources.gpu_ids
    tp = profile.resources.tensor_parallel_size
    if ids is not None and len(ids) != profile.replicas * tp:
        raise ValueError(
            f"resources.gpus: {profile.replicas} replicas x tensor_parallel_size {tp} = "
            f"{profile.replicas * tp} GPUs, but {len(ids)} are given"
        )


def replica_gpus(profile: Profile, index: int) -> list[int] | None:
    """The GPUs of replica `index`: its own `tensor_parallel_size` of the listed ones."""
    ids = profile.resources.gpu_ids
    if ids is None:
        return None
    tp = profile.resources.tensor_parallel_size
    return ids[index * tp : (index + 1) * tp]
