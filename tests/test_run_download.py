"""`up` while it downloads, from the loopback hub throttled to a crawl: Ctrl-C stops it
at once and starts nothing; `status`, `down` and a second `up` see the download."""

from __future__ import annotations

import json
import random
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import cli
from helpers import FAKE_ENGINE, record, start_up, wait_phase
from hub_helpers import Hub

SIZE = 4_000_000  # at 200 kB/s: 20 s, far longer than any test here waits


@pytest.fixture
def slow_hub(tmp_path: Path) -> Iterator[Hub]:
    root = tmp_path / "hubroot"
    model = root / "acme" / "slow" / "master"
    model.mkdir(parents=True)
    (model / "config.json").write_text("{}\n")
    (model / "weights.bin").write_bytes(random.Random(3).randbytes(SIZE))
    hub = Hub(root, tmp_path / "hub", ("--slow-bps", "200000"))
    yield hub
    hub.stop()


def _profile(tmp_path: Path) -> Path:
    path = tmp_path / "slow.yaml"
    command = [sys.executable, str(FAKE_ENGINE), "--port", "{port}", "--say", str(tmp_path)]
    path.write_text(
        "name: slow\nmodel: {source: modelscope, id: acme/slow}\n"
        f"engine: {{type: command, command: {json.dumps(command)}}}\n"
        "serving: {port: auto}\n"
    )
    return path


def _env(isolated_env: dict[str, str], hub: Hub) -> dict[str, str]:
    env = {k: v for k, v in isolated_env.items() if not k.startswith("MODELSCOPE_")}
    env["MODELSCOPE_ENDPOINT"] = hub.url
    env["NO_PROXY"] = "127.0.0.1,localhost"
    return env


def _pulling(env: dict[str, str], proc: subprocess.Popen[str]) -> dict[str, object]:
    """Wait until the download has really begun (bytes on disk)."""
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        rec = wait_phase(env, "slow", "pulling", timeout=60, proc=proc)
        if int(rec.get("pull_done") or 0) > 0:
            return rec
        time.sleep(0.05)
    raise AssertionError(f"no progress recorded: {record(env, 'slow')}")


def _marked(tmp_path: Path) -> list[str]:
    out = subprocess.run(["ps", "-ww", "-eo", "pid=,args="], capture_output=True, text=True)
    return [
        line for line in out.stdout.splitlines() if str(tmp_path) in line and "fake_hub" not in line
    ]


def _log(env: dict[str, str]) -> str:
    return (Path(env["LLMDEPLOY_STATE_DIR"]) / "logs" / "slow.log").read_text()


def test_ctrl_c_during_download_stops_at_once_and_starts_nothing(
    tmp_path: Path, isolated_env: dict[str, str], slow_hub: Hub
) -> None:
    env = _env(isolated_env, slow_hub)
    proc = start_up(_profile(tmp_path), env)
    _pulling(env, proc)
    started = time.monotonic()
    proc.send_signal(signal.SIGINT)
    out, _ = proc.communicate(timeout=30)
    took = time.monotonic() - started
    assert proc.returncode == 130, out
    assert took < 5, took  # ≤ 1 s is the goal (benchmarks/interrupt_up.py); margin for load
    assert "starting slow" not in _log(env)  # no engine after the signal
    assert record(env, "slow") is None
    assert _marked(tmp_path) == []  # the download process went too


def test_status_down_and_up_during_a_download(
    tmp_path: Path, isolated_env: dict[str, str], slow_hub: Hub
) -> None:
    env = _env(isolated_env, slow_hub)
    proc = start_up(_profile(tmp_path), env)
    _pulling(env, proc)
    rows = json.loads(cli("status", "--json", env=env).stdout)
    assert rows[0]["state"] == "pulling" and "%" in rows[0]["detail"], rows
    assert rows[0]["pull_total"] == SIZE + 3
    again = cli("up", str(_profile(tmp_path)), env=env)
    assert again.returncode == 7 and "already running (pulling" in again.stderr, again.stderr
    down = cli("down", "slow", env=env)
    assert down.returncode == 0, down.stderr
    out, _ = proc.communicate(timeout=30)
    assert proc.returncode == 128 + signal.SIGTERM, out
    assert "starting slow" not in _log(env)
    assert cli("status", env=env).stdout.strip() == "no deployments"
    assert _marked(tmp_path) == []
