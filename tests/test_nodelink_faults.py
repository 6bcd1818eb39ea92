"""Attacks on the link between a multi-node deployment's supervisors (run/nodelink.py) and
on the nodes' lifecycles (run/multinode.py), with real sockets and real processes:

- hostile peers on node 0's control port: garbage, invalid JSON, a never-ending line, a
  huge line, JSON nested too deep, hellos for ranks out of range or taken (also racing),
  a connection that says nothing, a flood of them, file descriptors run out, half-closes;
  node 0 drops each with one log line and its real nodes keep working;
- a head that accepts and goes silent, or talks garbage: the node gives up after the grace;
- `up` itself (vLLM stood in for by tests/fake_engine.py, multi-node needs vllm/sglang):
  node 0's control port taken, a silent head, SIGKILL/SIGTERM of either node at a random
  moment — each failure one line, nothing of either node left running.
"""

from __future__ import annotations

import contextlib
import os
import random
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from conftest import cli
from helpers import FAKE_ENGINE, record
from sysview import free_port, free_port_block, proc_stat, read_bytes

from llmdeploy.run import nodelink
from llmdeploy.run.nodelink import HeadLink, WorkerLink

Join = Callable[[int, int], WorkerLink]  # (port, rank) -> a real node's side, joined
ERROR_LINE = re.compile(r"^(\[llmdeploy\] )?error: ")


def _until(check: Callable[[], object], timeout: float = 10) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return True
        time.sleep(0.02)
    return bool(check())


def _hung_up(sock: socket.socket, timeout: float = 10) -> bool:
    """True once the other side closed the connection (EOF or reset) within `timeout`;
    what it sends before (pings, a refusal) is read and dropped."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        sock.settimeout(max(0.05, deadline - time.monotonic()))
        try:
            if not sock.recv(65536):
                return True
        except TimeoutError:
            return False
        except OSError:
            return True  # reset: the head closed with our bytes unread
    return False


class Sockets:
    """Every socket a test opens, closed at teardown whatever happened."""

    def __init__(self) -> None:
        self.open: list[socket.socket] = []

    def connect(self, port: int, timeout: float = 5) -> socket.socket:
        sock = socket.create_connection(("127.0.0.1", port), timeout=timeout)
        self.open.append(sock)
        return sock

    def listen(self, port: int = 0) -> socket.socket:
        sock = socket.socket()
        self.open.append(sock)
        sock.bind(("127.0.0.1", port))
        sock.listen(8)
        return sock

    def close(self) -> None:
        for sock in self.open:
            with contextlib.suppress(OSError):
                sock.close()


@pytest.fixture
def socks() -> Iterator[Sockets]:
    opened = Sockets()
    yield opened
    opened.close()


@pytest.fixture
def head() -> Iterator[HeadLink]:
    """Node 0's side of a three-node deployment on a free loopback port."""
    link = HeadLink("127.0.0.1", free_port(), nodes=3, run_id="head", grace=5)
    yield link
    link.close()


def _port(link: HeadLink) -> int:
    return int(link._server.getsockname()[1])


@pytest.fixture
def workers() -> Iterator[Join]:
    joined: list[WorkerLink] = []

    def join(port: int, rank: int) -> WorkerLink:
        sock = WorkerLink.connect("127.0.0.1", port, timeout=5)
        assert sock is not None, f"nothing listens on {port}"
        link = WorkerLink(sock, rank, "run", grace=5)
        joined.append(link)
        return link

    yield join
    for link in joined:
        link.close()


def _notes(link: HeadLink, timeout: float = 5) -> list[str]:
    """The head's log lines about bad peers, once there is at least one."""
    found: list[str] = []
    _until(lambda: found.extend(link.take_notes()) or found, timeout)
    for note in found:
        assert "\n" not in note and len(note) < 300, note
    return found


# --- hostile peers on node 0's control port ---------------------------------------------

