"""Golden argv/env for every shipped profile and every engine.

Regenerate after an intended change with: UPDATE_GOLDEN=1 pytest tests/test_engines_golden.py
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path

import pytest
from conftest import PROFILES

from llmdeploy.engines import registry
from llmdeploy.engines.base import BuildContext, Launch
from llmdeploy.profile import load as profile_load
from llmdeploy.profile.model import Profile

GOLDEN = Path(__file__).parent / "golden"
# Local model paths must exist to validate; the launch uses CTX.model_path regardless.
MODELS = Path(tempfile.mkdtemp(prefix="llmdeploy-golden-"))
(MODELS / "m.gguf").write_bytes(b"GGUF")
ENV = {"LLMDEPLOY_TINY_QWEN3": str(MODELS), "MY_KEY": "sk-secret-value"}
CTX = BuildContext(model_path="/models/m", port=8000, python="python3")

# One extra profile per engine feature the shipped ones do not show.
EXTRA = {
    "command-engine": """\
name: custom
model: {source: local, path: /}
engine:
  type: command
  command: [my-server, --listen, "{host}:{port}", --weights, "{model_path}",
            --as, "{served_model_name}"]
  health_path: /ready
serving: {served_model_name: cm}
resources: {gpus: 2}
env: {OMP_NUM_THREADS: 2}
""",
    "vllm-all-flags": """\
name: full
model: {id: org/Model}
engine: {type: vllm, version: 0.9.2}
serving: {host: 0.0.0.0, port: 9000, api_key: '${MY_KEY}'}
resources: {gpus: [2, 3], tensor_parallel_size: 2, memory_fraction: 0.85, max_model_len: 4096,
            dtype: bfloat16, quantization: fp8, trust_remote_code: true}
reasoning: {parser: hunyuan}
tools: {parser: hunyuan}
extra_args: [--enable-prefix-caching]
""",
    "sglang-api-key": """\
name: sg
model: {id: org/Model}
engine: sglang
serving: {api_key: '${MY_KEY}'}
reasoning: {parser: deepseek_r1}
tools: {parser: hermes}
""",
    "transformers-all-flags": """\
name: tf
model: {id: org/Model}
engine:
  type: transformers
  continuous_batching: true
  chat_template_kwargs: {enable_thinking: false, custom: [1, 2]}
serving: {host: 0.0.0.0, port: 9000, served_model_name: org/Model-Chat}
resources: {gpus: [1], dtype: float16, quantization: bnb-4bit, trust_remote_code: true}
reasoning: {parser: qwen3, thinking: false}
extra_args: [--attn-implementation, sdpa]
""",
    "llamacpp-api-key": """\
name: lc
model: {source: local, path: m.gguf}
engine: llamacpp
serving: {api_key: '${MY_KEY}'}
resources: {max_model_len: 1024}
""",
}


def _profiles() -> dict[str, Profile]:
    found = {p.stem: profile_load.load(p, environ=ENV) for p in sorted(PROFILES.glob("*.yaml"))}
    for name, text in EXTRA.items():
        found[name] = profile_load.parse(text, file=name, base_dir=MODELS, environ=ENV)
    return found


def _ctx(profile: Profile) -> BuildContext:
    key = ENV["MY_KEY"] if profile.serving.api_key else None
    return BuildContext(model_path=CTX.model_path, port=CTX.port, python=CTX.python, api_key=key)


@pytest.mark.parametrize("name", sorted(_profiles()))
def test_launch_matches_golden(name: str) -> None:
    profile = _profiles()[name]
    launch = registry.build(profile, _ctx(profile))
    got = {
        "argv": list(launch.argv),
        "env": dict(launch.env),
        "unset_env": list(launch.unset_env),
        "health_path": launch.health_path,
        "base_url": launch.base_url,
    }
    path = GOLDEN / f"{name}.json"
    if os.environ.get("UPDATE_GOLDEN"):
        path.write_text(json.dumps(got, indent=2) + "\n")
    assert got == json.loads(path.read_text())


def test_every_engine_is_covered() -> None:
    covered = {p.engine.type for p in _profiles().values()}
    assert covered == set(registry.BUILDERS)


def test_secret_is_masked_in_the_shown_command() -> None:
    from llmdeploy.engines import render
    profile = _profiles()["sglang-api-key"]
    launch = registry.build(profile, _ctx(profile))
    assert ENV["MY_KEY"] in launch.argv  # the engine gets the real key...
    line = render.shell_line(launch)
    assert ENV["MY_KEY"] not in line  # ...people see a reference they can paste
    assert '--api-key "$MY_KEY"' in line
    assert ENV["MY_KEY"] not in json.dumps(render.masked_argv(launch))


def test_vllm_key_goes_by_environment_not_argv() -> None:
    profile = _profiles()["vllm-all-flags"]
    launch = registry.build(profile, _ctx(profile))
    assert launch.env["VLLM_API_KEY"] == ENV["MY_KEY"]
    assert ENV["MY_KEY"] not in launch.argv
    assert render_env(launch)["VLLM_API_KEY"] == "$MY_KEY"


def render_env(launch: Launch) -> dict[str, str]:
    from llmdeploy.engines import render
    return render.masked_env(launch)


def test_llamacpp_key_goes_by_environment_not_argv() -> None:
    """`ps` shows every user our argv; the environment only to us (issue 9)."""
    profile = _profiles()["llamacpp-api-key"]
    launch = registry.build(profile, _ctx(profile))
    assert launch.env["API_KEY"] == ENV["MY_KEY"]
    assert not any(ENV["MY_KEY"] in arg for arg in launch.argv)
    assert render_env(launch)["API_KEY"] == "$MY_KEY"
    # A keyless deployment must not pick up an API_KEY from the caller's shell.
    keyless = _profiles()["demo-cpu"]
    assert "API_KEY" in registry.build(keyless, _ctx(keyless)).unset_env
