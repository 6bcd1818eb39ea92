"""`python -m llama_cpp.server …` (llama-cpp-python): the CPU engine."""

from __future__ import annotations

from llmdeploy.engines.base import BuildContext, Launch, common_env, finish
from llmdeploy.profile.model import Profile


def build(profile: Profile, ctx: BuildContext) -> Launch:
    res, serving = profile.resources, profile.serving
    python = profile.engine.executable or ctx.python
    argv = [python, "-m", "llama_cpp.server", "--model", ctx.model_path]
    argv += ["--host", serving.host, "--port", str(ctx.port)]
    argv += ["--model_alias", profile.served_model_name]
    if res.max_model_len is not None:
        argv += ["--n_ctx", str(res.max_model_len)]
    # llama.cpp's loader prints ~2,000 lines per start; `extra_args: [--verbose, "true"]`
    # brings them back (the last occurrence of a flag wins).
    argv += ["--verbose", "false"]
    env = common_env(profile)
    if ctx.api_key:
        # Not `--api_key`: argv is world-readable (`ps`, /proc/PID/cmdline), the environment
        # only to the same user. The server's settings are pydantic-settings without a
        # prefix (llama_cpp/server/settings.py ServerSettings.api_key), so API_KEY is read
        # whenever the flag is absent.
        env["API_KEY"] = ctx.api_key
    # llama-cpp-python has no /health; /v1/models answers once the model is loaded.
    # Its settings also read same-named environment variables, and HOST/PORT/CONFIG_FILE
    # even win over the flags: an unrelated PORT in the caller's shell must not move it,
    # and an API_KEY there must not lock a keyless deployment.
    unset = ("HOST", "PORT", "CONFIG_FILE", "API_KEY")
    return finish(profile, ctx, argv, env, "/v1/models", unset)
