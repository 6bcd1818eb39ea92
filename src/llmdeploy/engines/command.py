"""`engine: command`: any OpenAI-compatible server from an argv template."""

from __future__ import annotations

from llmdeploy.engines.base import BuildContext, Launch, common_env, finish
from llmdeploy.profile.model import Profile


def build(profile: Profile, ctx: BuildContext) -> Launch:
    values = {
        "port": str(ctx.port),
        "host": profile.serving.host,
        "model_path": ctx.model_path,
        "served_model_name": profile.served_model_name,
    }
    # Each template element becomes exactly one argv element: no shell, no splitting.
    argv = [arg.format(**values) for arg in profile.engine.command or ()]
    return finish(profile, ctx, argv, common_env(profile), "/health")
