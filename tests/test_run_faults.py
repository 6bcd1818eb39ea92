"""The run core under faults, on real processes: escaping descendants, SIGKILL of
`up` around the spawn, reused pids, orphans, corrupt records, second Ctrl-C, `down
--grace`, racing starts, and a command's own deployment outliving a SIGKILL of it.

The fake engine writes the pids of its escaped descendants (setsid, double fork) to a
file, and carries a marker in its argv; "nothing left" is checked by both, with `ps`,
independently of llmdeploy's own process tracking."""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import cli
from helpers import fake_profile, pid_alive, record, start_up, wait_phase

ESCAPES = ("--spawn-grandchildren", "--escape-setsid", "--escape-double-fork")


def _escaping_profile(tmp_path: Path, name: str, *more: str, **kw: object) -> Path:
    pid_file = tmp_path / f"{name}.pids"
    return fake_profile(
        tmp_path,
        name,
        *ESCAPES,
        "--pid-file",
        str(pid_file),
        "--say",
        str(tmp_path),
        *more,
        **kw,  # type: ignore[arg-type]
    )


def _marked(tmp_path: Path) -> list[str]:
    """Processes anywhere whose argv names this test's directory (ps, not /proc code)."""
    out = subprocess.run(
        ["ps", "-ww", "-eo", "pid=,stat=,args="], capture_output=True, text=True
    ).stdout
    return [
        line.strip()
        for line in out.splitlines()
        if str(tmp_path) in line and not line.split()[1].startswith("Z")
    ]


def _escaped(tmp_path: Path, name: str) -> list[int]:
    path = tmp_path / f"{name}.pids"
    pids = [int(p) for p in path.read_text().split()] if path.exists() else []
    return [p for p in pids if pid_alive(p)]


def _wait_nothing_left(tmp_path: Path, name: str, timeout: float = 20) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not _marked(tmp_path) and not _escaped(tmp_path, name):
            return
        time.sleep(0.05)
    raise AssertionError(f"left: {_marked(tmp_path)} escaped: {_escaped(tmp_path, name)}")


def _wait_file(path: Path, lines: int, timeout: float = 20) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if path.exists() and len(path.read_text().split()) >= lines:
            return
        time.sleep(0.02)
    raise AssertionError(f"{path} never had {lines} lines")


def test_escaped_descendants_go_with_down(tmp_path: Path, isolated_env: dict[str, str]) -> None:
    profile = _escaping_profile(tmp_path, "esc")
    up = cli("up", str(profile), "--detach", env=isolated_env)
    assert up.returncode == 0, up.stderr
    _wait_file(tmp_path / "esc.pids", 2)
    assert len(_escaped(tmp_path, "esc")) == 2  # both really escaped and run
    down = cli("down", "esc", env=isolated_env)
    assert down.returncode == 0, down.stderr
    _wait_nothing_left(tmp_path, "esc", timeout=5)


def test_escaped_descendants_go_with_ctrl_c(tmp_path: Path, isolated_env: dict[str, str]) -> None:
    profile = _escaping_profile(tmp_path, "escfg")
    proc = start_up(profile, isolated_env, "--grace", "5")
    wait_phase(isolated_env, "escfg", "ready", proc=proc)
    _wait_file(tmp_path / "escfg.pids", 2)
    proc.send_signal(signal.SIGINT)
    out, _ = proc.communicate(timeout=30)
    assert proc.returncode == 130, out
    _wait_nothing_left(tmp_path, "escfg", timeout=5)
    assert record(isolated_env, "escfg") is None


