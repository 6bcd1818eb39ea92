"""Every argv `plan` emits is accepted by the engine's own argument parser — vLLM's
(from its CPU build: the same CLI code) and SGLang's (a light install without its GPU
stack). Unknown or removed flags are caught here, not on a user's GPU box."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest
from conftest import PROFILES, ROOT, cli, engine_python

from llmdeploy.engines import reasoning, tools

pytestmark = pytest.mark.engine


def _check(kind: str, args: list[str]) -> subprocess.CompletedProcess[str]:
    python = engine_python(kind)
    script = ROOT / "scripts" / f"check_{kind}_args.py"
    return subprocess.run(
        [str(python), str(script), *args], capture_output=True, text=True, timeout=300
    )


def _check_many(kind: str, argvs: list[list[str]]) -> list[dict[str, object]]:
    """Many checks for one import of the engine (importing SGLang or vLLM takes seconds)."""
    python = engine_python(kind)
    script = ROOT / "scripts" / f"check_{kind}_args.py"
    result = subprocess.run(
        [str(python), str(script), "--batch"],
        input=json.dumps(argvs),
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0, result.stderr
    return list(json.loads(result.stdout.strip().splitlines()[-1]))


def _plan(profile: str, env: dict[str, str], *extra: str) -> list[str]:
    result = cli("plan", profile, "--json", *extra, env=env)
    assert result.returncode == 0, result.stderr
    return list(json.loads(result.stdout)["argv"])


def _shipped(engine: str) -> list[str]:
    return sorted(p.stem for p in PROFILES.glob("*.yaml") if f"type: {engine}" in p.read_text())


@pytest.fixture
def plan_env(isolated_env: dict[str, str], tmp_path: Path) -> dict[str, str]:
    return {**isolated_env, "LLMDEPLOY_TINY_QWEN3": str(tmp_path)}


@pytest.mark.parametrize("profile", _shipped("vllm"))
def test_vllm_accepts_every_shipped_vllm_plan(profile: str, plan_env: dict[str, str]) -> None:
    argv = _plan(profile, plan_env)
    result = _check("vllm", argv[1:])  # everything after the `vllm` program
    assert result.returncode == 0, result.stderr


def test_vllm_rejects_what_it_removed(plan_env: dict[str, str]) -> None:
    """The checker can fail: a 0.9-era plan (with --enable-reasoning) is refused by 0.32."""
    argv = _plan("qwen3-8b", plan_env, "--engine-version", "0.9.1")
    assert "--enable-reasoning" in argv
    result = _check("vllm", argv[1:])
    assert result.returncode == 2
    assert "enable-reasoning" in result.stderr


def test_vllm_knows_every_parser_spelling_we_emit(plan_env: dict[str, str]) -> None:
    base = _plan("qwen3-8b", plan_env)
    at = base.index("--reasoning-parser") + 1
    names = reasoning.supported("vllm", None)
    argvs = [[*base[1:at], reasoning.spelling(c, "vllm"), *base[at + 1 :]] for c in names]
    argvs.append([*base[1:at], "qwen9", *base[at + 1 :]])  # proves the check can fail
    results = _check_many("vllm", argvs)
    assert {c: r["code"] for c, r in zip(names, results, strict=False)} == dict.fromkeys(names, 0)
    assert results[-1]["code"] == 2


@pytest.mark.parametrize("profile", _shipped("sglang"))
def test_sglang_accepts_every_shipped_sglang_plan(profile: str, plan_env: dict[str, str]) -> None:
    argv = _plan(profile, plan_env)
    start = argv.index("sglang.launch_server") + 1
    result = _check("sglang", argv[start:])
    assert result.returncode == 0, result.stderr


def test_sglang_knows_every_parser_spelling_we_emit(plan_env: dict[str, str]) -> None:
    argv = _plan("hunyuan-a13b", plan_env)
    start = argv.index("sglang.launch_server") + 1
    at = argv.index("--reasoning-parser") + 1
    names = reasoning.supported("sglang", None)
    argvs = [[*argv[start:at], reasoning.spelling(c, "sglang"), *argv[at + 1 :]] for c in names]
    argvs.append([*argv[start:at], "qwen9", *argv[at + 1 :]])
    results = _check_many("sglang", argvs)
    assert {c: r["code"] for c, r in zip(names, results, strict=False)} == dict.fromkeys(names, 0)
    assert results[-1]["code"] == 2
    assert "invalid choice: 'qwen9'" in str(results[-1]["error"])


def test_sglang_rejects_an_unknown_flag(plan_env: dict[str, str]) -> None:
    argv = _plan("hunyuan-a13b", plan_env)
    start = argv.index("sglang.launch_server") + 1
    result = _check("sglang", [*argv[start:], "--no-such-flag"])
    assert result.returncode == 2


# `transformers serve`'s own parser (typer/click, transformers 5.x in the vLLM CPU env),
# plus the checks Serve.__init__ makes on its arguments before loading anything.
_TRANSFORMERS_CHECK = r"""
import json, sys
import click, torch
from transformers.cli.transformers import app  # a click Group (huggingface_hub's CLI kit)
serve = app.commands["serve"]
results = []
for args in json.loads(sys.stdin.read()):
    try:
        with serve.make_context("serve", list(args)) as ctx:
            p = ctx.params
            if p["chat_template_kwargs"] is not None:
                assert isinstance(json.loads(p["chat_template_kwargs"]), dict), "not an object"
            if p["dtype"] not in ("auto", None):
                assert isinstance(getattr(torch, p["dtype"], None), torch.dtype), p["dtype"]
            assert p["quantization"] in (None, "bnb-4bit", "bnb-8bit"), p["quantization"]
        results.append({"code": 0, "error": ""})
    except (click.ClickException, AssertionError, ValueError) as exc:
        results.append({"code": 2, "error": f"{type(exc).__name__}: {exc}"})
