"""`llmdeploy smoke` and `up --smoke` against the fake engine standing in for `vllm`
(real vLLM argv, real HTTP, the official OpenAI client on our side)."""

from __future__ import annotations

import json
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest
from conftest import cli
from helpers import FAKE_ENGINE, record


def fake_vllm(
    tmp_path: Path, name: str, parser: str | None, *switches: str, extra: str = ""
) -> Path:
    exe = tmp_path / "vllm"
    exe.write_text(f'#!/bin/sh\nexec {sys.executable} {FAKE_ENGINE} "$@"\n')
    exe.chmod(0o755)
    reasoning = f"reasoning: {{parser: {parser}}}\n" if parser else ""
    path = tmp_path / f"{name}.yaml"
    path.write_text(
        f"name: {name}\nmodel: {{source: local, path: {tmp_path}}}\n"
        f"engine: {{type: vllm, executable: {exe}}}\n"
        f"serving: {{port: auto, served_model_name: tiny}}\nresources: {{max_model_len: 512}}\n"
        f"{reasoning}extra_args: {json.dumps(list(switches))}\n{extra}"
    )
    return path


@pytest.fixture
def running(tmp_path: Path, isolated_env: dict[str, str], request: pytest.FixtureRequest):  # type: ignore[no-untyped-def]
    """Bring a fake-vLLM deployment up (detached) and always take it down."""
    started: list[str] = []

    def up(profile: Path, env: dict[str, str] | None = None) -> str:
        result = cli("up", str(profile), "--detach", env=env or isolated_env)
        assert result.returncode == 0, result.stderr
        started.append(profile.stem)
        return profile.stem

    yield up
    for name in started:
        cli("down", name, env=isolated_env)


def test_smoke_passes_and_writes_junit(
    tmp_path: Path, isolated_env: dict[str, str], running: object
) -> None:
    running(fake_vllm(tmp_path, "good", "qwen3"))  # type: ignore[operator]
    junit = tmp_path / "out" / "smoke.xml"
    result = cli("smoke", "good", "--junit", str(junit), env=isolated_env)
    assert result.returncode == 0, result.stdout + result.stderr
    for check in (
        "models",
        "completion",
        "chat",
        "stream",
        "thinking-on",
        "thinking-off",
        "reasoning-field",
        "json-schema",
    ):
        assert f"\n{check} " in result.stdout and "PASS" in result.stdout
    assert "max_model_len 512" in result.stdout
    assert "\nreasoning field: reasoning\n" in result.stdout
    assert "8 passed, 0 failed, 3 skipped" in result.stdout
    suite = ET.parse(junit).getroot()[0]
    assert (
        suite.get("tests") == "11" and suite.get("failures") == "0" and suite.get("skipped") == "3"
    )


def test_wrong_reasoning_parser_is_diagnosed(
    tmp_path: Path, isolated_env: dict[str, str], running: object
) -> None:
    running(fake_vllm(tmp_path, "wrong", "deepseek_r1", "--wrong-parser"))  # type: ignore[operator]
    result = cli("smoke", "wrong", "--json", env=isolated_env)
    assert result.returncode == 8
    report = json.loads(result.stdout)
    by_id = {c["id"]: c for c in report["checks"]}
    assert by_id["thinking-off"]["status"] == "fail"
    assert "content is null with thinking off" in by_id["thinking-off"]["detail"]
    assert by_id["thinking-off"]["cause"] == (
        "reasoning parser deepseek_r1 is likely wrong for this model, try qwen3"
    )
    assert by_id["thinking-on"]["status"] == "pass"
    # chat asks without thinking too: an answer that is only reasoning is no answer
    assert by_id["chat"]["status"] == "fail"
    assert by_id["chat"]["detail"] == by_id["thinking-off"]["detail"]
    assert by_id["chat"]["cause"] == by_id["thinking-off"]["cause"]
    assert "smoke failed: chat, thinking-off" in result.stderr


