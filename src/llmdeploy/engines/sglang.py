"""`python -m sglang.launch_server …`."""

from __future__ import annotations

from llmdeploy.engines import reasoning, tools
from llmdeploy.engines.base import BuildContext, Launch, common_env, finish
from llmdeploy.profile.model import Profile


def build(profile: Profile, ctx: BuildContext) -> Launch:
    res, serving = profile.resources, profile.serving
    python = profile.engine.executable or ctx.python
    argv = [python, "-m", "sglang.launch_server", "--model-path", ctx.model_path]
    argv += ["--host", serving.host, "--port", str(ctx.port)]
    argv += ["--served-model-name", profile.served_model_name]
    argv += ["--tp-size", str(res.tensor_parallel_size)]
    if res.pipeline_parallel_size > 1:
        argv += ["--pp-size", str(res.pipeline_parallel_size)]
    if res.memory_fraction is not None:
        # SGLang's fraction is static: weights + KV cache, not a cap on the whole process.
        argv += ["--mem-fraction-static", f"{res.memory_fraction:g}"]
    if res.max_model_len is not None:
        argv += ["--context-length", str(res.max_model_len)]
    if res.dtype is not None:
        argv += ["--dtype", res.dtype]
    if res.quantization is not None:
        argv += ["--quantization", res.quantization]
    if profile.reasoning.parser is not None:
        argv += ["--reasoning-parser", reasoning.spelling(profile.reasoning.parser, "sglang")]
    if profile.tools is not None:
        # No switch to enable it: the parser turns tool calls on (tool_choice auto).
        argv += ["--tool-call-parser", tools.spelling(profile.tools.parser, "sglang")]
    if res.trust_remote_code:
        argv.append("--trust-remote-code")
    if ctx.api_key:
        argv += ["--api-key", ctx.api_key]  # SGLang reads no environment variable for it
    return finish(profile, ctx, argv, common_env(profile), "/health")
