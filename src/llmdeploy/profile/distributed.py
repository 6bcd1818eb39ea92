"""One deployment across several machines ("nodes"): the profile's `nodes` and
`distributed` settings and their rules. The engines' own machinery does the work — vLLM's
native multi-node mode (`--nnodes/--node-rank/--master-addr`, `--headless` on the other
ranks), SGLang's (`--nnodes/--node-rank/--dist-init-addr`) or a Ray cluster — llmdeploy
runs each node's part (`up --node-rank K`) and keeps the nodes' supervisors tied together.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Literal

from pydantic import Field, field_validator

from llmdeploy.profile.strict import Strict

if TYPE_CHECKING:
    from llmdeploy.profile.model import Profile

MAX_NODES = 64
MULTI_NODE_ENGINES = ("vllm", "sglang")


class Distributed(Strict):
    backend: Literal["native", "ray"] = Field(
        "native", description="native: the engine's own multi-node mode; ray: a Ray cluster"
    )
    head: str = Field(
        "127.0.0.1", description="Address of node 0 that the other nodes reach (--head overrides)"
    )
    port: int = Field(
        29500, ge=1, le=65535, description="The engine's rendezvous port on the head (Ray: GCS)"
    )
    control_port: int | None = Field(
        None,
        ge=1,
        le=65535,
        description="Where the nodes' llmdeploy supervisors meet on the head (default port+1)",
    )
    join_timeout_s: float = Field(
        600, gt=0, le=86_400, description="How long node 0 waits for the others to join"
    )
    head_grace_s: float = Field(
        10, gt=0, le=3600, description="A node stops its part this long after losing the head"
    )

    @field_validator("head")
    @classmethod
    def _head(cls, value: str) -> str:
        from llmdeploy.profile.model import Serving  # the same rule as serving.host

        try:
            Serving(host=value)
        except ValueError:
            raise ValueError(f"not a host name or IP address: {value[:60]!r}") from None
        return value

    @property
    def control(self) -> int:
        return self.control_port or (self.port + 1 if self.port < 65535 else self.port - 1)


def check(profile: Profile) -> None:
    """Raise ValueError (a one-line message naming the field) for a multi-node profile
    that cannot work."""
    dist, nodes, engine = profile.distributed, profile.nodes, profile.engine.type
    if nodes == 1:
        if dist is not None:
            raise ValueError("distributed: only for nodes > 1")
        return
    if engine not in MULTI_NODE_ENGINES:
        raise ValueError(
            f"nodes: {engine} has no multi-node mode (only "
            + " and ".join(MULTI_NODE_ENGINES)
            + ")"
        )
    if profile.routed:
        raise ValueError("nodes: replicas and a router across nodes are not supported yet")
    if dist is not None and dist.backend == "ray" and engine != "vllm":
        raise ValueError(f"distributed.backend: ray is for vllm; {engine} uses native")
    if profile.restart.policy != "never":
        raise ValueError(
            "restart.policy: a multi-node deployment is not restarted (a lost node ends it); "
            "use never"
        )
    res = profile.resources
    width = res.tensor_parallel_size * res.pipeline_parallel_size
    ids = res.gpu_ids
    shape = (
        f"tensor_parallel_size {res.tensor_parallel_size} x pipeline_parallel_size "
        f"{res.pipeline_parallel_size} = {width}"
    )
    if ids is not None and width != len(ids) * nodes:
        raise ValueError(
            f"resources: {shape} GPUs, but {nodes} nodes x {len(ids)} GPUs "
            f"(resources.gpus) = {len(ids) * nodes}"
        )
    if ids is None and width % nodes:
        raise ValueError(f"resources: {shape} does not divide over {nodes} nodes")


def node_name(profile: Profile, rank: int) -> str:
    """The deployment name of one node's part: the profile's on node 0, `NAME.nodeK`
    elsewhere (so two nodes on one machine, a test or a laptop, do not collide)."""
    return profile.name if rank == 0 else f"{profile.name[:55]}.node{rank}"


def node_profile(profile: Profile, rank: int, head: str | None) -> Profile:
    """The profile as node `rank` runs it (`up --node-rank K --head ADDRESS`), checked."""
    from llmdeploy.errors import InputError

    if profile.nodes == 1 and (rank or head):
        raise InputError(f"--node-rank/--head: profile {profile.name} runs on one node (nodes: 1)")
    if not 0 <= rank < profile.nodes:
        raise InputError(f"--node-rank: {profile.name} has nodes 0-{profile.nodes - 1}, not {rank}")
    if head is not None:
        _check_host(head)
    return profile if rank == 0 else profile.model_copy(update={"name": node_name(profile, rank)})


def _check_host(head: str) -> None:
    from llmdeploy.errors import InputError
    from llmdeploy.profile.model import Serving

    try:
        Serving(host=head)
    except ValueError:
        raise InputError(f"--head: not a host name or IP address: {head[:60]!r}") from None
