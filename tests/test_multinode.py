"""Two nodes of one vLLM deployment on vLLM's own multi-node mode (`nodes: 2`, tensor
parallel 2, `distributed: {backend: native}`), both on this machine: node 0 is `llmdeploy
up PROFILE` (vLLM rank 0, serves HTTP), node 1 is `llmdeploy up PROFILE --node-rank 1`
(vLLM `--headless`), each with its own environment (VLLM_PORT base, caches, TMPDIR, CPU)
and one state directory. One two-node start per fault:

- both ready, smoke through node 0, SIGKILL of node 1's llmdeploy → node 0 fails naming
  node 1, every process of both nodes gone, nothing of theirs left in /dev/shm;
- SIGKILL of node 0's llmdeploy → node 1 stops its part ("node 0 is gone");
- `llmdeploy down NAME` on node 0 → node 1 stops cleanly by itself (record removed);
- node 0 alone with a short --timeout: exit 3, one line naming node 1 as never joined;
- node 1 alone with a short distributed.join_timeout_s: one line naming the head's address.

The processes of a deployment are found by the LLMDEPLOY_RUN tag in /proc/PID/environ
(the `vllm` process and its resource tracker), by the sessions of the recorded engines
(VLLM::EngineCore and VLLM::Worker_TP* rewrite their title over the environment block,
tag included) and by the recorded supervisor and guardian. /dev/shm files are attributed
by what those processes have open or mapped, sampled while they run: other tests' files
are never blamed."""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import yaml
from conftest import PROFILES, cli, engine_python
from helpers import record
from sysview import free_port_block, port_free, proc_stat, read_bytes, shm_of

pytestmark = pytest.mark.engine
PROFILE = PROFILES / "tiny-qwen3-vllm-cpu.yaml"
GRACE = 15.0  # `up`'s default --grace: TERM, then KILL after this
HEAD_GRACE = 10.0  # distributed.head_grace_s's default
GONE_WITHIN = GRACE + HEAD_GRACE + 35  # generous: 2 shared cores, two vLLMs stopping
START_TIMEOUT = 600
ERROR_LINE = re.compile(r"^(\[llmdeploy\] )?error: ")