HOSTILE = {
    "garbage-bytes": (b"\x00\xff\xfe GET / HTTP/1.1\r\n\r\n", "not JSON"),
    "invalid-json": (b'{"hello": 1,,}\n', "not JSON"),
    "never-ending-line": (b"x" * 64 * 1024, "longer than"),
    "huge-line": (b'{"hello": "' + b"1" * 1024 * 1024 + b'"}\n', "longer than"),
    "nested-too-deep": (b"[" * 3000 + b"\n", "not JSON"),
    "nested-object-deep": (b'{"a":' * 1500 + b"\n", "not JSON"),
    "rank-zero": (b'{"hello": 0}\n', "refused"),
    "rank-out-of-range": (b'{"hello": 3}\n', "refused"),
    "rank-negative": (b'{"hello": -1}\n', "refused"),
    "rank-as-text": (b'{"hello": "1"}\n', "refused"),
    "rank-as-bool": (b'{"hello": true}\n', "refused"),
    "rank-as-float": (b'{"hello": 1.0}\n', "refused"),
    "rank-huge": (b'{"hello": ' + b"9" * 4000 + b"}\n", "refused"),
    "rank-with-newline": (b'{"hello": "1\\nerror: injected"}\n', "refused"),
    "rank-taken": (b'{"hello": 1, "run": "x"}\n', "refused"),
    "no-hello-first": (b'{"ping": 1}\n', "refused"),
}


@pytest.mark.parametrize("payload,why", HOSTILE.values(), ids=list(HOSTILE))
def test_a_hostile_peer_is_dropped_and_the_real_nodes_keep_working(
    head: HeadLink, socks: Sockets, workers: Join, payload: bytes, why: str
) -> None:
    port = _port(head)
    one = workers(port, 1)
    assert _until(lambda: head.missing() == [2])
    hostile = socks.connect(port)
    with contextlib.suppress(OSError):  # the head may hang up in the middle: fine
        hostile.sendall(payload)
    assert _hung_up(hostile), "the head kept a hostile connection open"
    notes = _notes(head)
    assert any(why in note for note in notes), notes
    assert head.lost() == [] and head.missing() == [2]
    two = workers(port, 2)  # the head still accepts, and still knows its nodes
    assert _until(lambda: head.missing() == [])
    head.tell({"ready": 1})
    assert _until(lambda: one.ready and two.ready)
    assert not one.head_lost() and one.refused is None and head.lost() == []


def test_hellos_racing_for_one_rank_get_one_winner(head: HeadLink, socks: Sockets) -> None:
    """A dozen `up --node-rank 2` at the same instant: one joins, the others are refused
    (the check and the taking of a rank must be one step). A dozen: more connections
    than MAX_PENDING waiting at once would see the oldest dropped, by design."""
    port = _port(head)
    racers = [socks.connect(port) for _ in range(min(12, nodelink.MAX_PENDING))]
    start = threading.Barrier(len(racers))

    def hello(sock: socket.socket) -> None:
        start.wait(10)
        sock.sendall(b'{"hello": 2, "run": "r"}\n')

    threads = [threading.Thread(target=hello, args=(s,)) for s in racers]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(20)
    refused = [s for s in racers if b"refused" in _first_line(s)]
    assert len(refused) == len(racers) - 1
    assert _until(lambda: head.missing() == [1])
    winner = next(s for s in racers if s not in refused)
    winner.close()  # the rank's owner leaves: the head sees that one, not a loser
    assert _until(lambda: head.lost() == [2])


def _first_line(sock: socket.socket, timeout: float = 3) -> bytes:
    """What the head said first: a refusal at once, else a ping within a second."""
    sock.settimeout(timeout)
    data = b""
    with contextlib.suppress(OSError):
        while b"\n" not in data:
            chunk = sock.recv(4096)
            if not chunk:
                break
            data += chunk
    return data