def test_sigkill_of_up_leaves_nothing_and_says_so(
    tmp_path: Path, isolated_env: dict[str, str]
) -> None:
    """Also a daemon with a cleared environment, out of the engine's session: once the
    supervisor is gone, only what it told the guardian before "ready" finds it."""
    profile = _escaping_profile(tmp_path, "k9", "--escape-bare")
    proc = start_up(profile, isolated_env, "--grace", "2")
    wait_phase(isolated_env, "k9", "ready", proc=proc)
    _wait_file(tmp_path / "k9.pids", 3)
    proc.kill()
    proc.communicate()
    _wait_nothing_left(tmp_path, "k9")
    rows = json.loads(cli("status", "--json", env=isolated_env).stdout)
    failed = wait_until(lambda: _row(isolated_env, "k9").get("state") == "failed")
    assert failed, rows
    assert "died" in str(_row(isolated_env, "k9")["detail"])
    assert cli("down", "k9", env=isolated_env).returncode == 0
    assert record(isolated_env, "k9") is None


def test_sigkill_of_up_around_the_spawn_leaves_no_engine(
    tmp_path: Path, isolated_env: dict[str, str]
) -> None:
    """SIGKILL of `up` at many instants from launch to ready: never an untracked engine,
    and the name is usable again right after."""
    rng = random.Random(9)
    profile = _escaping_profile(tmp_path, "race")
    for offset in sorted(rng.uniform(0.0, 1.5) for _ in range(12)):
        proc = start_up(profile, isolated_env, "--grace", "1")
        time.sleep(offset)  # the instant under test, not a wait for a condition
        proc.kill()
        proc.communicate()
        _wait_nothing_left(tmp_path, "race")
        down = cli("down", "race", env=isolated_env)
        assert down.returncode in (0, 6), f"offset {offset:.2f}: {down.stderr}"
        (tmp_path / "race.pids").unlink(missing_ok=True)
    again = cli("up", str(profile), "--detach", env=isolated_env)
    assert again.returncode == 0, again.stderr
    assert cli("down", "race", env=isolated_env).returncode == 0
    _wait_nothing_left(tmp_path, "race")


def test_a_reused_pid_is_never_signalled(tmp_path: Path, isolated_env: dict[str, str]) -> None:
    """A record whose pids now belong to unrelated processes (pid reuse, a reboot)."""
    bystander = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)"])
    try:
        state = Path(isolated_env["LLMDEPLOY_STATE_DIR"]) / "deployments"
        state.mkdir(parents=True)
        wrong = {"pid": bystander.pid, "start": 1, "name": "python"}  # start time differs
        (state / "reused.json").write_text(json.dumps(_fake_record("reused", wrong)))
        row = _row(isolated_env, "reused")
        assert row["state"] == "dead", row  # not "ready": its supervisor is not that process
        down = cli("down", "reused", "--grace", "1", env=isolated_env)
        assert down.returncode == 0, down.stderr
        assert bystander.poll() is None  # never signalled
        assert record(isolated_env, "reused") is None
    finally:
        bystander.kill()
        bystander.wait()


def test_orphans_block_a_new_up_until_down(tmp_path: Path, isolated_env: dict[str, str]) -> None:
    """Supervisor and guardian both SIGKILLed: the engine is orphaned. `status` says so,
    a new `up` (port: auto would let it start) is refused, `down` sweeps by tag."""
    profile = _escaping_profile(tmp_path, "orph")
    assert cli("up", str(profile), "--detach", env=isolated_env).returncode == 0
    rec = record(isolated_env, "orph") or {}
    owners = [int(rec[who]["pid"]) for who in ("supervisor", "guardian")]  # type: ignore[index]
    for pid in owners:  # stopped first: neither can react to the other's death
        os.kill(pid, signal.SIGSTOP)
    for pid in owners:
        os.kill(pid, signal.SIGKILL)
    assert wait_until(lambda: _row(isolated_env, "orph").get("state") == "orphaned")
    again = cli("up", str(profile), "--detach", env=isolated_env)
    assert again.returncode == 7, again.stderr
    assert "processes left from an earlier run" in again.stderr
    assert _marked(tmp_path)  # still there: the refused up touched nothing
    down = cli("down", "orph", "--grace", "2", env=isolated_env)
    assert down.returncode == 0, down.stderr
    _wait_nothing_left(tmp_path, "orph", timeout=5)