@dataclass
class Nodes:
    """The two nodes of one deployment on this machine, and what their processes were."""

    profile: Path
    name: str
    port: int  # distributed.port; llmdeploy's link on port + 1
    envs: list[dict[str, str]]
    logs: list[Path]
    shm_before: set[str] = field(default_factory=set)
    sessions: set[int] = field(default_factory=set)  # engine sessions ever recorded
    owners: set[tuple[int, int]] = field(default_factory=set)  # (pid, start): supervisors…
    seen: dict[tuple[int, int], str] = field(default_factory=dict)  # every process of ours
    shm: set[str] = field(default_factory=set)  # /dev/shm files those had open or mapped
    head_up: subprocess.Popen[bytes] | None = None
    _stop: threading.Event = field(default_factory=threading.Event)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    @property
    def names(self) -> tuple[str, str]:
        return self.name, f"{self.name}.node1"

    def record(self, rank: int) -> dict[str, object] | None:
        return record(self.envs[rank], self.names[rank])

    # --- which processes are ours -----------------------------------------------------

    def _learn_from_records(self) -> None:
        for rank in (0, 1):
            rec = self.record(rank) or {}
            for key in ("engine_proc", "supervisor", "guardian"):
                proc = rec.get(key)
                if isinstance(proc, dict):
                    self.owners.add((int(proc["pid"]), int(proc["start"])))
                    if key == "engine_proc":
                        self.sessions.add(int(proc["pid"]))
            for member in rec.get("members") or []:
                proc = member.get("proc") if isinstance(member, dict) else None
                if isinstance(proc, dict):
                    self.sessions.add(int(proc["pid"]))

    def scan(self) -> dict[tuple[int, int], str]:
        """Live processes of either node: (pid, start) -> command name."""
        with self._lock:
            self._learn_from_records()
            tags = [f"/{n}/".encode() for n in self.names]
            found = {}
            for entry in os.listdir("/proc"):
                if not entry.isdigit():
                    continue
                pid = int(entry)
                stat = proc_stat(pid)
                if stat is None or stat[0] in "ZX":
                    continue
                _, session, start = stat
                environ = read_bytes(f"/proc/{pid}/environ")
                tagged = any(
                    item.startswith(b"LLMDEPLOY_RUN=") and any(t in item for t in tags)
                    for item in environ.split(b"\0")
                )
                if tagged or session in self.sessions or (pid, start) in self.owners:
                    name = read_bytes(f"/proc/{pid}/comm").decode(errors="replace").strip()
                    found[(pid, start)] = name
            self.seen.update(found)
            return found

    def sample(self) -> None:
        """Remember every /dev/shm file the processes of either node have open or mapped."""
        for pid, _ in self.scan():
            self.shm |= shm_of(pid)

    def watch(self) -> None:
        """Sample every 0.3 s in a thread until close(): a file that exists only while
        the engines run is seen too."""
        self.shm_before = set(os.listdir("/dev/shm"))

        def loop() -> None:
            while not self._stop.wait(0.3):
                self.sample()

        threading.Thread(target=loop, daemon=True).start()

    def close(self) -> None:
        self._stop.set()

    def wait_gone(self, timeout: float) -> list[str]:
        """Wait until no process of either node is alive (also none seen earlier)."""
        deadline = time.monotonic() + timeout
        while True:
            left = self.scan()
            for proc, name in self.seen.items():  # also any seen before, if still alive
                stat = proc_stat(proc[0])
                if stat is not None and stat[2] == proc[1] and stat[0] not in "ZX":
                    left[proc] = name
            if not left or time.monotonic() > deadline:
                return sorted(f"{pid} {name}" for (pid, _), name in left.items())
            time.sleep(0.2)

    def shm_left(self) -> list[str]:
        """/dev/shm files of these processes that still exist (theirs only)."""
        now = set(os.listdir("/dev/shm"))
        return sorted((self.shm & now) - self.shm_before)

    # --- starting and stopping ---------------------------------------------------------

    def up(self, rank: int, *args: str) -> list[str]:
        command = [sys.executable, "-m", "llmdeploy", "up", str(self.profile)]
        return command + (["--node-rank", str(rank)] if rank else []) + list(args)

    def start(self) -> float:
        """Node 0 in the background (`up --detach` returns once the whole deployment is
        ready), then node 1; both must report ready. Returns the seconds it took."""
        started = time.monotonic()
        with open(self.logs[0], "wb") as log0:
            self.head_up = subprocess.Popen(
                self.up(0, "--detach"),
                env=self.envs[0],
                stdin=subprocess.DEVNULL,
                stdout=log0,
                stderr=subprocess.STDOUT,
            )
        with open(self.logs[1], "wb") as log1:
            node1 = subprocess.run(
                self.up(1, "--detach"),
                env=self.envs[1],
                stdin=subprocess.DEVNULL,
                stdout=log1,
                stderr=subprocess.STDOUT,
                timeout=START_TIMEOUT,
            )
        head = self.head_up.wait(timeout=START_TIMEOUT)
        took = time.monotonic() - started
        assert head == 0, self.tail(0)
        assert node1.returncode == 0, self.tail(1)
        for rank in (0, 1):
            assert (self.record(rank) or {}).get("phase") == "ready", self.record(rank)
        print(f"both nodes ready after {took:.1f} s")
        return took

    def tail(self, rank: int) -> str:
        return self.logs[rank].read_text(errors="replace")[-4000:]

    def kill_supervisor(self, rank: int) -> float:
        rec = self.record(rank)
        assert rec is not None
        proc = rec["supervisor"]
        assert isinstance(proc, dict)
        pid, start = int(proc["pid"]), int(proc["start"])
        stat = proc_stat(pid)
        assert stat is not None and stat[2] == start, "the recorded supervisor is not running"
        assert b"llmdeploy" in read_bytes(f"/proc/{pid}/cmdline")
        self.sample()  # the last look at what the processes hold
        os.kill(pid, signal.SIGKILL)
        return time.monotonic()

    def down_all(self) -> list[subprocess.CompletedProcess[str]]:
        """`down` whatever either node still has registered; the head's `up` ends too."""
        results = []
        for rank in (0, 1):
            if self.record(rank) is not None:
                results.append(cli("down", self.names[rank], env=self.envs[rank], timeout=180))
        if self.head_up is not None and self.head_up.poll() is None:
            try:
                self.head_up.wait(timeout=60)
            except subprocess.TimeoutExpired:
                self.head_up.kill()
                self.head_up.wait()
        return results


