from __future__ import annotations

import os
from pathlib import Path

from llmdeploy import paths
from llmdeploy.engines import render, router
from llmdeploy.engines.base import Launch
from llmdeploy.engines.exposure import exposure_warning
from llmdeploy.engines.planning import Plan, make_plan
from llmdeploy.hub.found import Found
from llmdeploy.output import err, out
from llmdeploy.profile import load as profile_load
from llmdeploy.profile import shipped
from llmdeploy.versions import parse_version, show


def run(argument: str, *, engine_version: str | None, as_json: bool) -> int:
    profile = profile_load.load(shipped.resolve(argument))
    version = _version(engine_version)
    plan = make_plan(profile, environ=os.environ, cache=paths.cache_dir(), version=version)
    warning = exposure_warning(profile)
    if warning:
        err(warning)
    effective = version or profile.engine.parsed_version
    shown_version = show(effective) if effective else "current"
    ranks = [plan] + [
        make_plan(
            profile,
            environ=os.environ,
            cache=paths.cache_dir(),
            version=version,
            port=_port(plan.launch),
            node_rank=k,
        )
        for k in range(1, profile.nodes)
    ]
    if as_json:
        import json  # only here: `plan` without --json should not pay for it

        shown = _as_json(plan, shown_version)
        if profile.nodes > 1:
            shown["nodes"] = [_node_json(argument, p) for p in ranks]
        out(json.dumps(shown, indent=2))
        return 0
    launch = plan.launch
    through = f" through the router ({len(plan.replicas)} replicas)" if plan.replicas else ""
    out(
        f"# {profile.name}: {profile.engine.type} {shown_version}, serves "
        f"{profile.served_model_name!r} at {launch.base_url}/v1{through}"
    )
    out(f"# model: {plan.model_path}{_model_note(plan.found, _exists(plan.model_path))}")
    if plan.port_was_auto:
        out("# port: auto; this is a free port now, `up` picks again")
    if plan.replicas:
        _print_routed(plan)
        return 0
    if profile.nodes > 1:
        _print_nodes(argument, ranks)
        return 0
    out(f"# ready when: GET {launch.health_path} answers 200")
    out(render.shell_line(launch))
    return 0


def _as_json(plan: Plan, shown_version: str) -> dict[str, object]:
    """The one engine's launch, or for replicas the router's (clients' one URL) with
    the replicas' under `replicas`."""
    profile = plan.profile
    shown: dict[str, object] = {
        "name": profile.name,
        "engine": profile.engine.type,
        "engine_version": shown_version,
        "model_path": str(plan.model_path),
        "model_present": _exists(plan.model_path),
        "model_found_in": plan.found.where if plan.found else None,
        "model_verified": plan.found.verified if plan.found else None,
        **_launch_json(plan.launch),
    }
    if plan.replicas:
        shown["router"] = {"port": _port(plan.launch), "policy": profile.router_settings.policy}
        shown["replicas"] = [
            {"name": name, "port": _port(r), **_launch_json(r)}
            for name, r in zip(_names(plan), plan.replicas, strict=True)
        ]
        shown["ready_when"] = _routed_ready(plan)
    return shown


def _launch_json(launch: Launch) -> dict[str, object]:
    return {
        "argv": render.masked_argv(launch),
        "env": render.masked_env(launch),
        "base_url": launch.base_url,
        "health_url": launch.base_url + launch.health_path,
        "command": render.shell_line(launch),
    }


def _print_routed(plan: Plan) -> None:
    """What "ready" means for the whole, then every replica's command and the router's,
    each under a `#` line naming it."""
    out("# replicas: on 127.0.0.1 only, each on a free port now (`up` picks again)")
    out("# ready when, in this order:")
    for step, text in enumerate(_routed_ready(plan), 1):
        out(f"#   {step}. {text}")
    for name, replica in zip(_names(plan), plan.replicas, strict=True):
        out(f"# {name} (port {_port(replica)}):")
        out(render.shell_line(replica))
    policy = plan.profile.router_settings.policy
    out(f"# router (port {_port(plan.launch)}, policy {policy}), the deployment's URL:")
    out(render.shell_line(plan.launch))


def _print_nodes(argument: str, ranks: list[Plan]) -> None:
    """Every node's engine command, and the `llmdeploy up` that runs it on that machine."""
    profile = ranks[0].profile
    dist = profile.distributed_settings
    out(
        f"# {profile.nodes} nodes ({dist.backend}); node 0 at {dist.head} serves clients; "
        f"the engines meet on port {dist.port}, llmdeploy's supervisors on {dist.control}"
    )
    out(
        f"# ready when: every node's llmdeploy joined node 0's, GET "
        f"{ranks[0].launch.health_path} answers 200 on node 0, and one 1-token completion passes"
    )
    for plan in ranks:
        out(f"# node {plan.node_rank}: {_node_up(argument, plan.node_rank)}")
        if plan.ray_node is not None:  # node 0 on Ray: the head first, the engine once all joined
            out(render.shell_line(plan.ray_node))
        out(render.shell_line(plan.launch))


def _node_up(argument: str, rank: int) -> str:
    return f"llmdeploy up {argument}" + (f" --node-rank {rank}" if rank else "")


def _node_json(argument: str, plan: Plan) -> dict[str, object]:
    return {
        "rank": plan.node_rank,
        "up": _node_up(argument, plan.node_rank),
        **_launch_json(plan.launch),
    }


def _routed_ready(plan: Plan) -> list[str]:
    health = plan.replicas[0].health_path
    return [
        f"every replica answers GET {health} with 200, then one 1-token completion "
        "(health only with `up --no-probe`)",
        f"the router answers GET {router.HEALTH_PATH} with 200 and takes in each replica "
        "(its /workers API)",
        f"the router answers GET {router.READINESS_PATH} with 200 and one 1-token "
        "completion through it succeeds",
    ]


def _names(plan: Plan) -> list[str]:
    from llmdeploy.run.members import replica_name  # only for replicas: r0, r1, …

    return [replica_name(k) for k in range(len(plan.replicas))]


def _port(launch: Launch) -> int:
    return int(launch.base_url.rsplit(":", 1)[1])


def _model_note(found: Found | None, present: bool) -> str:
    if found is None:
        return "" if present else " (not downloaded yet)"
    if found.verified:
        return f" (found in {found.where}, verified against the hub)"
    # plan never contacts a hub: pull (or up's pull) checks sizes and sha256 first
    return f" (found in {found.where}; unverified until pull/up checks it against the hub)"


def _exists(path: Path) -> bool:
    try:
        return path.exists()
    except OSError:  # e.g. a name longer than the file system allows: certainly not there
        return False


def _version(text: str | None) -> tuple[int, ...] | None:
    from llmdeploy.errors import InputError

    if text is None:
        return None
    try:
        if len(text) > 64:  # parse_version's int() would hit the int-str conversion limit
            raise ValueError(f"not a version number ({len(text)} characters)")
        return parse_version(text)
    except ValueError as exc:
        raise InputError(f"--engine-version: {exc}") from None