print(json.dumps(results))
"""


def _check_transformers(argvs: list[list[str]]) -> list[dict[str, object]]:
    python = engine_python("vllm")  # scripts/vllm_env.sh installs what `serve` needs
    result = subprocess.run(
        [str(python), "-c", _TRANSFORMERS_CHECK],
        input=json.dumps(argvs),
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr
    return list(json.loads(result.stdout.strip().splitlines()[-1]))


def _serve_args(argv: list[str]) -> list[str]:
    """The launcher's argv up to `--`, then `transformers serve ARGS`: ARGS."""
    rest = argv[argv.index("--") + 1 :]
    assert rest[1] == "serve", rest
    return rest[2:]


def test_transformers_accepts_every_argv_the_builder_emits(tmp_path: Path) -> None:
    """Every setting the builder maps, alone and together, from the golden profiles' own
    builder (not a hand-written list): each must be accepted; a wrong value must not."""
    from test_engines_golden import _ctx, _profiles

    from llmdeploy.engines import registry

    profiles = [p for p in _profiles().values() if p.engine.type == "transformers"]
    variants = [
        p.model_copy(update={"reasoning": p.reasoning.model_copy(update={"thinking": t})})
        for p in profiles
        for t in (True, False)
    ]
    argvs = [_serve_args(list(registry.build(p, _ctx(p)).argv)) for p in variants]
    assert any("--continuous-batching" in a for a in argvs)  # the full-flags profile is here
    wrong = [*argvs[0], "--reasoning", "maybe"]
    results = _check_transformers([*argvs, wrong, [*argvs[0], "--no-such-flag"]])
    assert [r["code"] for r in results[: len(argvs)]] == [0] * len(argvs), results
    assert results[-2]["code"] == 2 and "maybe" in str(results[-2]["error"])
    assert results[-1]["code"] == 2 and "no-such-flag" in str(results[-1]["error"])


@pytest.mark.parametrize("profile", _shipped("transformers"))
def test_transformers_accepts_every_shipped_plan(profile: str, plan_env: dict[str, str]) -> None:
    (result,) = _check_transformers([_serve_args(_plan(profile, plan_env))])
    assert result["code"] == 0, result["error"]


def _golden_argv(name: str) -> list[str]:
    """The argv the builder emits for a golden profile (tests/test_engines_golden.py)."""
    from test_engines_golden import _ctx, _profiles

    from llmdeploy.engines import registry

    profile = _profiles()[name]
    return list(registry.build(profile, _ctx(profile)).argv)


def _with_tool_parser(argv: list[str], name: str) -> list[str]:
    at = argv.index("--tool-call-parser") + 1
    return [*argv[:at], name, *argv[at + 1 :]]


def test_vllm_knows_every_tool_parser_spelling_we_emit() -> None:
    base = _golden_argv("vllm-all-flags")[1:]  # after `vllm`; has --enable-auto-tool-choice
    base = [a for a in base if a != "--enable-reasoning"]  # a 0.9-era profile
    names = tools.supported("vllm", None)
    argvs = [_with_tool_parser(base, tools.spelling(c, "vllm")) for c in names]
    argvs.append(_with_tool_parser(base, "qwen25"))  # SGLang's spelling: proves it can fail
    results = _check_many("vllm", argvs)
    assert {c: r["code"] for c, r in zip(names, results, strict=False)} == dict.fromkeys(names, 0)
    assert results[-1]["code"] != 0


def test_sglang_knows_every_tool_parser_spelling_we_emit() -> None:
    argv = _golden_argv("sglang-api-key")
    base = argv[argv.index("sglang.launch_server") + 1 :]
    names = tools.supported("sglang", None)
    argvs = [_with_tool_parser(base, tools.spelling(c, "sglang")) for c in names]
    argvs.append(_with_tool_parser(base, "hermes_qwen"))
    results = _check_many("sglang", argvs)
    assert {c: r["code"] for c, r in zip(names, results, strict=False)} == dict.fromkeys(names, 0)
    assert results[-1]["code"] == 2
    assert "invalid choice: 'hermes_qwen'" in str(results[-1]["error"])