@pytest.mark.parametrize("dribble", [False, True], ids=["silent", "dribbling"])
def test_a_connection_that_never_says_hello_is_dropped(
    head: HeadLink, socks: Sockets, monkeypatch: pytest.MonkeyPatch, dribble: bool
) -> None:
    monkeypatch.setattr(nodelink, "HELLO_S", 0.5)
    idle = socks.connect(_port(head))
    started = time.monotonic()
    while dribble and time.monotonic() - started < 3:  # a byte now and then, no line
        with contextlib.suppress(OSError):
            idle.sendall(b" ")
        time.sleep(0.2)
    assert _hung_up(idle, 10)
    assert any("hello" in note for note in _notes(head)), "no log line"


def test_a_flood_of_idle_connections_does_not_lock_the_nodes_out(
    head: HeadLink, socks: Sockets, workers: Join
) -> None:
    """Hundreds of connections that say nothing: the head holds a bounded number of
    them (the oldest go first), and a real node joining after the flood gets in."""
    port = _port(head)
    flood = []
    for _ in range(300):
        with contextlib.suppress(OSError):  # a full backlog drops some: no matter
            flood.append(socks.connect(port, timeout=0.3))
    one = workers(port, 1)
    assert _until(lambda: head.missing() == [2] and one.heard_back())
    assert one.refused is None and not one.gone
    still_open = [s for s in flood if not _hung_up(s, 0.05)]
    assert len(still_open) <= 2 * nodelink.MAX_PENDING, f"{len(still_open)} held open"


HEAD_SCRIPT = """
import os, resource, sys
from llmdeploy.run.nodelink import HeadLink
link = HeadLink("127.0.0.1", int(sys.argv[1]), nodes=2, run_id="h", grace=30)
limit = len(os.listdir("/proc/self/fd")) + 6  # fewer than MAX_PENDING: accept hits EMFILE
resource.setrlimit(resource.RLIMIT_NOFILE, (limit, limit))
print(limit, flush=True)
sys.stdin.read()
"""