@pytest.fixture
def nodes(isolated_env: dict[str, str], tiny_model: Path, tmp_path: Path) -> Iterator[Nodes]:
    python = engine_python("vllm")
    assert python is not None
    name = f"mn-{uuid.uuid4().hex[:6]}"
    port = free_port_block(2, set())  # the engines' rendezvous, and llmdeploy's link on +1
    data = yaml.safe_load(PROFILE.read_text())
    data.update(name=name, nodes=2)
    data["resources"]["tensor_parallel_size"] = 2
    data["distributed"] = {"backend": "native", "head": "127.0.0.1", "port": port}
    data["env"].pop("VLLM_ENABLE_V1_MULTIPROCESSING", None)  # TP 2 needs vLLM's workers
    profile = tmp_path / f"{name}.yaml"
    profile.write_text(yaml.safe_dump(data))
    base = {
        **isolated_env,  # one state directory for both nodes
        "LLMDEPLOY_TINY_QWEN3": str(tiny_model),
        "LLMDEPLOY_VLLM": str(python.parent / "vllm"),
    }
    cpus = sorted(os.sched_getaffinity(0))
    envs, taken = [], {port, port + 1}
    # vLLM binds ZeroMQ IPC sockets under TMPDIR: a pytest tmp_path is too long for one
    # (108 bytes, sockaddr_un), so each node's TMPDIR is a short directory in /tmp.
    short = Path(tempfile.mkdtemp(prefix=f"{name}-", dir="/tmp"))
    for rank in (0, 1):
        own = tmp_path / f"node{rank}"
        (short / f"n{rank}").mkdir()
        vllm_port = free_port_block(20, taken)  # vLLM takes its internal ports from here up
        taken |= set(range(vllm_port, vllm_port + 20))
        envs.append(
            {
                **base,
                "VLLM_PORT": str(vllm_port),
                "VLLM_CACHE_ROOT": str(own / "vllm-cache"),
                "TMPDIR": str(short / f"n{rank}"),
                "VLLM_CPU_OMP_THREADS_BIND": str(cpus[rank % len(cpus)]),
            }
        )
    logs = [tmp_path / "up-node0.log", tmp_path / "up-node1.log"]
    found = Nodes(profile, name, port, envs, logs)
    found.watch()
    try:
        yield found
    finally:
        found.close()
        shutil.rmtree(short, ignore_errors=True)


def _reason(rec: dict[str, object] | None) -> str:
    return str((rec or {}).get("reason"))


def _wait_record(nodes: Nodes, rank: int, phase: str | None, timeout: float) -> None:
    """Until node `rank`'s record is in `phase` (None: until it is removed)."""
    deadline = time.monotonic() + timeout
    while True:
        rec = nodes.record(rank)
        if (rec is None and phase is None) or (rec is not None and rec.get("phase") == phase):
            return
        assert time.monotonic() < deadline, f"node {rank}: {rec}"
        time.sleep(0.1)


def _assert_downs(results: list[subprocess.CompletedProcess[str]]) -> None:
    for result in results:
        assert result.returncode == 0, result.stdout + result.stderr
        assert "no process left" in result.stdout, result.stdout


# --- one two-node start per fault ------------------------------------------------------------


def test_both_ready_smoke_then_node1_killed_fails_node0(nodes: Nodes) -> None:
    try:
        nodes.start()
        rows = json.loads(cli("status", "--json", env=nodes.envs[0]).stdout)
        assert {r["name"]: r["state"] for r in rows} == dict.fromkeys(nodes.names, "ready")
        smoke = cli(
            "smoke",
            nodes.name,
            *("--only", "models", "--only", "completion", "--only", "chat", "--only", "stream"),
            env=nodes.envs[0],
            timeout=300,
        )
        print(smoke.stdout)
        assert smoke.returncode == 0, smoke.stdout + smoke.stderr
        assert "4 passed, 0 failed" in smoke.stdout, smoke.stdout
        running = nodes.scan()
        assert sum(n.startswith("VLLM::Worker") for n in running.values()) == 2, running
        nodes.sample()
        assert any(f.startswith("psm_") for f in nodes.shm), nodes.shm  # the check sees them
        killed_at = nodes.kill_supervisor(1)
        left = nodes.wait_gone(GONE_WITHIN)
        print(f"SIGKILL of node 1's llmdeploy -> nothing of either node after "
              f"{time.monotonic() - killed_at:.1f} s")  # fmt: skip
        assert left == [], left
        _wait_record(nodes, 0, "failed", 30)
        assert "node(s) 1 left the deployment" in _reason(nodes.record(0)), nodes.record(0)
        assert "died" in _reason(nodes.record(1)), nodes.record(1)  # said by its guardian
        assert nodes.shm_left() == [], nodes.shm_left()
    finally:
        downs = nodes.down_all()
    _assert_downs(downs)
    assert nodes.wait_gone(5) == []


