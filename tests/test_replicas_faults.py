"""Faults around `llmdeploy scale`: hostile request files, racing and superseded scale
commands, replicas that are gone when a scale-down picks them, and SIGKILLs of the
supervisor and of the router in the middle of a scale. Fake-engine replicas (real HTTP
servers) behind the real router (SMG), driven through the CLI.

Every deployment a test starts is taken down by the `fleet` fixture and every `scale`
it starts in the background is stopped by the `background` fixture, pass or fail; the
process guard (conftest.py) then fails a test that still left anything running."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from conftest import cli
from helpers import FAKE_ENGINE, fake_profile, pid_alive, record, wait_no_members

SERVING = {"port": "auto", "served_model_name": "fake"}
FAST_DRAIN = {"drain_s": 0.5}
# a replica killed under this restart policy stays `restarting` for the whole test
SLOW_RESTART = {"policy": "on-failure", "backoff_s": 600, "backoff_max_s": 600}


# --- fixtures and helpers -----------------------------------------------------------------


@pytest.fixture
def fleet(tmp_path: Path, isolated_env: dict[str, str]) -> Iterator[Callable[..., str]]:
    """`up --detach` of a routed fake-engine profile; `down --all` afterwards, pass or fail
    (a fault a test injected may have failed the deployment: down still clears it)."""

    def up(name: str, replicas: int, *args: str, **extra: object) -> str:
        data: dict[str, object] = {"replicas": replicas, "serving": SERVING, **extra}
        data.setdefault("readiness", {"timeout_s": 90})
        profile = fake_profile(tmp_path, name, extra=data)
        done = cli("up", str(profile), "--detach", *args, env=isolated_env, timeout=180)
        assert done.returncode == 0, done.stdout + done.stderr
        return name

    yield up
    down = cli("down", "--all", env=isolated_env, timeout=180)
    assert down.returncode == 0, down.stdout + down.stderr


@pytest.fixture
def background(isolated_env: dict[str, str]) -> Iterator[Callable[..., subprocess.Popen[str]]]:
    """`llmdeploy scale …` as a process that runs while the test acts; killed afterwards."""
    started: list[subprocess.Popen[str]] = []

    def scale(*args: str) -> subprocess.Popen[str]:
        proc = subprocess.Popen(
            [sys.executable, "-m", "llmdeploy", "scale", *args],
            env=isolated_env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        started.append(proc)
        return proc

    yield scale
    for proc in started:
        if proc.poll() is None:
            proc.kill()
        proc.communicate(timeout=30)


def _members(env: dict[str, str], name: str) -> dict[str, dict[str, object]]:
    members = (record(env, name) or {}).get("members") or []
    assert isinstance(members, list)
    return {str(m["name"]): m for m in members}


def _pids(env: dict[str, str], name: str) -> dict[str, int]:
    return {k: int(m["proc"]["pid"]) for k, m in _members(env, name).items() if m.get("proc")}


def _phases(env: dict[str, str], name: str) -> dict[str, str]:
    return {k: str(m["phase"]) for k, m in _members(env, name).items()}


def _wait(what: str, check: Callable[[], object], timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, f"never: {what}"
        time.sleep(0.05)


def _finish(proc: subprocess.Popen[str], timeout: float = 120) -> tuple[int, str, str]:
    out, err = proc.communicate(timeout=timeout)
    return proc.returncode, out, err


def _error_line(err: str, *words: str) -> None:
    """A refusal: `error: …` naming what it is about (and at most a hint), no traceback."""
    lines = [line for line in err.strip().splitlines() if not line.startswith("scaling ")]
    assert lines and lines[0].startswith("error: "), err
    assert len(lines) <= 2 and "Traceback" not in err, err
    assert all(w in lines[0] for w in words), (words, err)


def _all_gone(pids: dict[str, int], timeout: float = 30) -> None:
    for member, pid in pids.items():
        assert wait_no_members(pid, timeout=timeout) == [], member
        assert not pid_alive(pid), f"{member} (pid {pid}) is still running"


# --- hostile request files ----------------------------------------------------------------


def _hostile_requests(run_id: str, target: Path, tmp_path: Path) -> dict[str, Callable[[], None]]:
    """Ways to plant something at requests/<name>@scale.json that must never be applied:
    each would ask for 1 replica (or an absurd number) if the supervisor believed it."""

    def text(data: str | bytes) -> Callable[[], None]:
        raw = data.encode() if isinstance(data, str) else data
        return lambda: target.write_bytes(raw)

    def request(**fields: object) -> Callable[[], None]:
        base: dict[str, object] = {"run_id": run_id, "replicas": 1, "asked_at": time.time()}
        return text(json.dumps({**base, **fields}))

    def symlink() -> None:
        real = tmp_path / "elsewhere.json"
        real.write_text(json.dumps({"run_id": run_id, "replicas": 1, "asked_at": 1.0}))
        target.symlink_to(real)

    return {
        "garbage": text(os.urandom(3000)),
        "not json": text("replicas: 1\n"),
        "huge": request(pad="x" * 10**6),
        "nested": text("[" * 100_000),
        "wrong run": request(run_id="0" * 32),
        "zero": request(replicas=0),
        "absurd": request(replicas=10**9),
        "a bool": request(replicas=True),
        "a string": request(replicas="1"),
        "no time": request(asked_at=None),
        "symlink": symlink,
    }


def test_hostile_request_files_are_never_applied_and_scale_still_works(
    tmp_path: Path, isolated_env: dict[str, str], fleet: Callable[..., str]
) -> None:
    fleet("hostile", 2, router=FAST_DRAIN)
    rec = record(isolated_env, "hostile") or {}
    before = _pids(isolated_env, "hostile")
    target = Path(isolated_env["LLMDEPLOY_STATE_DIR"]) / "requests" / "hostile@scale.json"
    target.parent.mkdir(parents=True, exist_ok=True)
    log = Path(isolated_env["LLMDEPLOY_STATE_DIR"]) / "logs" / "hostile.log"
    for what, plant in _hostile_requests(str(rec["run_id"]), target, tmp_path).items():
        target.unlink(missing_ok=True)
        plant()
        # Nothing to wait for when a request is rightly ignored: watch the supervisor's
        # 0.1 s loop for a while, long enough for it to have looked many times.
        end = time.monotonic() + 1.0
        while time.monotonic() < end:
            assert _pids(isolated_env, "hostile") == before, what
            time.sleep(0.05)
        assert (record(isolated_env, "hostile") or {}).get("phase") == "ready", what
    assert "scale:" not in log.read_text(errors="replace")
    # A directory where the request goes: `scale` cannot write it — one line, no traceback.
    target.unlink(missing_ok=True)
    target.mkdir()
    try:
        blocked = cli("scale", "hostile", "3", env=isolated_env, timeout=60)
    finally:
        target.rmdir()  # else the fixture's `down` could not remove the request either
    assert blocked.returncode != 0, blocked.stdout + blocked.stderr
    _error_line(blocked.stderr, str(target))
    assert _pids(isolated_env, "hostile") == before  # the refused command changed nothing
    done = cli("scale", "hostile", "3", "--timeout", "120", env=isolated_env, timeout=180)
    assert done.returncode == 0, done.stdout + done.stderr
    now = _pids(isolated_env, "hostile")
    assert set(now) == {"r0", "r1", "r2", "router"}
    assert all(now[k] == before[k] for k in before)  # the others untouched
    assert (record(isolated_env, "hostile") or {}).get("desired_replicas") == 3


def _slow_when_flagged(tmp_path: Path) -> tuple[dict[str, object], Path]:
    """An engine command whose replicas started once `flag` exists never become ready:
    a scale-up that stays in flight as long as a test wants."""
    flag = tmp_path / "slow.flag"
    wrapper = tmp_path / "maybe_slow.py"
    wrapper.write_text(
        "import os, sys\n"
        f"args = [sys.executable, {str(FAKE_ENGINE)!r}, *sys.argv[1:]]\n"
        f"if os.path.exists({str(flag)!r}):\n"
        "    args.append('--never-ready')\n"
        "os.execv(sys.executable, args)\n"
    )
    command = [sys.executable, str(wrapper), "--port", "{port}", "--host", "{host}"]
    return {"type": "command", "command": command}, flag


def test_a_refused_scale_leaves_the_deployment_as_it_was(
    isolated_env: dict[str, str], fleet: Callable[..., str]
) -> None:
    """Two GPUs listed, two replicas: a third is refused by the supervisor. The record
    must keep saying 2 wanted (`status` would show the deployment short of a replica it
    never took on), and a later scale is not mistaken for the refused one."""
    fleet("gpus", 2, "--skip-gpu-check", router=FAST_DRAIN, resources={"gpus": [0, 1]})
    before = _pids(isolated_env, "gpus")
    refused = cli("scale", "gpus", "3", "--timeout", "60", env=isolated_env, timeout=120)
    assert refused.returncode == 7, refused.stdout + refused.stderr
    _error_line(refused.stderr, "3 replicas x tensor_parallel_size 1", "lists 2")
    assert (record(isolated_env, "gpus") or {}).get("desired_replicas") == 2
    status = cli("status", "--json", env=isolated_env)
    row = json.loads(status.stdout)[0]
    assert row["detail"] == "2/2 replicas ready" and row["desired_replicas"] == 2, row
    assert _pids(isolated_env, "gpus") == before
    done = cli("scale", "gpus", "1", "--timeout", "90", env=isolated_env, timeout=150)
    assert done.returncode == 0, done.stdout + done.stderr
    assert set(_pids(isolated_env, "gpus")) == {"r0", "router"}


# --- racing scale commands ----------------------------------------------------------------


def test_a_superseded_scale_says_so_at_once_and_the_later_one_wins(
    tmp_path: Path,
    isolated_env: dict[str, str],
    fleet: Callable[..., str],
    background: Callable[..., subprocess.Popen[str]],
) -> None:
    engine, flag = _slow_when_flagged(tmp_path)
    fleet("race", 2, router=FAST_DRAIN, engine=engine)
    before = _pids(isolated_env, "race")
    flag.touch()  # the first scale's new replica never gets ready: it stays in flight
    first = background("race", "3", "--timeout", "600")
    # the supervisor has taken the first request; then a second `scale` asks otherwise
    _wait("the first request applied", lambda: "r2" in _members(isolated_env, "race"))
    second = background("race", "1", "--timeout", "180")
    code, out, err = _finish(second, timeout=240)
    assert code == 0, out + err
    # The first command waits for 3 replicas that nobody wants any more: it must not sit
    # there until its own timeout (600 s), but say at once that it was superseded.
    code, out, err = _finish(first, timeout=60)
    assert code != 0, out + err
    _error_line(err, "race", "superseded", "asked for 1")
    assert set(_pids(isolated_env, "race")) == {"r0", "router"}
    assert _pids(isolated_env, "race")["r0"] == before["r0"]
    _all_gone({k: before[k] for k in ("r1",)})


# --- scale-down picks a replica that is already gone --------------------------------------


@pytest.mark.parametrize(
    ("restart", "phase"), [({"policy": "never"}, "failed"), (SLOW_RESTART, "restarting")]
)
def test_scale_down_over_a_replica_that_is_gone_ends_at_the_shape_asked(
    isolated_env: dict[str, str], fleet: Callable[..., str], restart: object, phase: str
) -> None:
    fleet("gone", 3, router=FAST_DRAIN, restart=restart)
    before = _pids(isolated_env, "gone")
    os.kill(before["r2"], signal.SIGKILL)
    _wait(f"r2 {phase}", lambda: _phases(isolated_env, "gone").get("r2") == phase)
    done = cli("scale", "gone", "2", "--timeout", "90", env=isolated_env, timeout=150)
    assert done.returncode == 0, done.stdout + done.stderr
    assert _phases(isolated_env, "gone") == {"r0": "ready", "r1": "ready", "router": "ready"}
    now = _pids(isolated_env, "gone")
    assert all(now[k] == before[k] for k in ("r0", "r1", "router"))
    # a replica removed by scale is never brought back by its restart policy
    end = time.monotonic() + 2.0
    while time.monotonic() < end:
        assert "r2" not in _members(isolated_env, "gone")
        time.sleep(0.1)


# --- SIGKILLs in the middle of a scale ----------------------------------------------------


def test_sigkill_of_the_supervisor_while_a_new_replica_starts_leaves_nothing(
    tmp_path: Path,
    isolated_env: dict[str, str],
    fleet: Callable[..., str],
    background: Callable[..., subprocess.Popen[str]],
) -> None:
    engine, flag = _slow_when_flagged(tmp_path)
    fleet("k9", 2, engine=engine)
    flag.touch()
    waiting = background("k9", "3", "--timeout", "600")
    _wait("r2 spawned", lambda: "r2" in _pids(isolated_env, "k9"))
    pids = _pids(isolated_env, "k9")
    supervisor = int((record(isolated_env, "k9") or {})["supervisor_pid"])
    os.kill(supervisor, signal.SIGKILL)
    _all_gone(pids)  # the guardian stops the new replica too
    _wait("recorded as failed", lambda: (record(isolated_env, "k9") or {}).get("phase") == "failed")
    code, out, err = _finish(waiting, timeout=60)
    assert code != 0, out + err
    _error_line(err, "k9", "stopped while scaling")


def test_sigkill_of_the_router_while_replicas_drain(
    isolated_env: dict[str, str],
    fleet: Callable[..., str],
    background: Callable[..., subprocess.Popen[str]],
) -> None:
    """The restarted router must not be given the draining replicas back, and they are
    still stopped when their drain ends: the scale finishes at the shape asked."""
    restart = {"policy": "on-failure", "backoff_s": 0.2}
    fleet("drain", 3, router={"drain_s": 8}, restart=restart)
    before = _pids(isolated_env, "drain")
    waiting = background("drain", "1", "--timeout", "180")
    _wait("r1 and r2 draining", lambda: list(_phases(isolated_env, "drain").values()).count(
        "draining") == 2)  # fmt: skip
    os.kill(before["router"], signal.SIGKILL)
    code, out, err = _finish(waiting, timeout=240)
    assert code == 0, out + err
    now = _pids(isolated_env, "drain")
    assert set(now) == {"r0", "router"} and now["r0"] == before["r0"]
    assert now["router"] != before["router"]
    _all_gone({k: before[k] for k in ("r1", "r2", "router")})
    log = Path(isolated_env["LLMDEPLOY_STATE_DIR"]) / "logs" / "drain.log"
    admitted = log.read_text(errors="replace").split("[router] starting")[-1]
    assert "sends requests to r1" not in admitted and "sends requests to r2" not in admitted


def test_down_during_a_drain_stops_everything_and_the_waiting_scale_says_so(
    isolated_env: dict[str, str],
    fleet: Callable[..., str],
    background: Callable[..., subprocess.Popen[str]],
) -> None:
    fleet("bye", 2, router={"drain_s": 60})
    pids = _pids(isolated_env, "bye")
    interrupted = background("bye", "1", "--timeout", "600")
    _wait("r1 draining", lambda: _phases(isolated_env, "bye").get("r1") == "draining")
    # a second `scale` asking the same is the same wish: it waits on, not "superseded"
    request = Path(isolated_env["LLMDEPLOY_STATE_DIR"]) / "requests" / "bye@scale.json"
    first = request.read_text()
    waiting = background("bye", "1", "--timeout", "600")
    _wait("the second request written", lambda: request.read_text() != first)
    end = time.monotonic() + 1.0  # both look at the request 5 times a second
    while time.monotonic() < end:
        assert interrupted.poll() is None and waiting.poll() is None
        time.sleep(0.05)
    interrupted.send_signal(signal.SIGINT)  # Ctrl-C stops the waiting, not the scale
    code, out, err = _finish(interrupted, timeout=60)
    assert code == 130 and "goes on scaling to 1" in err, out + err
    assert _phases(isolated_env, "bye") == {"r0": "ready", "r1": "draining", "router": "ready"}
    assert waiting.poll() is None
    done = cli("down", "bye", "--grace", "5", env=isolated_env, timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr
    _all_gone(pids, timeout=15)  # the draining replica too, not after its 60 s drain
    code, out, err = _finish(waiting, timeout=60)
    assert code != 0, out + err
    _error_line(err, "bye", "stopped while scaling")
    assert not (Path(isolated_env["LLMDEPLOY_STATE_DIR"]) / "requests" / "bye@scale.json").exists()
