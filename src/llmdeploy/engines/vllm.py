"""`vllm serve …`. Flags checked against vLLM's own parser (tests/contract)."""

from __future__ import annotations

from llmdeploy.engines import reasoning, tools
from llmdeploy.engines.base import BuildContext, Launch, common_env, finish, version_of
from llmdeploy.profile.model import Profile
from llmdeploy.versions import at_least

# `--enable-reasoning` was deprecated in 0.9.0 and rejected from 0.10.0 on.
_NO_ENABLE_REASONING = (0, 10, 0)


def build(profile: Profile, ctx: BuildContext) -> Launch:
    res, serving = profile.resources, profile.serving
    argv = [profile.engine.executable or "vllm", "serve", ctx.model_path]
    argv += ["--host", serving.host, "--port", str(ctx.port)]
    argv += ["--served-model-name", profile.served_model_name]
    argv += ["--tensor-parallel-size", str(res.tensor_parallel_size)]
    if res.pipeline_parallel_size > 1:
        argv += ["--pipeline-parallel-size", str(res.pipeline_parallel_size)]
    if res.memory_fraction is not None:
        argv += ["--gpu-memory-utilization", f"{res.memory_fraction:g}"]
    if res.max_model_len is not None:
        argv += ["--max-model-len", str(res.max_model_len)]
    if res.dtype is not None:
        argv += ["--dtype", res.dtype]
    if res.quantization is not None:
        argv += ["--quantization", res.quantization]
    if profile.reasoning.parser is not None:
        if not at_least(version_of(profile, ctx), _NO_ENABLE_REASONING):
            argv.append("--enable-reasoning")
        argv += ["--reasoning-parser", reasoning.spelling(profile.reasoning.parser, "vllm")]
    if profile.tools is not None:
        argv += ["--enable-auto-tool-choice"]  # a model may answer with tool calls
        argv += ["--tool-call-parser", tools.spelling(profile.tools.parser, "vllm")]
    if res.trust_remote_code:
        argv.append("--trust-remote-code")
    env = common_env(profile)
    if ctx.api_key:
        # vLLM reads its key from VLLM_API_KEY, which keeps it out of `ps` output.
        env["VLLM_API_KEY"] = ctx.api_key
    return finish(profile, ctx, argv, env, "/health")
