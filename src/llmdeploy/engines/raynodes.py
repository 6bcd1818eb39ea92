"""A multi-node deployment on Ray (`distributed.backend: ray`, vLLM only): each node runs
`ray start … --block` as a supervised process, and node 0 also runs the engine with
`--distributed-executor-backend ray` once the cluster has every node. Pure, like the
builders.

Every port Ray opens is given explicitly, from `distributed.port` upwards (the GCS on
`port`, llmdeploy's supervisors on port+1, then a block of RAY_BLOCK ports per rank), so
two deployments — or a test run beside a user's cluster — never collide, and two nodes can
share one machine. Ray is never stopped with `ray stop` (it kills every Ray process of the
machine by name): its processes carry the deployment's tag like any other.
"""

from __future__ import annotations

import os
from dataclasses import replace

from llmdeploy.engines import registry
from llmdeploy.engines.base import BuildContext, Launch, base_url, common_env
from llmdeploy.profile.model import Profile

RAY_BLOCK = 40  # ports per rank: 7 named ones, then the worker range
WORKER_PORTS = range(10, RAY_BLOCK)


def ray_program(profile: Profile) -> str:
    """`ray` beside the engine's program when that is a path (one environment), else PATH's."""
    engine = profile.engine.executable
    if engine and os.sep in engine:
        return os.path.join(os.path.dirname(engine), "ray")
    return "ray"


def gpus_per_node(profile: Profile) -> int:
    ids = profile.resources.gpu_ids
    if ids is not None:
        return len(ids)
    res = profile.resources
    return res.tensor_parallel_size * res.pipeline_parallel_size // profile.nodes


def temp_dir(profile: Profile) -> str:
    # Ray's socket paths must stay under 107 bytes: a short directory of its own.
    return f"/tmp/llmdeploy-ray-{profile.name[:40]}"


def ray_node_launch(profile: Profile, ctx: BuildContext, rank: int, head: str) -> Launch:
    dist = profile.distributed_settings
    first = dist.port + 2 + rank * RAY_BLOCK
    argv = [ray_program(profile), "start", "--block", "--disable-usage-stats"]
    if rank == 0:
        argv += ["--head", "--port", str(dist.port), "--node-ip-address", head]
        argv += ["--include-dashboard", "false", "--temp-dir", temp_dir(profile)]
    else:
        argv += ["--address", f"{head}:{dist.port}"]
        if head in ("127.0.0.1", "localhost", "::1"):
            argv += ["--node-ip-address", head]  # nodes on one machine, for tests
    argv += ["--num-gpus", str(gpus_per_node(profile))]
    named = [
        "--node-manager-port",
        "--object-manager-port",
        "--ray-client-server-port",
        "--dashboard-agent-listen-port",
        "--dashboard-agent-grpc-port",
        "--runtime-env-agent-port",
        "--metrics-export-port",
    ]
    for offset, flag in enumerate(named):
        argv += [flag, str(first + offset)]
    argv += ["--min-worker-port", str(first + WORKER_PORTS.start)]
    argv += ["--max-worker-port", str(first + WORKER_PORTS.stop - 1)]
    return Launch(
        argv=tuple(argv),
        env={**common_env(profile), **profile.env},
        health_path="",
        base_url=base_url(profile, ctx.port),
    )


def engine_launch(profile: Profile, ctx: BuildContext, head: str) -> Launch:
    """Node 0's engine: vLLM on the Ray cluster the nodes formed."""
    launch = registry.build(profile, ctx)
    extra = len(profile.extra_args)
    own, theirs = launch.argv[: len(launch.argv) - extra], launch.argv[len(launch.argv) - extra :]
    argv = (*own, "--distributed-executor-backend", "ray", *theirs)
    env = {"RAY_ADDRESS": f"{head}:{profile.distributed_settings.port}", **launch.env}
    return replace(launch, argv=argv, env=env)
