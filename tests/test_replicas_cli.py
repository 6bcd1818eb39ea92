"""`status`, `logs` and `plan` of a deployment with replicas: fake-engine replicas (real
HTTP servers) behind the real router (SMG), through the CLI as a user would. Every
deployment a test starts is taken down after it, and every `logs -f` it starts is
stopped, whether the test passed or not (the `deploy` and `follow` fixtures)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from conftest import cli
from helpers import fake_profile, record

SERVING = {"port": "auto", "served_model_name": "fake"}


@pytest.fixture
def deploy(tmp_path: Path, isolated_env: dict[str, str]) -> Iterator[Callable[..., str]]:
    """`up --detach` of a fake-engine profile (`replicas` > 1: behind the router);
    `down --all` of this test's state directory afterwards, pass or fail."""

    def up(name: str, replicas: int = 3, **extra: object) -> str:
        settings: dict[str, object] = {"serving": SERVING, **extra}
        if replicas > 1:
            settings["replicas"] = replicas
        profile = fake_profile(tmp_path, name, extra=settings)
        done = cli("up", str(profile), "--detach", env=isolated_env, timeout=120)
        assert done.returncode == 0, done.stdout + done.stderr
        return name

    yield up
    down = cli("down", "--all", env=isolated_env, timeout=120)
    assert down.returncode == 0, down.stdout + down.stderr


@pytest.fixture
def follow(
    isolated_env: dict[str, str], tmp_path: Path
) -> Iterator[Callable[..., tuple[subprocess.Popen[bytes], Path]]]:
    """`llmdeploy logs … -f` as a process writing to a file; stopped afterwards."""
    started: list[subprocess.Popen[bytes]] = []

    def start(*args: str) -> tuple[subprocess.Popen[bytes], Path]:
        output = tmp_path / f"follow-{len(started)}.txt"
        with open(output, "wb") as sink:
            proc = subprocess.Popen(
                [sys.executable, "-m", "llmdeploy", "logs", *args, "-f"],
                env=isolated_env,
                stdin=subprocess.DEVNULL,
                stdout=sink,
                stderr=subprocess.STDOUT,
            )
        started.append(proc)
        return proc, output

    yield start
    for proc in started:
        if proc.poll() is None:
            proc.send_signal(signal.SIGINT)
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(10)


def _members(env: dict[str, str], name: str) -> dict[str, dict[str, object]]:
    members = (record(env, name) or {}).get("members") or []
    assert isinstance(members, list)
    return {str(m["name"]): m for m in members}


def _pid(member: dict[str, object]) -> int:
    proc = member["proc"]
    assert isinstance(proc, dict)
    return int(proc["pid"])


def _wait(what: str, check: Callable[[], object], timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, f"never: {what}"
        time.sleep(0.05)


def _chat(env: dict[str, str], name: str) -> None:
    url = str((record(env, name) or {})["base_url"])
    body = json.dumps({"model": "fake", "messages": [{"role": "user", "content": "hi"}]})
    request = urllib.request.Request(
        url + "/v1/chat/completions", body.encode(), {"content-type": "application/json"}
    )
    with urllib.request.urlopen(request, timeout=10) as response:
        assert response.status == 200


def _row(stdout: str, name: str) -> list[str]:
    """The table row whose first cell is `name` (members' rows are indented)."""
    for line in stdout.splitlines():
        if line.split() and line.split()[0] == name and line.startswith(("  " + name, name)):
            return line.split(None, 8)
    raise AssertionError(f"no row {name!r} in:\n{stdout}")


def _one_line_error(done: subprocess.CompletedProcess[str], code: int, *words: str) -> None:
    assert done.returncode == code, done.stdout + done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), done.stderr
    assert all(w in lines[0] for w in words), (words, done.stderr)
    assert done.stdout == ""


# --- status -------------------------------------------------------------------------------


def test_status_shows_every_member_and_a_failed_replica_with_its_reason(
    isolated_env: dict[str, str], deploy: Callable[..., str]
) -> None:
    deploy("trio")
    members = _members(isolated_env, "trio")
    assert list(members) == ["r0", "r1", "r2", "router"]
    status = cli("status", env=isolated_env)
    assert status.returncode == 0, status.stderr
    row = _row(status.stdout, "trio")
    assert row[1] == "ready" and row[-1] == "3/3 replicas ready"
    lines = status.stdout.splitlines()
    assert [line.split()[0] for line in lines[2:]] == ["r0", "r1", "r2", "router"]
    assert all(line.startswith("  ") for line in lines[2:])  # under their deployment
    for name, member in members.items():
        cells = _row(status.stdout, name)
        assert cells[1] == "ready" and cells[4].endswith(f":{member['port']}"), cells
        assert cells[5] == str(_pid(member))
    os.kill(_pid(members["r1"]), signal.SIGKILL)  # restart policy never: r1 stays down
    _wait("r1 failed", lambda: _members(isolated_env, "trio")["r1"]["phase"] == "failed")
    status = cli("status", env=isolated_env)
    assert _row(status.stdout, "trio")[-1] == "2/3 replicas ready, 1 failed"
    failed = _row(status.stdout, "r1")
    assert failed[1] == "failed" and failed[5] == "-", failed  # no pid: it is gone
    assert "[r1] exited with code -9" in failed[-1]
    assert _row(status.stdout, "r2")[1] == "ready"


