"""Real vLLM (its CPU build) serving a tiny Qwen3 built locally: one engine start per
scenario. up → smoke (both thinking directions on the real qwen3 reasoning parser, a
forced tool call through the hermes parser) → down with no VLLM::* process left; the
wrong parser is caught and explained; a SIGKILL of a foreground `up` leaves no engine
behind."""

from __future__ import annotations

import json
import re
import signal
import time
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest
from conftest import PROFILES, cli, engine_python
from helpers import record, session_members, start_up, wait_no_members, wait_phase

pytestmark = pytest.mark.engine
PROFILE = PROFILES / "tiny-qwen3-vllm-cpu.yaml"


@pytest.fixture
def vllm_env(isolated_env: dict[str, str], tiny_model: Path, tmp_path: Path) -> dict[str, str]:
    python = engine_python("vllm")
    assert python is not None
    (tmp_path / "tmp").mkdir()
    return {
        **isolated_env,
        "LLMDEPLOY_TINY_QWEN3": str(tiny_model),
        "LLMDEPLOY_VLLM": str(python.parent / "vllm"),
        "VLLM_CACHE_ROOT": str(tmp_path / "vllm-cache"),
        "TMPDIR": str(tmp_path / "tmp"),
    }


def _vllm_processes(session: int) -> list[str]:
    return [m for m in session_members(session) if "VLLM" in m]


def test_up_smoke_down_on_real_vllm(vllm_env: dict[str, str], tmp_path: Path) -> None:
    up = cli("up", str(PROFILE), "--detach", env=vllm_env, timeout=600)
    assert up.returncode == 0, up.stdout + up.stderr[-3000:]
    session = int(str((record(vllm_env, "tiny-qwen3-vllm-cpu") or {})["engine_pid"]))
    try:
        junit = tmp_path / "smoke.xml"
        smoke = cli(
            "smoke", "tiny-qwen3-vllm-cpu", "--junit", str(junit), env=vllm_env, timeout=600
        )
        print(smoke.stdout)  # the report, for the log
        assert smoke.returncode == 0, smoke.stdout + smoke.stderr
        assert "\nreasoning field: reasoning\n" in smoke.stdout  # vLLM 0.32's name
        for check in (
            "models",
            "completion",
            "chat",
            "stream",
            "thinking-on",
            "thinking-off",
            "reasoning-field",
            "json-schema",
            "tools",
        ):
            line = next(x for x in smoke.stdout.splitlines() if x.startswith(check + " "))
            assert " PASS " in line, line
        # The forced call came back in tool_calls (hermes parser), arguments on the schema.
        tools = next(x for x in smoke.stdout.splitlines() if x.startswith("tools "))
        assert re.search(r' PASS .* get_weather\(\{"city": "\w+", "days": \d\}\)$', tools), tools
        cases = {c.get("name"): c for c in ET.parse(junit).getroot().iter("testcase")}
        assert [child.tag for child in cases["tools"]] == ["system-out"]  # passed in JUnit too
    finally:
        down = cli("down", "tiny-qwen3-vllm-cpu", env=vllm_env, timeout=120)
    assert down.returncode == 0, down.stderr
    assert session_members(session) == []
    assert _vllm_processes(session) == []


def test_wrong_parser_is_caught_and_explained(vllm_env: dict[str, str], tmp_path: Path) -> None:
    wrong = tmp_path / "tiny-wrong.yaml"
    wrong.write_text(
        PROFILE.read_text()
        .replace("name: tiny-qwen3-vllm-cpu", "name: tiny-wrong")
        .replace("parser: qwen3", "parser: deepseek_r1")
    )
    result = cli("up", str(wrong), "--smoke", "--detach", env=vllm_env, timeout=600)
    print(result.stdout)
    assert result.returncode == 8, result.stdout + result.stderr[-3000:]
    assert "content is null with thinking off" in result.stdout
    assert "reasoning parser deepseek_r1 is likely wrong for this model, try qwen3" in result.stdout
    tools = next(x for x in result.stdout.splitlines() if x.startswith("tools "))
    assert " FAIL " in tools and "the call landed in reasoning with thinking off" in tools, tools
    assert record(vllm_env, "tiny-wrong") is None  # not left running


def test_pinned_reasoning_content_fails_on_the_rename(
    vllm_env: dict[str, str], tmp_path: Path
) -> None:
    """The guides' clients read `reasoning_content`; vLLM 0.32 answers only under
    `reasoning`. A profile pinning the old name fails smoke, naming both and the version
    the server reports at /version."""
    pinned = tmp_path / "tiny-pinned.yaml"
    pinned.write_text(
        PROFILE.read_text()
        .replace("name: tiny-qwen3-vllm-cpu", "name: tiny-pinned")
        .replace("  parser: qwen3\n", "  parser: qwen3\n  field: reasoning_content\n")
    )
    junit = tmp_path / "smoke.xml"
    result = cli("up", str(pinned), "--smoke", "--junit", str(junit), env=vllm_env, timeout=600)
    print(result.stdout)
    assert result.returncode == 8, result.stdout + result.stderr[-3000:]
    line = next(x for x in result.stdout.splitlines() if x.startswith("reasoning-field "))
    assert re.search(
        r" FAIL .* vllm 0\.32\.\S+ answers under reasoning, not reasoning_content as "
        r"reasoning\.field pins",
        line,
    ), line
    assert "reasoning_content → reasoning" in line
    failed = [x.split()[0] for x in result.stdout.splitlines() if " FAIL " in x]
    assert failed == ["reasoning-field"]  # the rest of smoke accepts either name
    assert 'name="reasoning_field" value="reasoning"' in junit.read_text()
    assert record(vllm_env, "tiny-pinned") is None  # not left running


def test_sigkill_of_foreground_up_leaves_no_vllm(vllm_env: dict[str, str]) -> None:
    proc = start_up(PROFILE, vllm_env, "--grace", "5")
    rec = wait_phase(vllm_env, "tiny-qwen3-vllm-cpu", "ready", timeout=600, proc=proc)
    session = int(str(rec["engine_pid"]))
    assert session_members(session)
    proc.send_signal(signal.SIGKILL)
    proc.communicate()
    assert wait_no_members(session, timeout=30) == []
    # The guardian stopped vLLM and recorded why; the record stays until `down`.
    deadline = time.monotonic() + 30
    while (record(vllm_env, "tiny-qwen3-vllm-cpu") or {}).get("phase") != "failed":
        assert time.monotonic() < deadline, record(vllm_env, "tiny-qwen3-vllm-cpu")
        time.sleep(0.05)
    rows = json.loads(cli("status", "--json", env=vllm_env).stdout)
    assert [r["state"] for r in rows] == ["failed"] and "died" in rows[0]["reason"]
    assert cli("down", "tiny-qwen3-vllm-cpu", env=vllm_env).returncode == 0
