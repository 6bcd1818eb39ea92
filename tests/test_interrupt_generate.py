"""SIGINT, SIGTERM and SIGHUP to the real `llmdeploy generate`, against a deployment of
tests/instant_server.py answering each prompt after 60 ms on a fresh connection: exit
128+signum within a few seconds, one line saying so, every row written before the signal
kept whole, no prompt sent after it, no process left — also (the reported defect: a
Ctrl-C lost under CPU load, exit 0) with two busy-loop processes beside it, at several
moments, every time."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml
from conftest import INSTANT, cli
from helpers import fake_stats, record, wait_no_members
from test_interrupt_cli import Cli, settled_requests, wait_until

N = 300  # prompts: far more than a run gets through before its signal
CONCURRENCY = 4


@pytest.fixture(scope="module")
def deployment(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[dict[str, str], str]]:
    """One detached deployment for the module: (environment, base URL)."""
    tmp = tmp_path_factory.mktemp("deployment")
    env = dict(os.environ, LLMDEPLOY_STATE_DIR=str(tmp / "state"),
               LLMDEPLOY_CACHE=str(tmp / "cache"), HOME=str(tmp / "home"))  # fmt: skip
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    profile = tmp / "slowgen.yaml"
    # --close-after 1: the server drops each connection after its answer, as HTTP/1.0
    # engines do, so every request connects again — where asyncio.wait_for once swallowed
    # cancellations (python/cpython#86296) — and signals land in that phase too.
    argv = [sys.executable, str(INSTANT), "--host", "{host}", "--port", "{port}",
            "--ttft-ms", "60", "--close-after", "1"]  # fmt: skip
    profile.write_text(yaml.safe_dump({
        "name": "slowgen",
        "model": {"source": "local", "path": str(tmp)},
        "engine": {"type": "command", "command": argv},
        "serving": {"port": port, "served_model_name": "m"},
        "readiness": {"timeout_s": 30},
    }))  # fmt: skip
    result = cli("up", str(profile), "--detach", env=env)
    assert result.returncode == 0, result.stdout + result.stderr
    try:
        yield env, f"http://127.0.0.1:{port}"
    finally:
        cli("down", "slowgen", env=env)


def prompts(path: Path) -> Path:
    path.write_text("".join(json.dumps({"id": f"p{i}", "prompt": f"q {i}"}) + "\n"
                            for i in range(N)))  # fmt: skip
    return path


def rows(path: Path) -> int:
    return len(path.read_bytes().splitlines()) if path.exists() else 0


def interrupt_generate(
    deployment: tuple[dict[str, str], str], tmp: Path, signum: signal.Signals, after: int
) -> None:
    """Run generate, send `signum` once `after` rows are written (0: once the first
    request reached the server), and check everything an interrupt promises."""
    env, url = deployment
    source, out = prompts(tmp / "in.jsonl"), tmp / "out.jsonl"
    before = fake_stats(url)["requests"]
    run = Cli(tmp, "generate", "slowgen", "-i", str(source), "-o", str(out),
              "--concurrency", str(CONCURRENCY), env=env)  # fmt: skip
    if after:
        wait_until(lambda: rows(out) >= after)
    else:
        wait_until(lambda: fake_stats(url)["requests"] > before)
    stderr = run.ended_by(signum, run.interrupt(signum))
    kept = [json.loads(line) for line in out.read_text().splitlines()]  # every line whole
    ids = [r["id"] for r in kept]
    assert len(set(ids)) == len(ids) < N and len(ids) >= after
    assert f"{len(ids)} finished prompts written to {out}; rerun to do the rest" in stderr
    # Every request the server saw was written, or in flight at the signal: none after it.
    sent = settled_requests(url) - before
    assert len(ids) <= sent <= len(ids) + CONCURRENCY


@pytest.mark.parametrize(
    ("signum", "after"),
    [(signal.SIGINT, 0), (signal.SIGTERM, 5), (signal.SIGHUP, 12), (signal.SIGINT, 20)],
)
def test_generate_interrupted_keeps_its_rows_and_sends_nothing_after(
    deployment: tuple[dict[str, str], str], tmp_path: Path, signum: signal.Signals, after: int
) -> None:
    interrupt_generate(deployment, tmp_path, signum, after)


def test_generate_profile_interrupted_takes_its_own_deployment_down(tmp_path: Path) -> None:
    """`generate PROFILE` brought the deployment up for itself: a signal takes it down too
    (its teardown, not counted in the ≤ 1 s, happens before the exit)."""
    env = dict(os.environ, LLMDEPLOY_STATE_DIR=str(tmp_path / "state"),
               LLMDEPLOY_CACHE=str(tmp_path / "cache"), HOME=str(tmp_path / "home"))  # fmt: skip
    profile = tmp_path / "own.yaml"
    argv = [sys.executable, str(INSTANT), "--host", "{host}", "--port", "{port}",
            "--ttft-ms", "60"]  # fmt: skip
    profile.write_text(yaml.safe_dump({
        "name": "own", "model": {"source": "local", "path": str(tmp_path)},
        "engine": {"type": "command", "command": argv},
        "serving": {"port": "auto", "served_model_name": "m"},
    }))  # fmt: skip
    source, out = prompts(tmp_path / "in.jsonl"), tmp_path / "out.jsonl"
    run = Cli(tmp_path, "generate", str(profile), "-i", str(source), "-o", str(out), env=env)
    wait_until(lambda: rows(out) >= 2)
    engine = int(str((record(env, "own") or {})["engine_pid"]))
    stderr = run.ended_by(signal.SIGTERM, run.interrupt(signal.SIGTERM))
    assert "stopped own" in stderr and record(env, "own") is None
    assert wait_no_members(engine, 5) == []  # the engine's session: nothing left


def test_ctrl_c_is_never_lost_beside_two_busy_loops(
    deployment: tuple[dict[str, str], str], tmp_path: Path
) -> None:
    busy = [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(2)]
    try:
        for attempt, after in enumerate((1, 2, 3, 5, 8)):
            (tmp := tmp_path / str(attempt)).mkdir()
            interrupt_generate(deployment, tmp, signal.SIGINT, after)
    finally:
        for proc in busy:
            proc.kill()
            proc.wait()