def test_status_json_has_members_and_desired_replicas(
    isolated_env: dict[str, str], deploy: Callable[..., str]
) -> None:
    deploy("pair", replicas=2)
    deploy("solo", replicas=1)
    done = cli("status", "--json", env=isolated_env)
    assert done.returncode == 0, done.stderr
    rows = {row["name"]: row for row in json.loads(done.stdout)}
    pair, members = rows["pair"], _members(isolated_env, "pair")
    assert pair["desired_replicas"] == 2 and pair["detail"] == "2/2 replicas ready"
    assert [m["name"] for m in pair["members"]] == ["r0", "r1", "router"]
    for shown in pair["members"]:
        kept = members[shown["name"]]
        assert shown["phase"] == "ready" and shown["port"] == kept["port"]
        assert shown["pid"] == _pid(kept) and shown["restarts"] == 0
        assert shown["reason"] is None
    assert pair["members"][-1]["url"] + "/v1" == pair["url"]  # the router is the URL
    solo = rows["solo"]
    assert solo["members"] == [] and solo["desired_replicas"] is None
    # a single engine's row in the table is as it always was: no member rows under it
    table = cli("status", env=isolated_env).stdout.splitlines()
    after_solo = table[[line.split()[0] for line in table].index("solo") + 1 :]
    assert not any(line.startswith("  ") for line in after_solo)
    assert _row("\n".join(table), "solo")[-1] == "-"


# --- logs ---------------------------------------------------------------------------------


def test_logs_show_the_main_log_then_every_member_prefixed(
    isolated_env: dict[str, str], deploy: Callable[..., str]
) -> None:
    deploy("trio")
    pids = {name: _pid(m) for name, m in _members(isolated_env, "trio").items()}
    done = cli("logs", "trio", "-n", "200", env=isolated_env)
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    prefixes = [line.split(" ", 1)[0] for line in lines]
    assert "[llmdeploy] ready: trio serves 'fake'" in done.stdout
    first = prefixes.index("[r0]")
    assert all(p == "[llmdeploy]" for p in prefixes[:first])  # the main log, unprefixed
    order = [p for k, p in enumerate(prefixes[first:]) if k == 0 or p != prefixes[first + k - 1]]
    assert order == ["[r0]", "[r1]", "[r2]", "[router]"]  # each member's tail in turn
    for k in range(3):
        assert f"[r{k}] fake engine pid {pids[f'r{k}']} " in done.stdout
    assert "[router] " in done.stdout and "smg" in done.stdout

    one = cli("logs", "trio", "--replica", "1", "-n", "200", env=isolated_env)
    assert one.returncode == 0, one.stderr
    assert one.stdout.startswith(f"fake engine pid {pids['r1']} ")  # its own log, as is
    assert "[r" not in one.stdout and "[llmdeploy]" not in one.stdout
    assert f"pid {pids['r0']}" not in one.stdout
    router = cli("logs", "trio", "--router", "-n", "200", env=isolated_env)
    assert router.returncode == 0, router.stderr
    assert "smg" in router.stdout and "fake engine" not in router.stdout
    assert "[llmdeploy]" not in router.stdout
    last = cli("logs", "trio", "--replica", "2", "-n", "2", env=isolated_env)
    assert len(last.stdout.splitlines()) == 2


def test_logs_refuse_a_replica_that_does_not_exist_or_is_not_a_number(
    isolated_env: dict[str, str], deploy: Callable[..., str]
) -> None:
    deploy("trio")
    deploy("solo", replicas=1)
    unknown = cli("logs", "trio", "--replica", "3", env=isolated_env)
    _one_line_error(unknown, 6, "no replica 3", "replicas 0, 1, 2", "router")
    for hostile in ("../x", "../../etc/passwd", "-1", "1.5", "r1", "0x1", "9" * 40):
        done = cli("logs", "trio", "--replica", hostile, env=isolated_env)
        _one_line_error(done, 2, "--replica", "whole number")
    both = cli("logs", "trio", "--replica", "0", "--router", env=isolated_env)
    _one_line_error(both, 2, "--replica and --router")
    for option in (["--replica", "0"], ["--router"]):
        single = cli("logs", "solo", *option, env=isolated_env)
        _one_line_error(single, 6, "single-engine", "no replicas and no router")
    name = cli("logs", "../trio", "--router", env=isolated_env)
    assert name.returncode == 2 and "not a deployment name" in name.stderr
    ghost = cli("logs", "ghost", "--replica", "0", env=isolated_env)
    assert ghost.returncode == 6 and "no deployment named 'ghost'" in ghost.stderr
    for done in (unknown, both, name, ghost):
        assert "Traceback" not in done.stderr
    plain = cli("logs", "solo", "-n", "5", env=isolated_env)  # one engine: as before
    assert plain.returncode == 0 and "[r0]" not in plain.stdout
    assert "ready: solo" in plain.stdout


