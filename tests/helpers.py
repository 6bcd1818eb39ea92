"""Shared helpers for tests that start real processes."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import yaml

FAKE_ENGINE = Path(__file__).parent / "fake_engine.py"


def fake_profile(
    tmp_path: Path, name: str, *fake_args: str, extra: dict[str, object] | None = None
) -> Path:
    """A `command` profile that runs the fake engine with the given switches."""
    data: dict[str, object] = {
        "name": name,
        "model": {"source": "local", "path": str(tmp_path)},
        "engine": {
            "type": "command",
            "command": [
                sys.executable,
                str(FAKE_ENGINE),
                "--port",
                "{port}",
                "--host",
                "{host}",
                *fake_args,
            ],
        },
        "serving": {"port": "auto"},
        "readiness": {"timeout_s": 30},
    }
    data.update(extra or {})
    path = tmp_path / f"{name}.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def start_up(profile: Path, env: dict[str, str], *args: str) -> subprocess.Popen[str]:
    """A foreground `llmdeploy up` as a real process (own session, like a terminal job)."""
    return subprocess.Popen(
        [sys.executable, "-m", "llmdeploy", "up", str(profile), *args],
        env=env,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )


def record(env: dict[str, str], name: str) -> dict[str, object] | None:
    """The deployment's record as JSON, with `engine_pid` / `supervisor_pid` added for
    convenience (the record keeps (pid, start time) pairs)."""
    path = Path(env["LLMDEPLOY_STATE_DIR"]) / "deployments" / f"{name}.json"
    try:
        data = dict(json.loads(path.read_text()))
    except (FileNotFoundError, ValueError):
        return None
    engine = data.get("engine_proc")
    data["engine_pid"] = engine["pid"] if isinstance(engine, dict) else 0
    data["supervisor_pid"] = data["supervisor"]["pid"]
    return data


def wait_phase(
    env: dict[str, str],
    name: str,
    phase: str,
    timeout: float = 30,
    proc: subprocess.Popen[str] | None = None,
) -> dict[str, object]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        rec = record(env, name)
        if rec and rec["phase"] == phase:
            return rec
        if proc is not None and proc.poll() is not None:
            output = proc.stdout.read() if proc.stdout else ""
            raise AssertionError(f"up exited {proc.returncode}: {output}")
        time.sleep(0.02)
    raise AssertionError(f"{name} never reached {phase}; record: {record(env, name)}")


def session_members(session: int) -> list[str]:
    """Live processes of a session, as `ps` sees them (independent of llmdeploy's /proc code)."""
    out = subprocess.run(
        ["ps", "-eo", "pid=,sid=,stat=,comm="], capture_output=True, text=True, check=True
    ).stdout
    left = []
    for line in out.splitlines():
        pid, sid, stat, comm = line.split(None, 3)
        if int(sid) == session and not stat.startswith("Z"):
            left.append(f"{pid} {comm}")
    return left


def wait_no_members(session: int, timeout: float) -> list[str]:
    deadline = time.monotonic() + timeout
    while True:
        left = session_members(session)
        if not left or time.monotonic() > deadline:
            return left
        time.sleep(0.05)


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    with open(f"/proc/{pid}/stat") as handle:
        return handle.read().rpartition(")")[2].split()[0] != "Z"


def fake_stats(url: str) -> dict[str, int]:
    """The counters of tests/fake_engine.py or tests/instant_server.py (`GET /stats`)."""
    with urllib.request.urlopen(url + "/stats", timeout=5) as response:
        return dict(json.load(response))
