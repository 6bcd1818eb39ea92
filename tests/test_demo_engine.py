"""The real CPU demo deployment end to end: llama.cpp serving SmolLM2-135M
(up → a chat through the official OpenAI client → down → nothing left)."""

from __future__ import annotations

import json
import signal
import time

import pytest
from conftest import PROFILES, cli
from helpers import record, session_members, start_up, wait_no_members, wait_phase
from openai import OpenAI

pytestmark = pytest.mark.engine


def test_demo_up_chat_down(isolated_env: dict[str, str]) -> None:
    up = cli("up", "demo-cpu", "--detach", env=isolated_env, timeout=180)
    assert up.returncode == 0, up.stdout + up.stderr
    row = json.loads(cli("status", "--json", env=isolated_env).stdout)[0]
    assert row["state"] == "ready" and row["health"] == "ok"
    session = int(row["engine_pid"])
    assert session_members(session), "the engine should be running"

    client = OpenAI(base_url=row["url"], api_key="none", max_retries=0, timeout=60)
    models = [m.id for m in client.models.list().data]
    assert models == ["smollm2-135m"]
    reply = client.chat.completions.create(
        model="smollm2-135m",
        messages=[{"role": "user", "content": "Name a colour."}],
        max_tokens=8,
        temperature=0,
    )
    assert reply.choices[0].message.content  # a real model says something
    assert reply.usage is not None and reply.usage.completion_tokens > 0
    client.close()

    down = cli("down", "demo-cpu", env=isolated_env)
    assert down.returncode == 0, down.stderr
    assert session_members(session) == []
    assert record(isolated_env, "demo-cpu") is None


def test_demo_foreground_sigkill_leaves_no_engine(isolated_env: dict[str, str]) -> None:
    proc = start_up(PROFILES / "demo-cpu.yaml", isolated_env)
    rec = wait_phase(isolated_env, "demo-cpu", "ready", timeout=120, proc=proc)
    session = int(str(rec["engine_pid"]))
    proc.send_signal(signal.SIGKILL)
    proc.communicate()
    assert wait_no_members(session, timeout=20) == []
    # the guardian recorded the death; `down` clears the record (and waits for the guardian)
    deadline = time.monotonic() + 30
    while (record(isolated_env, "demo-cpu") or {}).get("phase") != "failed":
        assert time.monotonic() < deadline, record(isolated_env, "demo-cpu")
        time.sleep(0.05)
    assert cli("down", "demo-cpu", env=isolated_env).returncode == 0
