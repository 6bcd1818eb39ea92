"""The router in front of a deployment's replicas: SMG, SGLang's model gateway (package
`smg`), through a small launcher. A pure builder like the engines'; SMG's flags are
checked against its own parser (tests/test_replicas_plan.py).

    python -m llmdeploy.engines.router -- <SMG flags>

The launcher adds the two secrets from its environment, so they never show in `ps`:
the clients' API key (`--api-key`: SMG checks it on every request and sends it to the
replicas) and the control-plane key (`--control-plane-api-keys`, a key made for each
run: only the supervisor may add or remove replicas, run/routing.py).

The router starts with no replicas: the supervisor adds each one through SMG's
`/workers` API once it is ready (SMG probes a worker's `/health` when it is added, and a
worker it finds unhealthy then is retried only 30 s later). Its Prometheus listener
binds loopback on a port of its own (SMG's default is 0.0.0.0:29000 for every router).
"""

from __future__ import annotations

import os
import sys

from llmdeploy.engines.base import BuildContext, Launch, base_url, secrets_of
from llmdeploy.profile.model import Profile

HEALTH_PATH = "/health"  # the router answers; `/readiness` adds "and has a healthy replica"
READINESS_PATH = "/readiness"
API_KEY_VAR = "LLMDEPLOY_ROUTER_API_KEY"
ADMIN_KEY_VAR = "LLMDEPLOY_ROUTER_ADMIN_KEY"


def build(profile: Profile, ctx: BuildContext, metrics_port: int) -> Launch:
    router = profile.router_settings
    argv = [ctx.python, "-m", "llmdeploy.engines.router", "--"]
    argv += ["--host", profile.serving.host, "--port", str(ctx.port)]
    argv += ["--policy", router.policy]
    argv += ["--prometheus-host", "127.0.0.1", "--prometheus-port", str(metrics_port)]
    argv += ["--log-level", "warn"]  # info logs every request
    # In-flight requests get 180 s by default; the replicas behind it stop with the
    # router anyway (measured: SIGTERM to exit 5 s by default, ≈2 s with this).
    argv += ["--shutdown-grace-period-secs", "1"]
    # A replica that exits is taken out at once by the supervisor (/workers); these are
    # for one that hangs: SMG's defaults probe every 60 s and keep a worker's circuit
    # breaker open 60 s. A replica (re)added is registered within 1 s, not 30.
    argv += ["--health-check-interval-secs", "5", "--cb-timeout-duration-secs", "10"]
    argv += ["--worker-startup-check-interval", "1"]
    env = {API_KEY_VAR: ctx.api_key} if ctx.api_key else {}
    return Launch(
        argv=(*argv, *router.extra_args),
        env=env,
        health_path=HEALTH_PATH,
        base_url=base_url(profile, ctx.port),
        secrets=secrets_of(profile, ctx),
    )


def main(argv: list[str]) -> int:
    if argv[:1] != ["--"]:
        print("usage: -m llmdeploy.engines.router -- SMG_FLAGS…", file=sys.stderr)
        return 64
    flags = argv[1:]
    api_key, admin_key = os.environ.pop(API_KEY_VAR, ""), os.environ.pop(ADMIN_KEY_VAR, "")
    if api_key:
        flags += ["--api-key", api_key]
    if admin_key:
        flags += ["--control-plane-api-keys", f"llmdeploy:llmdeploy:admin:{admin_key}"]
    try:
        from smg.launch_router import (
            launch_router,
            parse_router_args,
        )
    except ImportError:
        print(
            "[llmdeploy] the router needs SMG: pip install 'llmdeploy[router]' (package smg)",
            file=sys.stderr,
        )
        return 127
    launch_router(parse_router_args(flags))
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
