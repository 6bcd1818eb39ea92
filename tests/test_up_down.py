"""`up`, `down`, `status`, `logs` on real processes: the fake engine (a real HTTP
server run as a program) with one fault switched on per test. Each test asserts
the outcome and that no process of the engine's session is left."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import time
from pathlib import Path

import pytest
from conftest import cli
from helpers import (
    fake_profile,
    pid_alive,
    record,
    session_members,
    start_up,
    wait_no_members,
    wait_phase,
)


def _stop_foreground(proc: subprocess.Popen[str], signum: int) -> str:
    proc.send_signal(signum)
    out, _ = proc.communicate(timeout=30)
    return out


@pytest.mark.parametrize(("signum", "code"), [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
def test_signal_to_foreground_up_stops_the_whole_group(
    tmp_path: Path, isolated_env: dict[str, str], signum: int, code: int
) -> None:
    profile = fake_profile(tmp_path, "sig", "--spawn-grandchildren")
    proc = start_up(profile, isolated_env)
    rec = wait_phase(isolated_env, "sig", "ready", proc=proc)
    session = int(str(rec["engine_pid"]))
    assert len(session_members(session)) == 3  # engine + two grandchildren
    out = _stop_foreground(proc, signum)
    assert proc.returncode == code, out
    assert session_members(session) == []
    assert record(isolated_env, "sig") is None  # unregistered


def test_sigkill_of_foreground_up_leaves_no_engine(
    tmp_path: Path, isolated_env: dict[str, str]
) -> None:
    profile = fake_profile(tmp_path, "kill9", "--spawn-grandchildren")
    proc = start_up(profile, isolated_env, "--grace", "2")
    rec = wait_phase(isolated_env, "kill9", "ready", proc=proc)
    session = int(str(rec["engine_pid"]))
    proc.kill()
    proc.communicate()
    assert wait_no_members(session, timeout=5) == []
    # the guardian stopped the engine and recorded why; the record stays until `down`
    deadline = time.monotonic() + 10
    while (record(isolated_env, "kill9") or {}).get("phase") != "failed":
        assert time.monotonic() < deadline, record(isolated_env, "kill9")
        time.sleep(0.05)
    status = cli("status", env=isolated_env)
    assert "kill9" in status.stdout and "failed" in status.stdout and "died" in status.stdout
    assert cli("down", "kill9", env=isolated_env).returncode == 0
    assert record(isolated_env, "kill9") is None


def test_never_ready_times_out_with_exit_3(tmp_path: Path, isolated_env: dict[str, str]) -> None:
    profile = fake_profile(tmp_path, "slow", "--never-ready", "--spawn-grandchildren")
    started = time.monotonic()
    result = cli("up", str(profile), "--timeout", "1.5", env=isolated_env)
    assert result.returncode == 3, result.stderr
    assert time.monotonic() - started < 15
    assert "not ready after 1.5 s" in result.stderr
    assert "last lines of" in result.stderr  # the engine's log tail
    assert "Traceback" not in result.stderr
    failed = record(isolated_env, "slow") or {}
    assert failed["phase"] == "failed" and "not ready after 1.5 s" in str(failed["reason"])
    assert _no_fake_engines(tmp_path)


def test_exit_during_start_is_diagnosed(tmp_path: Path, isolated_env: dict[str, str]) -> None:
    profile = fake_profile(
        tmp_path,
        "crash",
        "--exit-during-start",
        "1",
        "--say",
        "OSError: [Errno 98] Address already in use",
    )
    result = cli("up", str(profile), env=isolated_env)
    assert result.returncode == 3
    assert "engine exited with code 1 while starting — address in use" in result.stderr
    assert "| OSError: [Errno 98]" in result.stderr
    assert _no_fake_engines(tmp_path)


def test_exit_after_ready_fails_foreground_with_exit_3(
    tmp_path: Path, isolated_env: dict[str, str]
) -> None:
    profile = fake_profile(tmp_path, "late", "--exit-after-ready", "0.5")
    result = cli("up", str(profile), env=isolated_env)
    assert result.returncode == 3
    assert "ready: late" in result.stderr
    assert "exited with code 9 after being ready" in result.stderr
    assert _no_fake_engines(tmp_path)


def test_restart_on_failure_backs_off_then_gives_up(
    tmp_path: Path, isolated_env: dict[str, str]
) -> None:
    profile = fake_profile(
        tmp_path,
        "flaky",
        "--exit-during-start",
        "2",
        extra={"restart": {"policy": "on-failure", "max_restarts": 2, "backoff_s": 0.2}},
    )
    result = cli("up", str(profile), env=isolated_env)
    assert result.returncode == 3
    assert "restarting in 0.2 s (1/2 within 600 s)" in result.stderr
    assert "restarting in 0.4 s (2/2 within 600 s)" in result.stderr  # exponential
    assert "gave up after 2 restart(s) within 600 s" in result.stderr
    log = (Path(isolated_env["LLMDEPLOY_STATE_DIR"]) / "logs" / "flaky.log").read_text()
    assert log.count("giving up during start") == 3
    assert _no_fake_engines(tmp_path)


def test_restarts_after_ready_count_too(tmp_path: Path, isolated_env: dict[str, str]) -> None:
    """An engine that crashes soon after every ready is not restarted forever: restarts
    after ready count within the window, and the policy gives up."""
    profile = fake_profile(
        tmp_path,
        "phoenix",
        "--exit-after-ready",
        "0.3",
        extra={"restart": {"policy": "on-failure", "max_restarts": 2, "backoff_s": 0.1}},
    )
    result = cli("up", str(profile), env=isolated_env, timeout=120)
    assert result.returncode == 3, result.stderr
    log = (Path(isolated_env["LLMDEPLOY_STATE_DIR"]) / "logs" / "phoenix.log").read_text()
    assert log.count("ready: phoenix") == 3  # first start + 2 restarts
    assert "gave up after 2 restart(s)" in result.stderr
    rec = record(isolated_env, "phoenix") or {}
    assert rec["phase"] == "failed" and rec["restarts"] == 2
    assert _no_fake_engines(tmp_path)


def test_ready_waits_for_health_not_models(tmp_path: Path, isolated_env: dict[str, str]) -> None:
    profile = fake_profile(tmp_path, "warm", "--ready-after", "1.5", "--models-before-health")
    started = time.monotonic()
    result = cli("up", str(profile), "--detach", env=isolated_env)
    took = time.monotonic() - started
    assert result.returncode == 0, result.stderr
    assert took >= 1.5
    assert cli("down", "warm", env=isolated_env).returncode == 0


def test_rejected_probe_request_fails_fast(tmp_path: Path, isolated_env: dict[str, str]) -> None:
    profile = fake_profile(tmp_path, "reject", "--reject-probe")
    result = cli("up", str(profile), "--timeout", "20", env=isolated_env)
    assert result.returncode == 3
    assert "refused the probe request (HTTP 400)" in result.stderr
    assert cli("up", str(profile), "--no-probe", "--detach", env=isolated_env).returncode == 0
    assert cli("down", "reject", env=isolated_env).returncode == 0


def test_detach_status_logs_down(tmp_path: Path, isolated_env: dict[str, str]) -> None:
    profile = fake_profile(tmp_path, "bg", "--spawn-grandchildren")
    result = cli("up", str(profile), "--detach", env=isolated_env)
    assert result.returncode == 0, result.stderr
    assert "bg: ready at http://127.0.0.1:" in result.stdout
    rec = record(isolated_env, "bg")
    assert rec is not None
    session = int(str(rec["engine_pid"]))
    supervisor = int(str(rec["supervisor_pid"]))

    status = cli("status", "--json", env=isolated_env)
    import json

    rows = json.loads(status.stdout)
    assert rows[0]["name"] == "bg" and rows[0]["state"] == "ready" and rows[0]["health"] == "ok"

    logs = cli("logs", "bg", "-n", "5", env=isolated_env)
    assert logs.returncode == 0 and "ready: bg" in logs.stdout

    again = cli("up", str(profile), "--detach", env=isolated_env)
    assert again.returncode == 7  # one live deployment per name
    assert "already running" in again.stderr

    down = cli("down", "bg", env=isolated_env)
    assert down.returncode == 0, down.stderr
    assert "no process left" in down.stdout
    assert session_members(session) == []
    assert not pid_alive(supervisor)
    assert cli("status", env=isolated_env).stdout.strip() == "no deployments"


def test_down_kills_an_engine_that_ignores_sigterm(
    tmp_path: Path, isolated_env: dict[str, str]
) -> None:
    profile = fake_profile(tmp_path, "stubborn", "--ignore-sigterm")
    assert cli("up", str(profile), "--detach", "--grace", "1", env=isolated_env).returncode == 0
    session = int(str((record(isolated_env, "stubborn") or {})["engine_pid"]))
    started = time.monotonic()
    down = cli("down", "stubborn", "--grace", "1", env=isolated_env)
    assert down.returncode == 0, down.stderr
    assert 1.0 <= time.monotonic() - started < 10
    assert session_members(session) == []


def test_port_taken_is_refused_naming_the_holder(
    tmp_path: Path, isolated_env: dict[str, str]
) -> None:
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        port = holder.getsockname()[1]
        profile = fake_profile(tmp_path, "clash", extra={"serving": {"port": port}})
        result = cli("up", str(profile), env=isolated_env)
    assert result.returncode == 4
    assert f"port {port} on 127.0.0.1 is not available" in result.stderr
    assert f"pid {os.getpid()}" in result.stderr
    assert _no_fake_engines(tmp_path)


def test_missing_engine_program_is_a_start_error(
    tmp_path: Path, isolated_env: dict[str, str]
) -> None:
    profile = tmp_path / "p.yaml"
    profile.write_text(
        f"name: nope\nmodel: {{source: local, path: {tmp_path}}}\n"
        "engine: {type: command, command: [/nonexistent/engine, '{port}']}\n"
        "serving: {port: auto}\n"
    )
    result = cli("up", str(profile), env=isolated_env)
    assert result.returncode == 3
    assert "cannot run '/nonexistent/engine'" in result.stderr
    assert "Traceback" not in result.stderr


def test_down_of_unknown_name_is_exit_6(isolated_env: dict[str, str]) -> None:
    result = cli("down", "ghost", env=isolated_env)
    assert result.returncode == 6
    assert "no deployment named 'ghost'" in result.stderr


def _no_fake_engines(tmp_path: Path) -> bool:
    """No process anywhere still runs a fake engine of this test."""
    out = subprocess.run(["ps", "-ww", "-eo", "pid=,args="], capture_output=True, text=True).stdout
    return str(tmp_path) not in out


def test_up_warns_when_the_server_is_open_to_the_network(
    tmp_path: Path, isolated_env: dict[str, str]
) -> None:
    profile = fake_profile(tmp_path, "open", extra={"serving": {"port": "auto", "host": "0.0.0.0"}})
    result = cli("up", str(profile), "--detach", env=isolated_env)
    assert result.returncode == 0, result.stderr
    assert "warning:" in result.stderr and "no API key" in result.stderr
    assert cli("down", "open", env=isolated_env).returncode == 0
