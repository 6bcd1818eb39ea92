"""One node's part of a multi-node deployment (profile `nodes: N`), on the engine's own
machinery. Pure, like the builders it extends: the same inputs give the same argv
(golden- and contract-tested against vLLM's and SGLang's parsers).

    vLLM   every rank: vllm serve … --nnodes N --node-rank K --master-addr HEAD
           --master-port PORT, and --headless on ranks > 0 (only rank 0 serves HTTP)
    SGLang every rank: … --nnodes N --node-rank K --dist-init-addr HEAD:PORT
           (only rank 0 serves HTTP)
"""

from __future__ import annotations

from dataclasses import replace

from llmdeploy.engines import registry
from llmdeploy.engines.base import BuildContext, Launch
from llmdeploy.profile.model import Profile


def head_address(profile: Profile, head: str | None) -> str:
    return head or profile.distributed_settings.head


def node_launch(profile: Profile, ctx: BuildContext, rank: int, head: str | None) -> Launch:
    """The engine command of node `rank`; `head` overrides distributed.head."""
    launch = registry.build(profile, ctx)
    dist = profile.distributed_settings
    address = head_address(profile, head)
    flags = ["--nnodes", str(profile.nodes), "--node-rank", str(rank)]
    if profile.engine.type == "vllm":
        flags += ["--master-addr", address, "--master-port", str(dist.port)]
        if rank > 0:
            flags.append("--headless")
    else:
        flags += ["--dist-init-addr", f"{_host(address)}:{dist.port}"]
    extra = len(profile.extra_args)
    own, theirs = launch.argv[: len(launch.argv) - extra], launch.argv[len(launch.argv) - extra :]
    # Only rank 0 serves HTTP: the others have no health endpoint to ask.
    return replace(
        launch, argv=(*own, *flags, *theirs), health_path=launch.health_path if rank == 0 else ""
    )


def _host(address: str) -> str:
    return f"[{address}]" if ":" in address else address
