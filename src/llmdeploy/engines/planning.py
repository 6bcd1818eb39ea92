"""Profile -> the exact launch, shared by `plan` (to show it) and `up` (to run it)."""

from __future__ import annotations

import os
import socket
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path

from llmdeploy.engines import nodes, raynodes, reasoning, registry, router
from llmdeploy.engines.base import BuildContext, Launch
from llmdeploy.errors import InputError
from llmdeploy.hub import lookup
from llmdeploy.hub.found import Found
from llmdeploy.profile import replicas
from llmdeploy.profile.model import Profile
from llmdeploy.versions import Version


@dataclass(frozen=True)
class Plan:
    profile: Profile
    launch: Launch
    model_path: Path
    port_was_auto: bool
    found: Found | None = None  # the model lies in another cache (hub/found.py), used in place
    # With a router (profile.routed): `launch` is the router, clients' one URL, and these
    # are the engines behind it, one per replica. Empty: `launch` is the one engine.
    replicas: tuple[Launch, ...] = ()

    context: BuildContext | None = None  # what the launches were built from (for `scale`)
    node_rank: int = 0  # the node whose part `launch` is (profile.nodes > 1)
    ray_node: Launch | None = None  # node 0 on Ray: its `ray start --head`, before the engine


def make_plan(
    profile: Profile,
    *,
    environ: Mapping[str, str],
    cache: Path,
    version: Version | None = None,
    port: int | None = None,
    replica_ports: Sequence[int] = (),
    node_rank: int = 0,
    head: str | None = None,
) -> Plan:
    if version is not None and profile.reasoning.parser is not None:
        try:
            reasoning.check(profile.reasoning.parser, profile.engine.type, version)
        except ValueError as exc:
            raise InputError(str(exc)) from None
    # offline only: a copy found in another cache is named here, verified by pull/up
    model_path, found = lookup.serving_path(profile.model, cache, environ)
    auto = profile.serving.port == "auto"
    chosen = (
        port
        if port is not None
        else (free_port(profile.serving.host) if auto else int(profile.serving.port))
    )
    ctx = BuildContext(
        model_path=str(model_path),
        port=chosen,
        python=sys.executable,
        api_key=api_key(profile, environ),
        version=version,
    )
    if profile.nodes > 1:
        return _node_plan(
            Plan(
                profile,
                registry.build(profile, ctx),
                model_path,
                auto,
                found,
                context=ctx,
                node_rank=node_rank,
            ),
            head,
        )
    if not profile.routed:
        return Plan(profile, registry.build(profile, ctx), model_path, auto, found, context=ctx)
    ports = list(replica_ports) or free_ports("127.0.0.1", profile.replicas, avoid={chosen})
    replicas = tuple(replica_launch(profile, ctx, k, p) for k, p in enumerate(ports))
    metrics = free_ports("127.0.0.1", 1, avoid={chosen, *ports})[0]
    front = router.build(profile, ctx, metrics)
    return Plan(profile, front, model_path, auto, found, replicas, ctx)


def _node_plan(plan: Plan, head: str | None) -> Plan:
    """Node `plan.node_rank`'s part: its engine command (native), or its Ray node and, on
    node 0, the engine on the Ray cluster (raynodes.py)."""
    profile, ctx, rank = plan.profile, plan.context, plan.node_rank
    assert ctx is not None
    address = nodes.head_address(profile, head)
    if profile.distributed_settings.backend == "native":
        return replace(plan, launch=nodes.node_launch(profile, ctx, rank, address))
    ray_node = raynodes.ray_node_launch(profile, ctx, rank, address)
    if rank:
        return replace(plan, launch=ray_node)  # a Ray node is all node K runs
    return replace(plan, launch=raynodes.engine_launch(profile, ctx, address), ray_node=ray_node)


def replica_launch(profile: Profile, ctx: BuildContext, index: int, port: int) -> Launch:
    """Replica `index` on `port`: bound to loopback (only the router is exposed), with
    its own share of the GPUs and, for vLLM, its own base for internal ports."""
    serving = profile.serving.model_copy(update={"host": "127.0.0.1", "port": port})
    resources = profile.resources.model_copy(update={"gpus": replicas.replica_gpus(profile, index)})
    one = profile.model_copy(update={"serving": serving, "resources": resources})
    launch = registry.build(one, replace(ctx, port=port))
    if profile.engine.type == "transformers" and profile.resources.gpu_ids is None:
        return replace(launch, env={**_cpu_share(profile), **launch.env})
    if profile.engine.type != "vllm" or "VLLM_PORT" in profile.env:
        return launch
    # vLLM takes its internal ports from VLLM_PORT upwards (else at random); give each
    # replica its own base so a VLLM_PORT in the caller's environment cannot make two
    # replicas race for the same ports.
    base = free_ports("127.0.0.1", 1, avoid={port})[0]
    return replace(launch, env={**launch.env, "VLLM_PORT": str(base)})


def _cpu_share(profile: Profile) -> dict[str, str]:
    """torch on CPU starts a compute thread per core in every replica: two replicas on two
    cores then fight (measured with the tiny Qwen3: 0.09x the tokens/s of one replica;
    with one thread each, 1.75x — benchmarks/replica_scaling.py). Each replica gets its
    share of the cores, unless the profile's env says otherwise."""
    if "OMP_NUM_THREADS" in profile.env:
        return {}
    cores = os.cpu_count() or 1
    return {"OMP_NUM_THREADS": str(max(1, cores // profile.replicas))}


def api_key(profile: Profile, environ: Mapping[str, str]) -> str | None:
    ref = profile.serving.api_key
    if ref is None:
        return None
    name = ref[2:-1]
    value = environ.get(name)
    if not value:
        raise InputError(f"serving.api_key: environment variable {name} is not set or empty")
    return value


def free_ports(host: str, count: int, avoid: set[int]) -> list[int]:
    """`count` distinct free ports, none in `avoid` (free_port may name a port twice)."""
    found: list[int] = []
    while len(found) < count:
        port = free_port(host)
        if port not in avoid and port not in found:
            found.append(port)
    return found


def free_port(host: str) -> int:
    """A port nobody listens on right now (the engine binds it moments later)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    bind = "127.0.0.1" if host in ("0.0.0.0", "") else host
    with socket.socket(family, socket.SOCK_STREAM) as sock:
        try:
            sock.bind((bind, 0))
        except OSError as exc:  # gaierror included: a name that does not resolve here
            reason = exc.strerror or str(exc)
            raise InputError(
                f"serving.host {host}: cannot listen there ({reason})",
                hint="use an address of this machine, 127.0.0.1 or 0.0.0.0",
            ) from None
        return int(sock.getsockname()[1])
