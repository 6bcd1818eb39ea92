"""Replicas behind the real router (SMG): fake-engine replicas (real HTTP servers) and a
real `smg` process, driven through the CLI as a user would. Each test ends with nothing
left: every member's session is empty and the router's pid (from the record) is gone."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest
import yaml
from conftest import cli
from helpers import fake_profile, pid_alive, record, start_up, wait_no_members, wait_phase

ON_FAILURE = {"policy": "on-failure", "max_restarts": 5, "backoff_s": 0.2}


def _profile(tmp_path: Path, name: str, replicas: int, **extra: object) -> Path:
    data: dict[str, object] = {
        "replicas": replicas,
        "serving": {"port": "auto", "served_model_name": "fake"},
        "readiness": {"timeout_s": 60},
    }
    data.update(extra)
    return fake_profile(tmp_path, name, extra=data)


def _members(env: dict[str, str], name: str) -> dict[str, dict[str, object]]:
    rec = record(env, name) or {}
    members = rec.get("members") or []
    assert isinstance(members, list)
    return {str(m["name"]): m for m in members}


def _pids(env: dict[str, str], name: str) -> dict[str, int]:
    return {k: int(m["proc"]["pid"]) for k, m in _members(env, name).items() if m.get("proc")}


def _chat(url: str, timeout: float = 10) -> int:
    body = json.dumps(
        {"model": "fake", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 2}
    ).encode()
    request = urllib.request.Request(
        url + "/v1/chat/completions", body, {"content-type": "application/json"}
    )
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return int(response.status)
    except urllib.error.HTTPError as exc:
        return int(exc.code)
    except OSError:
        return 0


def _served(log: Path) -> int:
    return log.read_text(errors="replace").count("POST /v1/chat/completions")


def _up(profile: Path, env: dict[str, str], name: str) -> dict[str, object]:
    done = cli("up", str(profile), "--detach", env=env, timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr
    rec = record(env, name)
    assert rec is not None and rec["phase"] == "ready"
    return rec


def _wait(what: str, check: object, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():  # type: ignore[operator]
            return
        time.sleep(0.05)
    raise AssertionError(f"never: {what}")


def _down_leaves_nothing(env: dict[str, str], name: str) -> None:
    pids = _pids(env, name)
    assert "router" in pids
    done = cli("down", name, env=env, timeout=90)
    assert done.returncode == 0, done.stdout + done.stderr
    for member, pid in pids.items():
        assert wait_no_members(pid, timeout=10) == [], member
        assert not pid_alive(pid), f"{member} (pid {pid}) outlived down"


def test_requests_spread_over_every_replica_and_down_leaves_nothing(
    tmp_path: Path, isolated_env: dict[str, str]
) -> None:
    rec = _up(_profile(tmp_path, "spread", 3), isolated_env, "spread")
    url = str(rec["base_url"])
    assert all(_chat(url) == 200 for _ in range(12))
    logs = Path(isolated_env["LLMDEPLOY_STATE_DIR"]) / "logs"
    served = [_served(logs / f"spread@r{k}.log") for k in range(3)]
    assert sum(served) >= 12 and min(served) >= 2, served  # round robin: about 4 each
    router_pid = _pids(isolated_env, "spread")["router"]
    assert Path(f"/proc/{router_pid}/comm").read_text().strip() == "smg::router"
    _down_leaves_nothing(isolated_env, "spread")
    assert record(isolated_env, "spread") is None


def test_a_killed_replica_is_restarted_while_the_router_keeps_serving(
    tmp_path: Path, isolated_env: dict[str, str]
) -> None:
    rec = _up(_profile(tmp_path, "heal", 3, restart=ON_FAILURE), isolated_env, "heal")
    url = str(rec["base_url"])
    statuses: list[int] = []
    stop = threading.Event()

    def stream() -> None:
        while not stop.is_set():
            statuses.append(_chat(url))

    thread = threading.Thread(target=stream)
    thread.start()
    try:
        _wait("requests flow", lambda: len(statuses) >= 20)
        victim = _pids(isolated_env, "heal")["r1"]
        import os

        os.kill(victim, signal.SIGKILL)
        killed = time.monotonic()
        _wait(
            "r1 restarted and ready",
            lambda: (
                _members(isolated_env, "heal")["r1"].get("restarts") == 1
                and _members(isolated_env, "heal")["r1"]["phase"] == "ready"
            ),
        )
        after = len(statuses)
        _wait("more requests after the restart", lambda: len(statuses) >= after + 20)
        # The replacement (same URL) is admitted again — not lost with the old entry,
        # which the router drops only after its drain.
        log = Path(isolated_env["LLMDEPLOY_STATE_DIR"]) / "logs" / "heal@r1.log"
        served = _served(log)
        _wait("the restarted replica serves through the router", lambda: _served(log) > served)
        # ...and still does once SMG has finished removing the dead entry (it drains a
        # removed worker 5 s, then drops it by URL: a successor on that URL went with it).
        _wait("SMG's drain of the dead entry is over", lambda: time.monotonic() > killed + 7)
        served = _served(log)
        _wait("the replacement still serves after it", lambda: _served(log) > served)
    finally:
        stop.set()
        thread.join(30)
    failed = sum(code != 200 for code in statuses)
    assert failed <= max(1, len(statuses) // 100), (failed, len(statuses))
    assert (record(isolated_env, "heal") or {})["phase"] == "ready"
    assert _pids(isolated_env, "heal")["r1"] != victim
    _down_leaves_nothing(isolated_env, "heal")


def test_scale_three_to_one_to_two_without_touching_the_others(
    tmp_path: Path, isolated_env: dict[str, str]
) -> None:
    profile = _profile(tmp_path, "sc", 3, router={"drain_s": 0.5})
    rec = _up(profile, isolated_env, "sc")
    url = str(rec["base_url"])
    first = _pids(isolated_env, "sc")
    done = cli("scale", "sc", "1", env=isolated_env, timeout=90)
    assert done.returncode == 0, done.stdout + done.stderr
    now = _pids(isolated_env, "sc")
    assert set(now) == {"r0", "router"} and now["r0"] == first["r0"]
    assert now["router"] == first["router"]
    for gone in ("r1", "r2"):
        assert wait_no_members(first[gone], timeout=10) == []
    assert all(_chat(url) == 200 for _ in range(4))
    done = cli("scale", "sc", "2", env=isolated_env, timeout=90)
    assert done.returncode == 0, done.stdout + done.stderr
    now = _pids(isolated_env, "sc")
    assert set(now) == {"r0", "r1", "router"} and now["r0"] == first["r0"]
    logs = Path(isolated_env["LLMDEPLOY_STATE_DIR"]) / "logs"
    before = _served(logs / "sc@r1.log")
    assert all(_chat(url) == 200 for _ in range(6))
    assert _served(logs / "sc@r1.log") > before  # the new replica was admitted
    _down_leaves_nothing(isolated_env, "sc")


def test_sigkill_of_up_takes_every_replica_and_the_router_down(
    tmp_path: Path, isolated_env: dict[str, str]
) -> None:
    proc = start_up(_profile(tmp_path, "k9", 2), isolated_env, "--grace", "3")
    wait_phase(isolated_env, "k9", "ready", timeout=60, proc=proc)
    pids = _pids(isolated_env, "k9")
    assert set(pids) == {"r0", "r1", "router"}
    proc.kill()
    proc.communicate()
    for member, pid in pids.items():
        assert wait_no_members(pid, timeout=15) == [], member
    _wait("recorded as failed", lambda: (record(isolated_env, "k9") or {}).get("phase") == "failed")
    assert cli("down", "k9", env=isolated_env).returncode == 0


def test_scale_refusals_are_one_line_errors(tmp_path: Path, isolated_env: dict[str, str]) -> None:
    single = fake_profile(tmp_path, "one")
    assert cli("up", str(single), "--detach", env=isolated_env, timeout=60).returncode == 0
    try:
        done = cli("scale", "one", "2", env=isolated_env)
        assert done.returncode != 0
        assert "without a router" in done.stderr and "Traceback" not in done.stderr
    finally:
        cli("down", "one", env=isolated_env)
    for args, words in (
        (("scale", "one", "0"), "at most 64"),
        (("scale", "one", "x"), "whole number"),
        (("scale", "../etc", "2"), "not a deployment name"),
        (("scale", "ghost", "2"), "no deployment named"),
    ):
        done = cli(*args, env=isolated_env)
        assert done.returncode != 0 and words in done.stderr, (args, done.stderr)
        assert "Traceback" not in done.stderr and len(done.stderr.strip().splitlines()) <= 2


@pytest.mark.parametrize(
    ("extra", "words"),
    [
        ({"replicas": 2, "resources": {"gpus": [0, 1, 2]}}, "2 replicas x tensor_parallel_size 1"),
        ({"replicas": 0}, "replicas"),
        ({"replicas": 65}, "replicas"),
        ({"replicas": 2, "router": {"policy": "fastest"}}, "router.policy"),
        ({"replicas": 2, "router": {"drain_s": -1}}, "router.drain_s"),
    ],
)
def test_bad_replica_settings_are_one_line_errors(
    tmp_path: Path, extra: dict[str, object], words: str
) -> None:
    profile = fake_profile(tmp_path, "bad", extra=extra)
    done = cli("validate", str(profile))
    assert done.returncode == 2, done.stdout + done.stderr
    assert words in done.stderr and str(profile) in done.stderr, done.stderr
    assert "Traceback" not in done.stderr


def test_an_engine_the_router_cannot_admit_is_refused(tmp_path: Path) -> None:
    data = yaml.safe_load((Path(__file__).parent.parent / "profiles" / "demo-cpu.yaml").read_text())
    data["replicas"] = 2
    path = tmp_path / "llama.yaml"
    path.write_text(yaml.safe_dump(data))
    done = cli("validate", str(path))
    assert done.returncode == 2
    assert "no /health" in done.stderr and "Traceback" not in done.stderr


def test_router_argv_is_accepted_by_smgs_own_parser(tmp_path: Path) -> None:
    """The flags the builder emits (after the launcher's `--`) parse with the installed
    SMG's own argument parser, into the values meant."""
    done = cli("plan", str(_profile(tmp_path, "argv", 2)), "--json")
    assert done.returncode == 0, done.stderr
    code = (
        "import json,sys\n"
        "from smg.launch_router import parse_router_args\n"
        "argv = json.loads(sys.argv[1]); a = parse_router_args(argv)\n"
        "print(json.dumps([a.policy, a.prometheus_host, a.prometheus_port, a.host, a.port,"
        " a.shutdown_grace_period_secs, a.log_level]))\n"
    )
    plan = json.loads(done.stdout)
    argv = list(plan["argv"])
    flags = argv[argv.index("--") + 1 :]
    parsed = subprocess.run(
        [sys.executable, "-c", code, json.dumps(flags)], capture_output=True, text=True
    )
    assert parsed.returncode == 0, parsed.stderr
    policy, metrics_host, metrics_port, host, port, grace, level = json.loads(parsed.stdout)
    assert (policy, metrics_host, host, grace, level) == (
        "round_robin",
        "127.0.0.1",
        "127.0.0.1",
        1,
        "warn",
    )
    assert metrics_port != 29000 and port == int(plan["base_url"].rsplit(":", 1)[1])


def test_ctrl_c_of_a_starting_fleet_stops_every_member(
    tmp_path: Path, isolated_env: dict[str, str]
) -> None:
    """Replicas still loading (health 503) when the signal comes: exit 130, nothing left."""
    profile = fake_profile(
        tmp_path,
        "slow",
        "--ready-after",
        "60",
        extra={"replicas": 2, "serving": {"port": "auto", "served_model_name": "fake"}},
    )
    proc = start_up(profile, isolated_env)
    _wait("all members spawned", lambda: len(_pids(isolated_env, "slow")) == 3)
    pids = _pids(isolated_env, "slow")
    proc.send_signal(signal.SIGINT)
    out, _ = proc.communicate(timeout=60)
    assert proc.returncode == 130, out
    for member, pid in pids.items():
        assert wait_no_members(pid, timeout=5) == [], member
    assert record(isolated_env, "slow") is None


def test_a_killed_router_is_restarted_and_serves_again(
    tmp_path: Path, isolated_env: dict[str, str]
) -> None:
    rec = _up(_profile(tmp_path, "rr", 2, restart=ON_FAILURE), isolated_env, "rr")
    url = str(rec["base_url"])
    before = _pids(isolated_env, "rr")
    import os

    os.kill(before["router"], signal.SIGKILL)
    _wait(
        "router restarted, deployment ready again",
        lambda: (
            _pids(isolated_env, "rr").get("router") not in (None, before["router"])
            and (record(isolated_env, "rr") or {}).get("phase") == "ready"
        ),
    )
    assert _chat(url) == 200
    now = _pids(isolated_env, "rr")
    assert now["r0"] == before["r0"] and now["r1"] == before["r1"]  # replicas untouched
    assert (record(isolated_env, "rr") or {}).get("restarts") == 1
    _down_leaves_nothing(isolated_env, "rr")


def test_a_replica_that_cannot_start_fails_the_start_with_its_own_log(
    tmp_path: Path, isolated_env: dict[str, str]
) -> None:
    profile = fake_profile(
        tmp_path,
        "broken",
        "--exit-during-start",
        "3",
        extra={"replicas": 2, "serving": {"port": "auto", "served_model_name": "fake"}},
    )
    done = cli("up", str(profile), "--detach", env=isolated_env, timeout=120)
    assert done.returncode == 3, done.stdout + done.stderr
    assert "[r0] exited with code 3" in done.stderr or "[r1] exited with code 3" in done.stderr
    assert "Traceback" not in done.stderr
    rec = record(isolated_env, "broken") or {}
    assert rec.get("phase") == "failed"
    for member in rec.get("members") or []:  # type: ignore[attr-defined]
        if member.get("proc"):
            assert wait_no_members(member["proc"]["pid"], timeout=5) == []
    assert cli("down", "broken", env=isolated_env).returncode == 0


def test_cpu_replicas_of_transformers_share_the_cores(tmp_path: Path) -> None:
    """Each torch replica would start a thread per core; on CPU they get their share."""
    import os

    data = yaml.safe_load(
        (Path(__file__).parent.parent / "profiles" / "tiny-qwen3-transformers-cpu.yaml").read_text()
    )
    data.update(replicas=2)
    path = tmp_path / "pair.yaml"
    env = {**os.environ, "LLMDEPLOY_TINY_QWEN3": str(tmp_path)}
    for given, expected in ((None, str(max(1, (os.cpu_count() or 1) // 2))), ("3", "3")):
        if given:
            data["env"] = {"OMP_NUM_THREADS": given}
        path.write_text(yaml.safe_dump(data))
        done = cli("plan", str(path), "--json", env=env)
        assert done.returncode == 0, done.stderr
        replicas = json.loads(done.stdout)["replicas"]
        assert [r["env"]["OMP_NUM_THREADS"] for r in replicas] == [expected, expected]