def test_logs_follow_interleaves_every_member_and_one_added_by_scale(
    isolated_env: dict[str, str],
    deploy: Callable[..., str],
    follow: Callable[..., tuple[subprocess.Popen[bytes], Path]],
) -> None:
    deploy("grow", replicas=2, router={"policy": "round_robin"})
    every, output = follow("grow", "-n", "1")
    only, only_output = follow("grow", "--replica", "1", "-n", "1")

    def text() -> str:
        return output.read_text(errors="replace")

    # each has printed its last lines: it follows from there
    _wait("both started", lambda: text().count("\n") >= 4 and only_output.read_bytes())
    assert "[r0] fake engine pid" not in text()  # -n 1: one line of each, no more
    for _ in range(4):
        _chat(isolated_env, "grow")
    _wait("requests in both replicas' lines", lambda: all(
        f"[r{k}] fake engine: POST /v1/chat/completions" in text() for k in (0, 1)
    ))  # fmt: skip
    scale = cli("scale", "grow", "3", env=isolated_env, timeout=90)
    assert scale.returncode == 0, scale.stdout + scale.stderr
    _wait("the new replica's log, from its start", lambda: "[r2] fake engine pid" in text())
    _wait("the main log's note", lambda: "[llmdeploy] [r2] up after" in text())
    _wait("r1's own lines", lambda: b"POST /v1/chat/completions" in only_output.read_bytes())
    shown = only_output.read_text(errors="replace")
    assert "[r" not in shown and "fake engine pid" not in shown  # r1's lines only, as is
    down = cli("down", "grow", env=isolated_env, timeout=90)
    assert down.returncode == 0, down.stderr
    assert every.wait(15) == 0 and only.wait(15) == 0  # they end with the deployment
    assert "stopping grow" in text()


# --- plan ---------------------------------------------------------------------------------


def test_plan_prints_every_replica_and_the_router_and_what_ready_means(
    tmp_path: Path, isolated_env: dict[str, str]
) -> None:
    env = {**isolated_env, "FAKE_KEY": "sk-not-to-be-shown"}
    profile = fake_profile(
        tmp_path,
        "trio",
        extra={
            "replicas": 3,
            "router": {"policy": "power_of_two"},
            "serving": {**SERVING, "api_key": "${FAKE_KEY}"},
        },
    )
    done = cli("plan", str(profile), env=env)
    assert done.returncode == 0, done.stderr
    assert "sk-not-to-be-shown" not in done.stdout + done.stderr
    lines = done.stdout.splitlines()
    assert "through the router (3 replicas)" in lines[0]
    ports = []
    for k in range(3):
        label = next(i for i, line in enumerate(lines) if line.startswith(f"# r{k} (port "))
        port = lines[label].split("port ")[1].rstrip("):")
        assert f"tests/fake_engine.py --port {port} --host 127.0.0.1" in lines[label + 1]
        ports.append(port)
    label = next(i for i, line in enumerate(lines) if line.startswith("# router (port "))
    port = lines[label].split("port ")[1].split(",")[0]
    assert "policy power_of_two" in lines[label]
    assert "-m llmdeploy.engines.router --" in lines[label + 1]
    assert f"--port {port} --policy power_of_two" in lines[label + 1]
    assert 'LLMDEPLOY_ROUTER_API_KEY="$FAKE_KEY"' in lines[label + 1]
    assert f"at http://127.0.0.1:{port}/v1" in lines[0]
    assert len({*ports, port}) == 4
    commands = [line for line in lines if not line.startswith("#")]
    assert len(commands) == 4 and lines[-1] == commands[-1]  # nothing but the 4 commands
    ready = "\n".join(line for line in lines if line.startswith("#   "))
    assert "every replica answers GET /health" in ready and "1-token completion" in ready
    assert "GET /readiness" in ready and "through it" in ready


def test_plan_json_lists_the_replicas_beside_the_router(
    tmp_path: Path, isolated_env: dict[str, str]
) -> None:
    profile = fake_profile(tmp_path, "pair", extra={"replicas": 2, "serving": SERVING})
    done = cli("plan", str(profile), "--json", env=isolated_env)
    assert done.returncode == 0, done.stderr
    plan = json.loads(done.stdout)
    assert "llmdeploy.engines.router" in plan["argv"]  # the top level is the clients' URL
    assert plan["router"] == {
        "port": int(plan["base_url"].rsplit(":", 1)[1]),
        "policy": "round_robin",
    }
    assert [r["name"] for r in plan["replicas"]] == ["r0", "r1"]
    for replica in plan["replicas"]:
        port = replica["port"]
        assert replica["argv"][replica["argv"].index("--port") + 1] == str(port)
        assert replica["base_url"] == f"http://127.0.0.1:{port}"
        assert replica["health_url"].endswith("/health") and replica["command"]
    assert len(plan["ready_when"]) == 3 and "/readiness" in plan["ready_when"][2]
    single = cli("plan", str(fake_profile(tmp_path, "one")), "--json", env=isolated_env)
    assert "replicas" not in json.loads(single.stdout)  # one engine: as before