def test_corrupt_record_is_listed_and_removable(
    tmp_path: Path, isolated_env: dict[str, str]
) -> None:
    profile = fake_profile(tmp_path, "fine")
    assert cli("up", str(profile), "--detach", env=isolated_env).returncode == 0
    state = Path(isolated_env["LLMDEPLOY_STATE_DIR"]) / "deployments"
    (state / "broken.json").write_bytes(b'{"name": "broken", "phase": 12')
    (state / "weird.json").write_text(json.dumps({"name": "weird", "phase": "flying"}))
    status = cli("status", env=isolated_env)
    assert status.returncode == 0, status.stderr
    assert "Traceback" not in status.stderr
    lines = {line.split()[0]: line for line in status.stdout.splitlines()[1:]}
    assert "ready" in lines["fine"] and "corrupt" in lines["broken"] and "corrupt" in lines["weird"]
    down = cli("down", "--all", env=isolated_env)
    assert down.returncode == 0, down.stderr
    assert cli("status", env=isolated_env).stdout.strip() == "no deployments"
    assert not _marked(tmp_path)


def test_second_ctrl_c_kills_at_once(tmp_path: Path, isolated_env: dict[str, str]) -> None:
    profile = fake_profile(tmp_path, "stub", "--ignore-sigterm", "--say", str(tmp_path))
    proc = start_up(profile, isolated_env, "--grace", "60")
    wait_phase(isolated_env, "stub", "ready", proc=proc)
    proc.send_signal(signal.SIGINT)
    wait_phase(isolated_env, "stub", "stopping", proc=proc)
    started = time.monotonic()
    proc.send_signal(signal.SIGINT)
    out, _ = proc.communicate(timeout=30)
    assert time.monotonic() - started < 10  # not the 60 s grace
    assert proc.returncode == 130
    assert "second signal: killing now" in out
    assert not _marked(tmp_path)


def test_down_grace_is_honoured(tmp_path: Path, isolated_env: dict[str, str]) -> None:
    profile = fake_profile(tmp_path, "slowstop", "--ignore-sigterm", "--say", str(tmp_path))
    up = cli("up", str(profile), "--detach", "--grace", "60", env=isolated_env)
    assert up.returncode == 0, up.stderr
    started = time.monotonic()
    down = cli("down", "slowstop", "--grace", "1", env=isolated_env)
    took = time.monotonic() - started
    assert down.returncode == 0, down.stderr
    assert 1.0 <= took < 20, took  # the 1 s asked for, not the 60 s the up was given
    assert not _marked(tmp_path)


def test_racing_detached_starts_report_their_own_outcome(
    tmp_path: Path, isolated_env: dict[str, str]
) -> None:
    profile = fake_profile(tmp_path, "twin", "--ready-after", "0.5")
    argv = [sys.executable, "-m", "llmdeploy", "up", str(profile), "--detach"]
    procs = [
        subprocess.Popen(
            argv, env=isolated_env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
        )
        for _ in range(2)
    ]
    results = [(p.wait(60), *p.communicate()) for p in procs]
    codes = sorted(code for code, _, _ in results)
    assert codes == [0, 7], results
    for code, out, err in results:
        if code == 7:
            assert "already running" in err and "ready at" not in out, (out, err)
        else:
            assert "ready at" in out and "already running" not in err + out, (out, err)
    assert cli("down", "twin", env=isolated_env).returncode == 0


def test_detached_crash_after_ready_stays_listed_as_failed(
    tmp_path: Path, isolated_env: dict[str, str]
) -> None:
    profile = fake_profile(tmp_path, "crashy", "--exit-after-ready", "0.3")
    assert cli("up", str(profile), "--detach", env=isolated_env).returncode == 0
    assert wait_until(lambda: _row(isolated_env, "crashy").get("state") == "failed")
    row = _row(isolated_env, "crashy")
    assert "after being ready" in str(row["reason"]) and row["tail"], row
    assert cli("down", "crashy", env=isolated_env).returncode == 0
    assert cli("status", env=isolated_env).stdout.strip() == "no deployments"


