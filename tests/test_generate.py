"""`llmdeploy generate` against the fake engine standing in for vLLM (reasoning parser
qwen3): records keep reasoning apart from the answer; an interrupted run resumes without
redoing finished prompts — counted on the engine's side, in its log."""

from __future__ import annotations

import json
import re
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import cli
from helpers import FAKE_ENGINE, record

CHAT = "POST /v1/chat/completions"
N = 16  # prompts of the interrupted run


def fake_vllm(tmp_path: Path, name: str, *switches: str) -> Path:
    """A vllm-engine profile whose `vllm` is the fake engine, with the qwen3 parser."""
    exe = tmp_path / "vllm"
    exe.write_text(f'#!/bin/sh\nexec {sys.executable} {FAKE_ENGINE} "$@"\n')
    exe.chmod(0o755)
    path = tmp_path / f"{name}.yaml"
    path.write_text(
        f"name: {name}\nmodel: {{source: local, path: {tmp_path}}}\n"
        f"engine: {{type: vllm, executable: {exe}}}\n"
        f"serving: {{port: auto, served_model_name: tiny}}\n"
        f"reasoning: {{parser: qwen3, thinking: true}}\n"
        f"extra_args: {json.dumps(list(switches))}\n"
    )
    return path


def prompts(path: Path, count: int) -> Path:
    """`count` prompts; prompt i asks for i+1 tokens, so each answer shows its prompt."""
    lines = [
        json.dumps({"id": f"p{i}", "prompt": f"q {i}", "max_tokens": i + 1}) for i in range(count)
    ]
    path.write_text("\n".join(lines) + "\n")
    return path


def records(path: Path) -> list[dict[str, object]]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def chats(env: dict[str, str], name: str) -> int:
    """Chat requests the engine has seen (its log survives the deployment)."""
    log = Path(env["LLMDEPLOY_STATE_DIR"]) / "logs" / f"{name}.log"
    return log.read_text().count(CHAT)


def settled_chats(env: dict[str, str], name: str) -> int:
    """`chats` once the engine has answered (and so logged) what was still in flight."""
    count, stable_since = chats(env, name), time.monotonic()
    while time.monotonic() - stable_since < 1.0:
        time.sleep(0.05)
        now = chats(env, name)
        if now != count:
            count, stable_since = now, time.monotonic()
    return count


@pytest.fixture
def running(isolated_env: dict[str, str]) -> Iterator[list[str]]:
    """Names appended here are taken down after the test."""
    started: list[str] = []
    yield started
    for name in started:
        cli("down", name, env=isolated_env)


def up(profile: Path, env: dict[str, str], started: list[str]) -> str:
    result = cli("up", str(profile), "--detach", env=env)
    assert result.returncode == 0, result.stderr
    started.append(profile.stem)
    return profile.stem


def test_profile_not_running_is_brought_up_and_down_with_reasoning_apart(
    tmp_path: Path, isolated_env: dict[str, str]
) -> None:
    profile = fake_vllm(tmp_path, "gen", "--reasoning-field", "reasoning_content")
    source = tmp_path / "in.jsonl"
    source.write_text(
        '{"id": "a", "prompt": "hello", "max_tokens": 3}\n\n'
        '{"messages": [{"role": "user", "content": "hi"}], "max_tokens": 2}\n'
    )
    out = tmp_path / "out" / "results.jsonl"
    result = cli("generate", str(profile), "-i", str(source), "-o", str(out), env=isolated_env)
    assert result.returncode == 0, result.stderr
    assert "2 of 2 prompts written" in result.stdout
    assert "stopped gen" in result.stderr and record(isolated_env, "gen") is None
    got = {r["id"]: r for r in records(out)}
    assert set(got) == {"a", 3}  # its id, or its line number
    # thinking is the profile's default: the text is reasoning, kept out of the answer
    assert got["a"]["reasoning"] == "one two three" and got["a"]["answer"] is None
    assert got[3]["reasoning"] == "one two" and got[3]["thinking"] is True
    assert got["a"]["usage"] == {"prompt_tokens": 5, "completion_tokens": 3, "total_tokens": 8}


def test_no_thinking_on_a_running_deployment_leaves_it_running(
    tmp_path: Path, isolated_env: dict[str, str], running: list[str]
) -> None:
    name = up(fake_vllm(tmp_path, "live"), isolated_env, running)
    out = tmp_path / "out.jsonl"
    source = prompts(tmp_path / "in.jsonl", 3)
    args = ("-i", str(source), "-o", str(out), "--no-thinking")
    result = cli("generate", name, *args, env=isolated_env)
    assert result.returncode == 0, result.stderr
    for r in records(out):
        # enable_thinking false reached the chat template: the text is the answer
        assert r["reasoning"] is None and r["thinking"] is False
        assert len(str(r["answer"]).split()) == int(str(r["id"])[1:]) + 1
    assert record(isolated_env, name) is not None  # not ours to stop