def test_reasoning_content_field_is_accepted(
    tmp_path: Path, isolated_env: dict[str, str], running: object
) -> None:
    profile = fake_vllm(tmp_path, "older", "qwen3", "--reasoning-field", "reasoning_content")
    running(profile)  # type: ignore[operator]
    result = cli(
        "smoke",
        "older",
        "--only",
        "thinking-on",
        "--only",
        "thinking-off",
        "--only",
        "stream",
        env=isolated_env,
    )
    assert result.returncode == 0, result.stdout
    assert "3 passed, 0 failed, 0 skipped" in result.stdout


def test_reasoning_left_in_content_fails_thinking_on(
    tmp_path: Path, isolated_env: dict[str, str], running: object
) -> None:
    running(fake_vllm(tmp_path, "noparse", "qwen3", "--reasoning-field", "none"))  # type: ignore[operator]
    result = cli("smoke", "noparse", "--only", "thinking-on", env=isolated_env)
    assert result.returncode == 8
    assert "reasoning stays inside content" in result.stdout


def test_auth_check_with_api_key(
    tmp_path: Path, isolated_env: dict[str, str], running: object
) -> None:
    env = {**isolated_env, "TINY_KEY": "sk-test-123"}
    profile = fake_vllm(tmp_path, "keyed", None, extra="")
    profile.write_text(
        profile.read_text().replace(
            "served_model_name: tiny}", "served_model_name: tiny, api_key: '${TINY_KEY}'}"
        )
    )
    running(profile, env)  # type: ignore[operator]
    result = cli("smoke", "keyed", "--only", "auth", "--only", "models", env=env)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "without the key gets HTTP 401" in result.stdout
    assert "sk-test-123" not in result.stdout + result.stderr


def test_smoke_by_url_and_selection(
    tmp_path: Path, isolated_env: dict[str, str], running: object
) -> None:
    # no parser: the thinking stays inside content, as on a real vLLM without one
    running(fake_vllm(tmp_path, "plain", None, "--reasoning-field", "none"))  # type: ignore[operator]
    url = str((record(isolated_env, "plain") or {})["base_url"]) + "/v1"
    result = cli("smoke", "--url", url, "--model", "tiny", "--skip", "stream", env=isolated_env)
    assert result.returncode == 0, result.stdout
    assert "stream" not in result.stdout.split("check", 1)[1].split("\n", 2)[1]
    bad = cli("smoke", "--url", url, "--model", "tiny", "--only", "vibes", env=isolated_env)
    assert bad.returncode == 2 and "unknown check id(s) vibes" in bad.stderr


def test_up_smoke_stops_unless_detached_and_passed(
    tmp_path: Path, isolated_env: dict[str, str]
) -> None:
    good = fake_vllm(tmp_path, "ci", "qwen3")
    result = cli("up", str(good), "--smoke", env=isolated_env)
    assert result.returncode == 0, result.stdout + result.stderr
    assert record(isolated_env, "ci") is None  # up, smoke, down

    kept = cli("up", str(good), "--smoke", "--detach", env=isolated_env)
    assert kept.returncode == 0
    assert (record(isolated_env, "ci") or {}).get("phase") == "ready"
    assert cli("down", "ci", env=isolated_env).returncode == 0

    bad = fake_vllm(tmp_path, "cibad", "deepseek_r1", "--wrong-parser")
    failed = cli("up", str(bad), "--smoke", "--detach", env=isolated_env)
    assert failed.returncode == 8
    assert record(isolated_env, "cibad") is None  # not left running after a failed smoke


def test_chat_fails_on_reasoning_only_answers_without_a_parser(
    tmp_path: Path, isolated_env: dict[str, str], running: object
) -> None:
    """No parser in the profile, yet the engine separates reasoning (a parser in
    extra_args): thinking is never switched off, and chat says so instead of passing."""
    running(fake_vllm(tmp_path, "hidden", None))  # type: ignore[operator]
    result = cli("smoke", "hidden", "--only", "chat", "--json", env=isolated_env)
    assert result.returncode == 8, result.stdout + result.stderr
    (chat,) = json.loads(result.stdout)["checks"]
    assert chat["status"] == "fail" and "content is null" in chat["detail"]
    assert "no reasoning.parser in the profile" in chat["cause"]