def test_a_killed_guardian_is_replaced(tmp_path: Path, isolated_env: dict[str, str]) -> None:
    """The new guardian is told what the first one knew (a daemon without a tag too)."""
    profile = _escaping_profile(tmp_path, "guard", "--escape-bare")
    assert cli("up", str(profile), "--detach", env=isolated_env).returncode == 0
    assert len(_escaped(tmp_path, "guard")) == 3
    first = (record(isolated_env, "guard") or {})["guardian"]
    os.kill(int(first["pid"]), signal.SIGKILL)  # type: ignore[index]
    assert wait_until(lambda: (record(isolated_env, "guard") or {})["guardian"] != first)
    sup = int((record(isolated_env, "guard") or {})["supervisor_pid"])  # type: ignore[arg-type]
    os.kill(sup, signal.SIGKILL)  # the new guardian must clean up
    _wait_nothing_left(tmp_path, "guard")
    assert cli("down", "guard", env=isolated_env).returncode == 0


def test_sigkill_of_a_command_takes_its_own_deployment_down(
    tmp_path: Path, isolated_env: dict[str, str]
) -> None:
    """`generate PROFILE` brings a deployment up for itself; SIGKILL of it must not leave
    that deployment running (it watches a pipe only the command holds)."""
    profile = fake_profile(tmp_path, "mine", "--answer-delay", "0.5", "--say", str(tmp_path))
    prompts = tmp_path / "prompts.jsonl"
    prompts.write_text("".join(json.dumps({"prompt": f"p{i}"}) + "\n" for i in range(200)))
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "llmdeploy",
            "generate",
            str(profile),
            "--input",
            str(prompts),
            "--output",
            str(tmp_path / "out.jsonl"),
        ],
        env=isolated_env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    wait_phase(isolated_env, "mine", "ready", proc=None, timeout=60)
    proc.kill()
    proc.wait()
    _wait_nothing_left(tmp_path, "mine")
    assert wait_until(lambda: record(isolated_env, "mine") is None)


def test_diagnosis_quotes_only_this_run(tmp_path: Path, isolated_env: dict[str, str]) -> None:
    first = fake_profile(
        tmp_path, "same", "--exit-during-start", "1", "--say", "CUDA out of memory"
    )
    assert cli("up", str(first), env=isolated_env).returncode == 3
    second = fake_profile(tmp_path, "same", "--exit-during-start", "4")
    result = cli("up", str(second), env=isolated_env)
    assert result.returncode == 3
    assert "exited with code 4" in result.stderr
    assert "out of memory" not in result.stderr  # the first run's line, not this one's


# --- helpers ---------------------------------------------------------------------------


def wait_until(condition: object, timeout: float = 30) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():  # type: ignore[operator]
            return True
        time.sleep(0.05)
    return False


def _row(env: dict[str, str], name: str) -> dict[str, object]:
    rows = json.loads(cli("status", "--json", env=env).stdout)
    return next((r for r in rows if r["name"] == name), {})


def _fake_record(name: str, proc: dict[str, object]) -> dict[str, object]:
    return {
        "name": name,
        "run_id": "r1",
        "phase": "ready",
        "profile": "/nonexistent.yaml",
        "engine": "command",
        "model": "m",
        "served_model_name": "m",
        "base_url": "http://127.0.0.1:9",
        "health_path": "/health",
        "log": "/nonexistent.log",
        "log_offset": 0,
        "started_at": 0.0,
        "supervisor": proc,
        "guardian": proc,
        "engine_proc": proc,
    }


def test_names_cannot_leave_the_state_directory(
    tmp_path: Path, isolated_env: dict[str, str]
) -> None:
    victim = Path(isolated_env["LLMDEPLOY_STATE_DIR"]).parent / "victim.json"
    victim.write_text("{}")
    for verb in ("down", "logs"):
        result = cli(verb, "../victim", env=isolated_env)
        assert result.returncode == 2, result.stderr
        assert "is not a deployment name" in result.stderr
        assert "Traceback" not in result.stderr
    assert victim.exists()