def test_null_answers_with_thinking_off_get_the_diagnosis_and_exit_8(
    tmp_path: Path, isolated_env: dict[str, str], running: list[str]
) -> None:
    """The parser is wrong for the model (answers land in `reasoning`): generate writes the
    rows (the text is there) but does not pass them off as answers — now or on a rerun."""
    name = up(fake_vllm(tmp_path, "wrongp", "--wrong-parser"), isolated_env, running)
    source, out = prompts(tmp_path / "in.jsonl", 7), tmp_path / "out.jsonl"
    args = ("-i", str(source), "-o", str(out), "--no-thinking")
    result = cli("generate", name, *args, env=isolated_env)
    assert result.returncode == 8, result.stdout + result.stderr
    assert "7 of 7 prompts written" in result.stdout
    assert re.search(
        r"error: 7 answers: content is null with thinking off; the text landed in reasoning "
        r"\(ids (p\d, ){4}p\d and 2 more\)",  # in the order they finished
        result.stderr,
    ), result.stderr
    assert "reasoning parser qwen3 treats every answer as reasoning" in result.stderr
    assert f"the rows are kept in {out}" in result.stderr
    rows = records(out)
    assert len(rows) == 7 and all(r["answer"] is None and r["reasoning"] for r in rows)
    again = cli("generate", name, *args, env=isolated_env)
    assert again.returncode == 8 and "nothing to do" in again.stdout
    assert "error: 7 answers: content is null" in again.stderr
    # thinking on: reasoning-only rows are what was asked for
    other = tmp_path / "thinking.jsonl"
    fine = cli("generate", name, "-i", str(source), "-o", str(other), env=isolated_env)
    assert fine.returncode == 0, fine.stderr


def test_interrupted_run_resumes_without_redoing_finished_prompts(
    tmp_path: Path, isolated_env: dict[str, str], running: list[str]
) -> None:
    name = up(fake_vllm(tmp_path, "slow", "--answer-delay", "0.4"), isolated_env, running)
    source, out = prompts(tmp_path / "in.jsonl", N), tmp_path / "out.jsonl"
    argv = [sys.executable, "-m", "llmdeploy", "generate", name, "-i", str(source),
            "-o", str(out), "--concurrency", "2"]  # fmt: skip
    proc = subprocess.Popen(argv, env=isolated_env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)  # fmt: skip
    try:
        deadline = time.monotonic() + 20
        while (not out.exists() or len(out.read_text().splitlines()) < 4) and (
            time.monotonic() < deadline
        ):
            time.sleep(0.02)
        clash = cli("generate", name, "-i", str(source), "-o", str(out), env=isolated_env)
        assert clash.returncode == 7 and "another run is writing to" in clash.stderr
        proc.send_signal(signal.SIGINT)
        _, stderr = proc.communicate(timeout=20)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 130, stderr
    first = records(out)  # every line whole
    done = {r["id"] for r in first}
    assert f"interrupted by SIGINT: {len(done)} finished prompts written to {out}" in stderr
    assert 4 <= len(done) < N
    seen = settled_chats(isolated_env, name)  # the ones in flight included

    result = cli("generate", name, "-i", str(source), "-o", str(out), env=isolated_env)
    assert result.returncode == 0, result.stderr
    assert f"{N - len(done)} of {N - len(done)} prompts written" in result.stdout
    assert f"({len(done)} were there already)" in result.stdout
    assert chats(isolated_env, name) - seen == N - len(done)  # only the rest was asked
    final = records(out)
    assert sorted(str(r["id"]) for r in final) == sorted(f"p{i}" for i in range(N))
    for r in final:  # each answer belongs to its own prompt (prompt i asked for i+1)
        assert len(str(r["reasoning"]).split()) == int(str(r["id"])[1:]) + 1


def test_torn_last_line_is_repaired_and_only_missing_prompts_are_sent(
    tmp_path: Path, isolated_env: dict[str, str], running: list[str]
) -> None:
    name = up(fake_vllm(tmp_path, "seeded"), isolated_env, running)
    source, out = prompts(tmp_path / "in.jsonl", 6), tmp_path / "out.jsonl"
    kept = [{"id": "p0", "answer": "x"}, {"id": "p3", "answer": "y"}]
    out.write_text("".join(json.dumps(r) + "\n" for r in kept) + '{"id": "p4", "ans')
    before = chats(isolated_env, name)
    result = cli("generate", name, "-i", str(source), "-o", str(out), env=isolated_env)
    assert result.returncode == 0, result.stderr
    assert chats(isolated_env, name) - before == 4
    final = records(out)  # the torn line is gone; p4 was redone
    assert final[:2] == kept
    assert sorted(str(r["id"]) for r in final) == [f"p{i}" for i in range(6)]
    again = cli("generate", name, "-i", str(source), "-o", str(out), env=isolated_env)
    assert again.returncode == 0 and "nothing to do: all 6 prompts" in again.stdout
    assert chats(isolated_env, name) - before == 4


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ('{"prompt": "a"}\n{"prompt": "b"\n', "in.jsonl:2: not JSON"),
        (
            '{"id": 1, "prompt": "a"}\n{"prompt": "b"}\n{"id": 1, "prompt": "c"}\n',
            "in.jsonl:3: id 1 repeats line 1",
        ),
        ('{"text": "a"}\n', "in.jsonl:1: expected a string 'prompt' or a 'messages' list"),
        ("", "in.jsonl: no prompts"),
    ],
)
def test_bad_input_is_one_line_exit_2(
    tmp_path: Path, isolated_env: dict[str, str], content: str, message: str
) -> None:
    source = tmp_path / "in.jsonl"
    source.write_text(content)
    result = cli("generate", "anything", "-i", str(source), "-o", str(tmp_path / "o.jsonl"),
                 env=isolated_env)  # fmt: skip
    assert result.returncode == 2
    assert message in result.stderr and len(result.stderr.strip().splitlines()) == 1


def test_unknown_target_exits_6(tmp_path: Path, isolated_env: dict[str, str]) -> None:
    source = prompts(tmp_path / "in.jsonl", 1)
    result = cli("generate", "nope", "-i", str(source), "-o", str(tmp_path / "o.jsonl"),
                 env=isolated_env)  # fmt: skip
    assert result.returncode == 6
    assert "'nope' is neither a running deployment nor a profile" in result.stderr