def test_running_out_of_file_descriptors_does_not_stop_accepting(socks: Sockets) -> None:
    """A head process that may hold only a few more files: a flood makes accept fail
    (EMFILE); once the flood is gone, node 1 must still be able to join."""
    port = free_port()
    head = subprocess.Popen(
        [sys.executable, "-c", HEAD_SCRIPT, str(port)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    joined: WorkerLink | None = None
    try:
        assert head.stdout is not None
        limit = int(head.stdout.readline())
        flood = []
        for _ in range(24):  # more than the head may hold, and its backlog takes
            with contextlib.suppress(OSError):
                flood.append(socks.connect(port, timeout=0.3))
        assert _until(lambda: len(os.listdir(f"/proc/{head.pid}/fd")) >= limit, 20)
        for sock in flood:
            sock.close()
        sock = WorkerLink.connect("127.0.0.1", port, timeout=5)
        assert sock is not None
        joined = WorkerLink(sock, 1, "run", grace=30)
        assert _until(joined.heard_back, 15) and joined.refused is None and not joined.gone
    finally:
        if joined is not None:
            joined.close()
        head.kill()
        _, err = head.communicate(timeout=30)
    assert b"Traceback" not in err, err.decode(errors="replace")


def test_half_closed_peers(head: HeadLink, socks: Sockets, workers: Join) -> None:
    """A peer that half-closes before its hello is dropped; one that said hello and
    half-closes has left (its node is lost) — and the other node is untouched."""
    port = _port(head)
    one = workers(port, 1)
    quiet = socks.connect(port)
    quiet.shutdown(socket.SHUT_WR)
    assert _hung_up(quiet)
    assert head.lost() == [] and head.missing() == [2]
    leaver = socks.connect(port)
    leaver.sendall(b'{"hello": 2, "run": "r"}\n')
    assert _until(lambda: head.missing() == [])
    leaver.shutdown(socket.SHUT_WR)
    assert _until(lambda: head.lost() == [2])
    assert not one.head_lost() and not one.gone


def test_close_hangs_up_on_every_peer_at_once(head: HeadLink, socks: Sockets) -> None:
    """Node 0's supervisor closing its link ends every connection now — even a peer that
    sends nothing (a thread blocked reading must not keep it open) — and frees the port."""
    port = _port(head)
    peer = socks.connect(port)
    peer.sendall(b'{"hello": 1, "run": "r"}\n')
    pending = socks.connect(port)
    assert _until(lambda: head.missing() == [2])
    head.close()
    assert _hung_up(peer, 3) and _hung_up(pending, 3)
    with pytest.raises(OSError):
        socks.connect(port, timeout=2)


# --- a head that is not one -------------------------------------------------------------


def test_a_worker_gives_up_on_a_head_that_accepts_and_goes_silent(socks: Sockets) -> None:
    server = socks.listen()
    sock = WorkerLink.connect("127.0.0.1", server.getsockname()[1], timeout=5)
    assert sock is not None
    socks.open.append(sock)
    link = WorkerLink(sock, 1, "run", grace=1.5)
    try:
        assert not link.heard_back() and not link.head_lost()
        assert _until(link.head_lost, 10)
        assert not link.heard_from_head()
    finally:
        link.close()


@pytest.mark.parametrize(
    "says", [b"[" * 3000 + b"\n", b"\x00\xff\n", b"y" * 20000], ids=["deep", "garbage", "long"]
)
def test_a_worker_drops_a_head_that_talks_garbage(socks: Sockets, says: bytes) -> None:
    server = socks.listen()
    sock = WorkerLink.connect("127.0.0.1", server.getsockname()[1], timeout=5)
    assert sock is not None
    link = WorkerLink(sock, 1, "run", grace=60)
    try:
        conn, _ = server.accept()
        socks.open.append(conn)
        conn.sendall(says)
        assert _until(lambda: link.gone, 10) and link.head_lost()
    finally:
        link.close()


# --- `up`, both nodes on this machine, vLLM faked -----------------------------------------


@dataclass
class Deployment:
    """A two-node profile run by `up` processes of this test; `seen` is every process of
    either node ever found (pid, start time), so nothing can escape the final check."""

    tmp: Path
    env: dict[str, str]
    name: str
    port: int  # distributed.port; the supervisors meet on port + 1
    profile: Path
    ups: dict[int, subprocess.Popen[bytes]] = field(default_factory=dict)
    seen: set[tuple[int, int]] = field(default_factory=set)

    @property
    def control(self) -> int:
        return self.port + 1

    def node(self, rank: int) -> str:
        return self.name if rank == 0 else f"{self.name}.node{rank}"

    def up(self, rank: int, *more: str) -> subprocess.Popen[bytes]:
        args = ["--skip-gpu-check", "--grace", "5", *more]
        args += ["--node-rank", "1"] if rank else []
        with open(self.tmp / f"up{rank}.out", "wb") as out:
            self.ups[rank] = subprocess.Popen(
                [sys.executable, "-m", "llmdeploy", "up", str(self.profile), *args],
                env=self.env,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        return self.ups[rank]

    def output(self, rank: int) -> str:
        return (self.tmp / f"up{rank}.out").read_text(errors="replace")

    def scan(self) -> set[tuple[int, int]]:
        """Live processes of either node: tagged with its name, or named in its record."""
        for rank in (0, 1):
            rec = record(self.env, self.node(rank)) or {}
            for key in ("engine_proc", "supervisor", "guardian"):
                proc = rec.get(key)
                if isinstance(proc, dict):
                    self.seen.add((int(proc["pid"]), int(proc["start"])))
        tags = [f"/{self.node(rank)}/".encode() for rank in (0, 1)]
        for entry in filter(str.isdigit, os.listdir("/proc")):
            environ = read_bytes(f"/proc/{entry}/environ").split(b"\0")
            stat = proc_stat(int(entry))
            if stat and any(_tagged(item, tags) for item in environ):
                self.seen.add((int(entry), stat[2]))
        return {(pid, start) for pid, start in self.seen if _alive(pid, start)}

    def wait_ready(self, rank: int, timeout: float = 90) -> None:
        def ready() -> bool:
            self.scan()
            rec = record(self.env, self.node(rank))
            assert self.ups[rank].poll() is None, self.output(rank)
            return bool(rec and rec["phase"] == "ready")

        assert _until(ready, timeout), f"node {rank} not ready: {self.output(rank)}"


def _tagged(item: bytes, tags: list[bytes]) -> bool:
    return item.startswith(b"LLMDEPLOY_RUN=") and any(tag in item for tag in tags)


def _start(proc: subprocess.Popen[bytes]) -> int:
    stat = proc_stat(proc.pid)
    assert stat is not None, f"{proc.args} is gone"
    return stat[2]


def _alive(pid: int, start: int) -> bool:
    stat = proc_stat(pid)
    return stat is not None and stat[2] == start and stat[0] not in "ZX"


def _one_error_line(output: str) -> str:
    errors = [line for line in output.splitlines() if ERROR_LINE.match(line)]
    assert len(errors) == 1 and "Traceback" not in output, output
    return errors[0]


@pytest.fixture
def deployment(tmp_path: Path, isolated_env: dict[str, str]) -> Iterator[Deployment]:
    exe = tmp_path / "vllm"
    exe.write_text(f'#!/bin/sh\nexec {sys.executable} {FAKE_ENGINE} "$@"\n')
    exe.chmod(0o755)
    (tmp_path / "model").mkdir()
    name = f"nlf-{os.getpid()}-{random.randrange(10**6)}"
    port = free_port_block(2)
    profile = tmp_path / f"{name}.yaml"
    profile.write_text(
        f"name: {name}\nmodel: {{source: local, path: {tmp_path / 'model'}}}\n"
        f"engine: {{type: vllm, executable: {exe}}}\nnodes: 2\nserving: {{port: auto}}\n"
        "resources: {tensor_parallel_size: 2}\n"
        f"distributed: {{head: 127.0.0.1, port: {port}, head_grace_s: 3, join_timeout_s: 8}}\n"
    )
    dep = Deployment(tmp_path, isolated_env, name, port, profile)
    try:
        yield dep
    finally:
        _clean_up(dep)


def _clean_up(dep: Deployment) -> None:
    """`down` both nodes, then kill (by pid, start time checked) whatever is still ours."""
    with contextlib.suppress(subprocess.TimeoutExpired):
        cli("down", "--all", env=dep.env, timeout=90)
    for proc in dep.ups.values():
        if proc.poll() is None:
            proc.kill()
        proc.wait(30)
    for pid, start in dep.scan():
        if _alive(pid, start):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)


def _gone(dep: Deployment, timeout: float = 60) -> set[tuple[int, int]]:
    left: set[tuple[int, int]] = set()

    def nothing_left() -> bool:
        left.clear()
        left.update(dep.scan())
        return not left

    _until(nothing_left, timeout)
    return left


def test_head_control_port_taken_is_one_line(deployment: Deployment, socks: Sockets) -> None:
    socks.listen(deployment.control)  # another program holds it
    head = deployment.up(0)
    assert head.wait(60) == 3, deployment.output(0)
    line = _one_error_line(deployment.output(0))
    assert f"distributed.control_port {deployment.control}" in line, line
    assert _gone(deployment) == set()


def test_worker_stops_when_its_head_accepts_and_goes_silent(
    deployment: Deployment, socks: Sockets
) -> None:
    server = socks.listen(deployment.control)
    worker = deployment.up(1)
    _until(lambda: record(deployment.env, deployment.node(1)) or worker.poll() is not None, 60)
    conn, _ = server.accept()  # the "head": accepts, reads nothing, says nothing
    socks.open.append(conn)
    assert worker.wait(90) == 3, deployment.output(1)
    line = _one_error_line(deployment.output(1))
    assert "node 0" in line and "never answered" in line, line
    assert _gone(deployment) == set()


FAULTS = {
    "sigkill-head": (0, signal.SIGKILL, 3, "node 0 is gone"),
    "sigterm-head": (0, signal.SIGTERM, 0, ""),
    "sigkill-worker": (1, signal.SIGKILL, 3, "node(s) 1 left the deployment"),
    "sigterm-worker": (1, signal.SIGTERM, 3, "node(s) 1 left the deployment"),
}


@pytest.mark.parametrize("victim,signum,code,says", FAULTS.values(), ids=list(FAULTS))
def test_a_node_killed_while_serving(
    deployment: Deployment, socks: Sockets, victim: int, signum: int, code: int, says: str
) -> None:
    """Both nodes serve; hostile peers knock on node 0's control port (dropped, logged,
    the deployment keeps serving); then one node's llmdeploy gets a signal: the other
    stops its part by itself, with one line, and nothing of either node is left."""
    deployment.up(0)
    deployment.up(1)
    deployment.wait_ready(0)
    deployment.wait_ready(1)
    for payload in (b"\x00garbage\n", b'{"hello": 1}\n', b"[" * 3000 + b"\n"):
        hostile = socks.connect(deployment.control)
        hostile.sendall(payload)
        assert _hung_up(hostile)
    log = Path(deployment.env["LLMDEPLOY_STATE_DIR"])
    assert _until(lambda: _log_has(log, deployment.name, "control port: "), 30)
    for rank in (0, 1):  # the hostile peers changed nothing
        assert (record(deployment.env, deployment.node(rank)) or {}).get("phase") == "ready"
    live = deployment.scan()  # each node: its llmdeploy, its guardian, its engine
    assert len(live) >= 6 and (deployment.ups[victim].pid, _start(deployment.ups[victim])) in live
    os.kill(deployment.ups[victim].pid, signum)  # llmdeploy alone, not its engine
    survivor = deployment.ups[1 - victim]
    assert survivor.wait(90) == code, deployment.output(1 - victim)
    if says:
        assert says in _one_error_line(deployment.output(1 - victim))
    assert _gone(deployment) == set()


def _log_has(state: Path, name: str, text: str) -> bool:
    logs = list(state.rglob(f"{name}*.log"))
    return any(text in p.read_text(errors="replace") for p in logs)


def test_a_node_killed_at_a_random_moment(deployment: Deployment) -> None:
    """SIGKILL of either node's llmdeploy somewhere in the start: whatever the moment,
    the other one ends with one line, and nothing of either is left running."""
    rng = random.Random()
    seed = rng.randrange(10**6)
    rng.seed(seed)
    victim, delay = rng.choice([0, 1]), rng.uniform(0.0, 4.0)
    deployment.up(0, "--timeout", "20")  # node 1 killed before it joined: never comes
    deployment.up(1)
    deadline = time.monotonic() + delay
    while time.monotonic() < deadline:  # keep learning the processes while they start
        deployment.scan()
        time.sleep(0.05)
    os.kill(deployment.ups[victim].pid, signal.SIGKILL)
    survivor = deployment.ups[1 - victim]
    code = survivor.wait(90)
    out = deployment.output(1 - victim)
    assert code == 3, f"seed {seed}, victim {victim}, after {delay:.2f} s: {out}"
    _one_error_line(out)
    assert _gone(deployment) == set(), f"seed {seed}"


def test_a_worker_keeps_a_hostile_heads_words_on_one_line(socks: Sockets) -> None:
    """What the head says ends up in the node's one-line error: no line breaks."""
    server = socks.listen()
    sock = WorkerLink.connect("127.0.0.1", server.getsockname()[1], timeout=5)
    assert sock is not None
    link = WorkerLink(sock, 1, "run", grace=60)
    try:
        conn, _ = server.accept()
        socks.open.append(conn)
        conn.sendall(b'{"refused": "no\\nerror: injected\\r\\n", "stop": "a\\nb"}\n')
        assert _until(lambda: link.refused is not None and link.stopped is not None)
        assert link.refused == "no error: injected" and link.stopped == "a b"
    finally:
        link.close()