def test_a_record_naming_a_foreign_owner_is_not_obeyed(
    tmp_path: Path, isolated_env: dict[str, str]
) -> None:
    """A hostile record with a live process's true pid and start time: not llmdeploy,
    so never signalled, and the deployment counts as dead."""
    bystander = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)"])
    try:
        with open(f"/proc/{bystander.pid}/stat") as handle:
            start = int(handle.read().rpartition(")")[2].split()[19])
        state = Path(isolated_env["LLMDEPLOY_STATE_DIR"]) / "deployments"
        state.mkdir(parents=True)
        true = {"pid": bystander.pid, "start": start, "name": "python"}
        (state / "hostile.json").write_text(json.dumps(_fake_record("hostile", true)))
        assert _row(isolated_env, "hostile")["state"] == "dead"
        down = cli("down", "hostile", "--grace", "1", env=isolated_env)
        assert down.returncode == 0, down.stderr
        assert bystander.poll() is None
    finally:
        bystander.kill()
        bystander.wait()


def test_hostile_state_files_are_one_line_errors(
    tmp_path: Path, isolated_env: dict[str, str]
) -> None:
    state = Path(isolated_env["LLMDEPLOY_STATE_DIR"])
    (state / "locks").mkdir(parents=True)
    (state / "locks" / "odd.lock").mkdir()  # a directory where the lock file should be
    (state / "deployments").mkdir()
    (state / "deployments" / "huge.json").write_bytes(b" " * 2_000_000)
    profile = fake_profile(tmp_path, "odd")
    up = cli("up", str(profile), env=isolated_env)
    assert up.returncode == 1 and "cannot open the lock" in up.stderr, up.stderr
    assert "Traceback" not in up.stderr
    status = cli("status", env=isolated_env)
    assert status.returncode == 0 and "corrupt" in status.stdout, status.stdout
    assert cli("down", "huge", env=isolated_env).returncode == 0


def test_hangup_stops_up_unless_started_under_nohup(
    tmp_path: Path, isolated_env: dict[str, str]
) -> None:
    profile = fake_profile(tmp_path, "hup", "--say", str(tmp_path))
    plain = start_up(profile, isolated_env)
    wait_phase(isolated_env, "hup", "ready", proc=plain)
    plain.send_signal(signal.SIGHUP)
    plain.communicate(timeout=30)
    assert plain.returncode == 128 + signal.SIGHUP

    def nohup() -> None:
        signal.signal(signal.SIGHUP, signal.SIG_IGN)

    kept = subprocess.Popen(
        [sys.executable, "-m", "llmdeploy", "up", str(profile)],
        env=isolated_env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
        preexec_fn=nohup,
    )
    wait_phase(isolated_env, "hup", "ready", proc=None)
    kept.send_signal(signal.SIGHUP)
    with pytest.raises(subprocess.TimeoutExpired):
        kept.wait(timeout=1.5)  # still serving: nohup's promise
    assert (record(isolated_env, "hup") or {})["phase"] == "ready"
    kept.send_signal(signal.SIGTERM)
    assert kept.wait(timeout=30) == 128 + signal.SIGTERM
    assert not _marked(tmp_path)


INSTANT = Path(__file__).parent / "instant_server.py"


def _slow_first_token_profile(tmp_path: Path, name: str, ttft_ms: int) -> Path:
    command = [sys.executable, str(INSTANT), "--host", "{host}", "--port", "{port}"]
    command += ["--ttft-ms", str(ttft_ms), "--model-name", str(tmp_path)]  # marks its argv
    path = tmp_path / f"{name}.yaml"
    path.write_text(
        f"name: {name}\nmodel: {{source: local, path: {tmp_path}}}\n"
        f"engine: {{type: command, command: {json.dumps(command)}}}\nserving: {{port: auto}}\n"
    )
    return path


