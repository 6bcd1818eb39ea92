"""Engine registry: engine type -> pure builder `(Profile, BuildContext) -> Launch`."""

from __future__ import annotations

from collections.abc import Callable

from llmdeploy.engines import command, llamacpp, sglang, transformers, vllm
from llmdeploy.engines.base import BuildContext, Launch
from llmdeploy.profile.model import Profile

Builder = Callable[[Profile, BuildContext], Launch]

BUILDERS: dict[str, Builder] = {
    "vllm": vllm.build,
    "sglang": sglang.build,
    "llamacpp": llamacpp.build,
    "transformers": transformers.build,
    "command": command.build,
}


def build(profile: Profile, ctx: BuildContext) -> Launch:
    return BUILDERS[profile.engine.type](profile, ctx)


__all__ = ["BUILDERS", "BuildContext", "Launch", "build"]
