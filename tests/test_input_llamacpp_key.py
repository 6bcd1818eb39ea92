"""The llama.cpp engine's API key (issue 9): the real server enforces it, and it is in
no process's argv, which every user of the machine can read (`ps`, /proc/PID/cmdline).
The demo deployment (SmolLM2-135M on llama.cpp) with a key added."""

from __future__ import annotations

import json
import secrets
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest
import yaml
from conftest import PROFILES, cli
from helpers import pid_alive

pytestmark = pytest.mark.engine


def _status(url: str, key: str | None) -> int:
    request = urllib.request.Request(url)
    if key is not None:
        request.add_header("Authorization", f"Bearer {key}")
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return int(response.status)
    except urllib.error.HTTPError as exc:
        return exc.code


def _argv_holding(secret: bytes) -> list[str]:
    """Every live process whose command line contains `secret`."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes()
        except OSError:  # exited while we looked, or not ours to read
            continue
        if secret in cmdline:
            shown = cmdline.replace(b"\0", b" ").decode(errors="replace")
            found.append(f"{entry.name}: {shown}")
    return found


def test_llamacpp_key_is_enforced_and_never_in_argv(
    tmp_path: Path, isolated_env: dict[str, str]
) -> None:
    key = "sk-test-" + secrets.token_hex(16)  # random: it cannot be in any argv by chance
    data = yaml.safe_load((PROFILES / "demo-cpu.yaml").read_text())
    data["name"] = "keyed-cpu"
    data["serving"]["api_key"] = "${LLMDEPLOY_TEST_KEY}"
    profile = tmp_path / "keyed-cpu.yaml"
    profile.write_text(yaml.safe_dump(data))
    env = {**isolated_env, "LLMDEPLOY_TEST_KEY": key}

    up = cli("up", str(profile), "--detach", env=env, timeout=180)
    owners: list[int] = []
    try:
        assert up.returncode == 0, up.stdout + up.stderr
        assert key not in up.stdout + up.stderr
        row = json.loads(cli("status", "--json", env=env).stdout)[0]
        owners = [int(row["pid"]), int(row["engine_pid"])]
        models = row["url"] + "/models"
        assert _status(models, None) == 401
        assert _status(models, "sk-wrong") == 401
        assert _status(models, key) == 200

        assert _argv_holding(key.encode()) == []
        # ...because it went by the environment, which only this user can read.
        engine = Path("/proc") / str(row["engine_pid"]) / "environ"
        assert f"API_KEY={key}".encode() in engine.read_bytes().split(b"\0")
    finally:
        down = cli("down", "keyed-cpu", env=env)
    assert down.returncode == 0, down.stderr
    # `down` returns once the engine is stopped; its supervisor exits moments later.
    deadline = time.monotonic() + 20
    while any(map(pid_alive, owners)) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not any(map(pid_alive, owners)), owners