def test_a_slow_first_token_still_becomes_ready(
    tmp_path: Path, isolated_env: dict[str, str]
) -> None:
    """The probe request may take longer than a health poll (a big model on a CPU)."""
    up = cli("up", str(_slow_first_token_profile(tmp_path, "slowtok", 2500)), "--detach",
             env=isolated_env, timeout=60)  # fmt: skip
    assert up.returncode == 0, up.stderr
    assert cli("down", "slowtok", env=isolated_env).returncode == 0


def test_ctrl_c_during_the_probe_request_is_not_held_up(
    tmp_path: Path, isolated_env: dict[str, str]
) -> None:
    profile = _slow_first_token_profile(tmp_path, "held", 30_000)
    proc = start_up(profile, isolated_env)
    wait_phase(isolated_env, "held", "starting", proc=proc)
    time.sleep(1.0)  # health answers at once: by now the probe request is in flight
    started = time.monotonic()
    proc.send_signal(signal.SIGINT)
    proc.communicate(timeout=30)
    assert proc.returncode == 130
    assert time.monotonic() - started < 5  # not the 30 s the answer would take
    assert not _marked(tmp_path)


def test_ctrl_c_during_up_smoke_takes_its_deployment_down(
    tmp_path: Path, isolated_env: dict[str, str]
) -> None:
    """`up --smoke` (no --detach): the deployment lives only as long as the command."""
    profile = fake_profile(tmp_path, "smk", "--answer-delay", "30", "--say", str(tmp_path))
    proc = start_up(profile, isolated_env, "--smoke")
    wait_phase(isolated_env, "smk", "ready", proc=proc, timeout=60)
    time.sleep(1.0)  # the instant under test: smoke is waiting for a 30 s chat answer
    started = time.monotonic()
    proc.send_signal(signal.SIGINT)
    out, _ = proc.communicate(timeout=60)
    assert proc.returncode == 130, out
    assert time.monotonic() - started < 20
    assert "Traceback" not in out
    _wait_nothing_left(tmp_path, "smk")
    assert record(isolated_env, "smk") is None


def test_two_state_directories_never_touch_each_others_processes(
    tmp_path: Path, isolated_env: dict[str, str]
) -> None:
    """Two users (or test runs) with a deployment of the same name: separate worlds."""
    other = {**isolated_env, "LLMDEPLOY_STATE_DIR": str(tmp_path / "other-state")}
    mine = fake_profile(tmp_path, "same", "--say", str(tmp_path / "mine"))
    (tmp_path / "b").mkdir()
    theirs = fake_profile(tmp_path / "b", "same")
    assert cli("up", str(mine), "--detach", env=isolated_env).returncode == 0
    up = cli("up", str(theirs), "--detach", env=other)
    assert up.returncode == 0, up.stderr  # not "processes left from an earlier run"
    assert cli("down", "same", env=other).returncode == 0
    row = _row(isolated_env, "same")
    assert row["state"] == "ready" and row["health"] == "ok", row  # untouched
    assert cli("down", "same", env=isolated_env).returncode == 0


def test_shared_memory_a_killed_engine_leaves_is_removed(
    tmp_path: Path, isolated_env: dict[str, str]
) -> None:
    """torch and Ray leave /dev/shm files behind when killed; the stop removes the ones its
    processes had mapped — and no other file there."""
    import secrets as tokens

    ours, theirs = f"llmdeploy-test-{tokens.token_hex(6)}", f"other-{tokens.token_hex(6)}"
    other = Path("/dev/shm") / theirs
    other.write_bytes(b"not ours")
    try:
        profile = fake_profile(tmp_path, "shm", "--hold-shm", ours, "--ignore-sigterm")
        up = cli("up", str(profile), "--detach", env=isolated_env, timeout=60)
        assert up.returncode == 0, up.stdout + up.stderr
        assert (Path("/dev/shm") / ours).exists()
        down = cli("down", "shm", "--grace", "1", env=isolated_env, timeout=60)
        assert down.returncode == 0, down.stderr
        assert not (Path("/dev/shm") / ours).exists()
        assert other.read_bytes() == b"not ours"
    finally:
        other.unlink(missing_ok=True)
        (Path("/dev/shm") / ours).unlink(missing_ok=True)
