"""Tool calling: `tools: {parser: …}` in a profile (one canonical name, each engine's own
spelling, refused where an engine has no parser to set), and smoke's `tools` check — a
named tool_choice must come back in `tool_calls` with JSON arguments matching the schema
— against tests/instant_server.py answering the forced call right, wrong or not at all."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest
from conftest import cli

from llmdeploy.engines import tools
from llmdeploy.engines.base import BuildContext
from llmdeploy.engines.registry import build
from llmdeploy.profile import load as profile_load

CTX = BuildContext(model_path="/m", port=8000, python="python3")


def profile_text(tmp_path: Path, engine: str, tools_line: str, extra: str = "") -> str:
    model = (
        f"{{source: local, path: {tmp_path / 'm.gguf'}}}"
        if engine == "llamacpp"
        else (f"{{source: local, path: {tmp_path}}}")
    )
    (tmp_path / "m.gguf").write_bytes(b"GGUF")
    return f"name: t\nmodel: {model}\nengine: {engine}\n{extra}{tools_line}\n"


@pytest.mark.parametrize(
    ("engine", "flags"),
    [
        ("vllm", ["--enable-auto-tool-choice", "--tool-call-parser", "hermes"]),
        ("sglang", ["--tool-call-parser", "qwen25"]),
    ],
)
def test_one_name_each_engines_spelling(tmp_path: Path, engine: str, flags: list[str]) -> None:
    text = profile_text(tmp_path, engine, "tools: {parser: hermes}")
    argv = list(
        build(profile_load.parse(text, file="p.yaml", base_dir=tmp_path, environ={}), CTX).argv
    )
    at = argv.index(flags[0])
    assert argv[at : at + len(flags)] == flags
    without = profile_load.parse(
        text.replace("tools: {parser: hermes}", ""), file="p.yaml", base_dir=tmp_path, environ={}
    )
    assert "--tool-call-parser" not in build(without, CTX).argv


def test_every_canonical_name_has_both_spellings() -> None:
    for name in tools.NAMES:
        assert set(tools.TABLE[name]) == {"vllm", "sglang"}, name


@pytest.mark.parametrize(
    ("engine", "tools_line", "message"),
    [
        ("vllm", "tools: {parser: hermez}", "tools.parser: unknown parser 'hermez'; did you mean "
         "hermes? (known: " + ", ".join(tools.NAMES) + ")"),
        ("sglang", "tools: {parser: qwen25}", "tools.parser: unknown parser 'qwen25'; did you "
         "mean hermes?"),
        ("vllm", "tools: {}", "tools.parser: required"),
        ("llamacpp", "tools: {parser: hermes}", "tools: not for engine llamacpp: llama-cpp-python "
         "has no tool-call parser"),
        ("transformers", "tools: {parser: hermes}", "tools: not for engine transformers: "
         "transformers serve parses tool calls by model type"),
    ],
)  # fmt: skip
def test_bad_tools_is_one_line_exit_2(
    tmp_path: Path, isolated_env: dict[str, str], engine: str, tools_line: str, message: str
) -> None:
    path = tmp_path / "p.yaml"
    path.write_text(profile_text(tmp_path, engine, tools_line))
    result = cli("validate", str(path), env=isolated_env)
    assert result.returncode == 2, result.stdout
    (line,) = result.stderr.strip().splitlines()
    assert line.startswith(f"error: {path}:"), line
    assert message in line


def test_command_engine_refuses_tools(tmp_path: Path, isolated_env: dict[str, str]) -> None:
    path = tmp_path / "p.yaml"
    path.write_text(
        f"name: t\nmodel: {{source: local, path: {tmp_path}}}\n"
        "engine: {type: command, command: [srv, '{port}']}\ntools: {parser: hermes}\n"
    )
    result = cli("validate", str(path), env=isolated_env)
    assert result.returncode == 2
    assert "tools: not for engine command: an engine of type command gets its tool flags" in (
        result.stderr
    )


def smoke_tools(
    tmp_path: Path,
    env: dict[str, str],
    url: str,
    tools_line: str = "tools: {parser: hermes}",
    extra: str = "",
) -> tuple[int, dict[str, object]]:
    path = tmp_path / "expect.yaml"
    extra = "serving: {served_model_name: m}\n" + extra
    path.write_text(profile_text(tmp_path, "vllm", tools_line, extra))
    result = cli("smoke", "--url", url, "--profile", str(path), "--only", "tools", "--json",
                 env=env)  # fmt: skip
    (check,) = json.loads(result.stdout)["checks"]
    return result.returncode, check


def test_forced_tool_call_passes(
    tmp_path: Path, isolated_env: dict[str, str], instant: Callable[..., str]
) -> None:
    # The fake, like vLLM 0.32, holds the arguments to the schema only for a function
    # marked strict: this passes only because the check asks for `strict: true`.
    code, check = smoke_tools(tmp_path, isolated_env, instant("--tool-calls", "follow"))
    assert code == 0 and check["status"] == "pass", check
    assert check["detail"] == 'get_weather({"city": "Paris", "days": 1})'


@pytest.mark.parametrize(
    ("mode", "detail", "cause"),
    [
        ("ignore", "no tool_calls (finish length); content 'tok", "cut at max_tokens (256)"),
        (
            "context",
            "no tool_calls (finish length); content '<tool_call>",
            "cut at the context limit: the prompt with the tool definition took 490 tokens, "
            "leaving 20 of the context for the call; raise resources.max_model_len",
        ),
        ("bad-json", "arguments are not JSON", "not enforced as a grammar"),
        ("off-schema", "arguments do not match the schema", "not enforced as a grammar"),
    ],
)
def test_tool_call_failures_are_named(
    tmp_path: Path,
    isolated_env: dict[str, str],
    instant: Callable[..., str],
    mode: str,
    detail: str,
    cause: str,
) -> None:
    code, check = smoke_tools(tmp_path, isolated_env, instant("--tool-calls", mode))
    assert code == 8 and check["status"] == "fail", check
    assert str(check["detail"]).startswith(detail) and cause in str(check["cause"])


def test_context_cut_names_the_profiles_limit(
    tmp_path: Path, isolated_env: dict[str, str], instant: Callable[..., str]
) -> None:
    url = instant("--tool-calls", "context")
    extra = "resources: {max_model_len: 512}\n"
    code, check = smoke_tools(tmp_path, isolated_env, url, extra=extra)
    assert code == 8 and check["status"] == "fail", check
    assert "took 490 tokens, leaving 20 of max_model_len 512 for the call" in str(check["cause"])


def test_tools_check_runs_only_with_tools_in_the_profile(
    tmp_path: Path, isolated_env: dict[str, str], instant: Callable[..., str]
) -> None:
    code, check = smoke_tools(tmp_path, isolated_env, instant(), tools_line="")
    assert code == 0 and check["status"] == "skip" and check["detail"] == "no tools in the profile"