def test_node0_killed_node1_stops_its_part(nodes: Nodes) -> None:
    try:
        nodes.start()
        killed_at = nodes.kill_supervisor(0)
        left = nodes.wait_gone(GONE_WITHIN)
        print(f"SIGKILL of node 0's llmdeploy -> nothing of either node after "
              f"{time.monotonic() - killed_at:.1f} s")  # fmt: skip
        assert left == [], left
        _wait_record(nodes, 1, "failed", 30)
        assert "node 0 is gone" in _reason(nodes.record(1)), nodes.record(1)
        _wait_record(nodes, 0, "failed", 30)
        assert "died" in _reason(nodes.record(0)), nodes.record(0)
        assert nodes.shm_left() == [], nodes.shm_left()
    finally:
        downs = nodes.down_all()
    _assert_downs(downs)


def test_down_on_node0_stops_node1_cleanly(nodes: Nodes) -> None:
    try:
        nodes.start()
        node1 = nodes.record(1)
        assert node1 is not None
        supervisor1 = node1["supervisor"]
        assert isinstance(supervisor1, dict)
        down = cli("down", nodes.name, env=nodes.envs[0], timeout=180)
        assert down.returncode == 0, down.stdout + down.stderr
        assert "no process left" in down.stdout, down.stdout
        stopped_at = time.monotonic()
        _wait_record(nodes, 1, None, GONE_WITHIN)  # node 1 ended by itself, cleanly
        print(f"down on node 0 -> node 1's record removed after "
              f"{time.monotonic() - stopped_at:.1f} s")  # fmt: skip
        # …and its llmdeploy exits (after removing the record it lets its guardian go)
        deadline = time.monotonic() + 30
        while (stat := proc_stat(int(supervisor1["pid"]))) is not None and stat[0] not in "ZX":
            if stat[2] != supervisor1["start"]:
                break  # the pid was reused: ours is gone
            assert time.monotonic() < deadline, "node 1's llmdeploy did not exit"
            time.sleep(0.1)
        log = Path(str(node1["log"])).read_text(errors="replace")
        assert "node 0 stopped" in log, log[-3000:]
        assert nodes.wait_gone(GONE_WITHIN) == []
        assert nodes.record(0) is None
        assert nodes.shm_left() == [], nodes.shm_left()
    finally:
        downs = nodes.down_all()
    _assert_downs(downs)  # none expected: both records are gone


# --- one node alone ----------------------------------------------------------------------


def test_node0_alone_times_out_naming_node1(nodes: Nodes) -> None:
    try:
        result = subprocess.run(
            nodes.up(0, "--detach", "--timeout", "20"),
            env=nodes.envs[0],
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=300,
        )
        assert result.returncode == 3, result.stdout + result.stderr[-3000:]
        assert "Traceback" not in result.stdout
        errors = [x for x in result.stderr.splitlines() if ERROR_LINE.match(x)]
        assert len(errors) == 1, result.stderr[-3000:]
        assert "engine not ready after 20 s; node(s) 1 never joined" in errors[0], errors[0]
        assert "--node-rank K --head 127.0.0.1" in errors[0], errors[0]
        print(errors[0])
        rec = nodes.record(0)
        assert rec is not None and rec["phase"] == "failed", rec
        assert "node(s) 1 never joined" in _reason(rec)
        assert rec["engine_pid"], "vLLM rank 0 was started"
        assert nodes.wait_gone(GONE_WITHIN) == []
        assert port_free(nodes.port + 1), "node 0's llmdeploy still listens for the nodes"
        assert nodes.shm_left() == [], nodes.shm_left()
    finally:
        downs = nodes.down_all()
    _assert_downs(downs)


@pytest.mark.parametrize("head", [None, "127.0.0.2"], ids=["profile-head", "head-option"])
def test_node1_alone_fails_naming_the_head(nodes: Nodes, head: str | None) -> None:
    data = yaml.safe_load(nodes.profile.read_text())
    data["distributed"]["join_timeout_s"] = 3
    nodes.profile.write_text(yaml.safe_dump(data))
    args = ["--detach"] + (["--head", head] if head else [])
    try:
        started = time.monotonic()
        result = subprocess.run(
            nodes.up(1, *args),
            env=nodes.envs[1],
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=120,
        )
        took = time.monotonic() - started
        assert result.returncode == 3, result.stdout + result.stderr
        errors = [x for x in result.stderr.splitlines() if ERROR_LINE.match(x)]
        assert len(errors) == 1, result.stderr
        address = f"{head or '127.0.0.1'}:{nodes.port + 1}"
        assert f"no node 0 at {address} after 3 s" in errors[0], errors[0]
        assert "Traceback" not in result.stdout + result.stderr
        assert took < 60, took
        rec = nodes.record(1)
        assert rec is not None and rec["phase"] == "failed", rec
        assert not rec["engine_pid"], "no engine is started before node 0 is found"
        assert nodes.wait_gone(30) == []
    finally:
        downs = nodes.down_all()
    _assert_downs(downs)
