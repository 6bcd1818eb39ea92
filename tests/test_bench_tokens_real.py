"""`bench --input-len N` against real engines: every request's usage.prompt_tokens is N.

- vLLM's CPU build serving the tiny Qwen3 (POST /tokenize with messages: the server's own
  count of the chat-templated request, and of the completion prompt);
- llama-cpp-python's server (the demo's SmolLM2, with an API key): POST /extras/tokenize,
  text only — what a request adds (chat template: SmolLM2's default system prompt) is
  measured by one 1-token request. Its streams carry no usage, so its runs are not
  streamed."""

from __future__ import annotations

import json
import secrets
from pathlib import Path

import pytest
import yaml
from conftest import PROFILES, cli, engine_python
from helpers import record, session_members

pytestmark = pytest.mark.engine


def _prompt_tokens(path: Path) -> list[list[int]]:
    return [
        [r["prompt_tokens"] for r in run["requests"]]
        for run in json.loads(path.read_text())["runs"]
    ]


def test_vllm_counts_input_len_for_every_request(
    isolated_env: dict[str, str], tiny_model: Path, tmp_path: Path
) -> None:
    python = engine_python("vllm")
    assert python is not None
    (tmp_path / "tmp").mkdir()
    env = {
        **isolated_env,
        "LLMDEPLOY_TINY_QWEN3": str(tiny_model),
        "LLMDEPLOY_VLLM": str(python.parent / "vllm"),
        "VLLM_CACHE_ROOT": str(tmp_path / "vllm-cache"),
        "TMPDIR": str(tmp_path / "tmp"),
    }
    name = "tiny-qwen3-vllm-cpu"
    up = cli("up", str(PROFILES / f"{name}.yaml"), "--detach", env=env, timeout=600)
    assert up.returncode == 0, up.stdout + up.stderr[-3000:]
    session = int(str((record(env, name) or {})["engine_pid"]))
    try:
        for endpoint, n in (("chat", 100), ("completions", 100), ("chat", 13)):
            out = tmp_path / f"{endpoint}-{n}.json"
            done = cli(
                "bench", name, "--endpoint", endpoint, "--input-len", str(n),
                "--requests", "12", "--concurrency", "1,4", "--output-len", "4",
                "--ignore-eos", "--json", str(out), env=env, timeout=600,
            )  # fmt: skip
            print(done.stdout)
            assert done.returncode == 0, done.stdout + done.stderr
            # exact: the chat template's tokens (12 on Qwen3: 13 leaves one of text) are
            # part of N, as they are of usage.prompt_tokens
            assert _prompt_tokens(out) == [[n] * 12, [n] * 12], endpoint
            counted = (
                "POST /tokenize, chat template included"
                if endpoint == "chat"
                else ("POST /tokenize;")
            )
            assert f"prompts:  {n} tokens each as the server counts them ({counted}" in done.stdout
            assert f"; {n} in per request\n" in done.stdout
            assert "warning" not in done.stdout + done.stderr
        short = cli("bench", name, "--input-len", "12", "--requests", "2", env=env, timeout=600)
        assert short.returncode == 2
        assert "request counts 12 tokens of its own (chat template); give at least 13" in (
            short.stderr
        )
    finally:
        down = cli("down", name, env=env, timeout=120)
    assert down.returncode == 0, down.stderr
    assert session_members(session) == []


def test_llamacpp_counts_input_len_through_extras_tokenize_with_a_key(
    isolated_env: dict[str, str], tmp_path: Path
) -> None:
    key = "sk-test-" + secrets.token_hex(8)
    data = yaml.safe_load((PROFILES / "demo-cpu.yaml").read_text())
    data["name"] = "keyed-cpu"
    data["serving"]["api_key"] = "${TOK_TEST_KEY}"
    profile = tmp_path / "keyed-cpu.yaml"
    profile.write_text(yaml.safe_dump(data))
    env = {**isolated_env, "TOK_TEST_KEY": key}
    up = cli("up", str(profile), "--detach", env=env, timeout=180)
    assert up.returncode == 0, up.stdout + up.stderr
    session = int(str((record(env, "keyed-cpu") or {})["engine_pid"]))
    try:
        for endpoint in ("chat", "completions"):
            out = tmp_path / f"{endpoint}.json"
            done = cli(
                "bench", "keyed-cpu", "--endpoint", endpoint, "--input-len", "48",
                "--requests", "8", "--concurrency", "2", "--output-len", "2", "--no-stream",
                "--json", str(out), env=env, timeout=300,
            )  # fmt: skip
            print(done.stdout)
            assert done.returncode == 0, done.stdout + done.stderr
            assert _prompt_tokens(out) == [[48] * 8], endpoint
            assert "(POST /extras/tokenize + " in done.stdout
            assert "measured by one 1-token request" in done.stdout
        url = str((record(env, "keyed-cpu") or {})["base_url"])
        wrong = cli(
            "bench", "--url", url, "--model", "smollm2-135m", "--api-key-env", "WRONG",
            "--requests", "2", env={**env, "WRONG": "sk-wrong"},
        )  # fmt: skip
        assert wrong.returncode == 1
        assert "refused its tokenizer request (POST /extras/tokenize: HTTP 401" in wrong.stderr
    finally:
        down = cli("down", "keyed-cpu", env=env, timeout=120)
    assert down.returncode == 0, down.stderr
    assert session_members(session) == []
