"""Two vLLM nodes started by llmdeploy vs the same two vLLM commands started by hand.

Deployment: the tiny random Qwen3 (scripts/build_tiny_qwen3.py) on vLLM's CPU build,
tensor-parallel 2 over `nodes: 2` in vLLM's native multi-node mode, both "nodes" on this
machine (loopback), each with its own VLLM_PORT base, VLLM_CACHE_ROOT, TMPDIR and CPU
(VLLM_CPU_OMP_THREADS_BIND), one state directory.

First one unmeasured start by hand (--warmup): the very first vLLM start fills
VLLM_CACHE_ROOT (model inspection in a subprocess, ≈0.5 GB more at the peak, tens of
seconds slower), which would otherwise count against whichever method goes first. Then
rounds alternate which method goes first (default 2 rounds of each):

  llmdeploy  `llmdeploy up PROFILE --detach` (node 0) in the background, then
             `llmdeploy up PROFILE --node-rank 1 --detach`; ready = both commands
             returned 0 (node 0 returns once node 1 joined, GET /health answered 200
             and one 1-token completion passed).
             Then SIGKILL of node 0's llmdeploy (its supervisor): the time until no
             process of either node is left (node 0's guardian stops rank 0, node 1's
             llmdeploy sees the link end and stops rank 1).
  by hand    node 0's and node 1's engine commands exactly as `llmdeploy plan PROFILE
             --json` prints them (node 1's = node 0's + --node-rank 1 --headless, checked),
             each in its own session; ready = GET /health 200 on node 0 and one 1-token
             completion passed (the same definition). Then SIGKILL of rank 0's `vllm`
             process: how many processes are still there after --orphan-wait s (what a
             dead head leaves without a supervisor); everything is killed afterwards.

Memory: the sum over both nodes' processes — RSS (shared pages counted in each process,
what `ps` adds up) and PSS (shared pages split, /proc/PID/smaps_rollup) — at its peak
(sampled every 0.25 s from the start until the kill; start-up transients such as vLLM's
model-inspection subprocess land in it, so it varies run to run) and at the moment of
ready. llmdeploy's own processes (two supervisors, two guardians) are included in its
figures and shown apart. Also shown: when node 0's GET /health first answered 200 (polled
every 0.1 s), i.e. the engines' own start, and the time from there to ready.

Needs `make vllm-env` (.venv-vllm). Run when the machine is otherwise idle:
    .venv/bin/python benchmarks/multinode.py [--rounds 2] [--orphan-wait 30] [--warmup 1]
LLMDEPLOY_TINY_QWEN3=DIR reuses a built model; otherwise one is built (≈10 s).
Nothing outlives it: every deployment is taken down and every session killed in finally.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import statistics
import subprocess
import tempfile
import threading
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

import yaml
from _common import LLMDEPLOY, ROOT, isolated_env, tiny_qwen3
from sysview import free_port_block, proc_stat, read_bytes

PROFILE = ROOT / "src" / "llmdeploy" / "profiles" / "tiny-qwen3-vllm-cpu.yaml"
VLLM = ROOT / ".venv-vllm" / "bin" / "vllm"
NAME = "mn-bench"
SERVED = "tiny-qwen3"


# --- ports, processes, memory ---------------------------------------------------------------


def kib(path: str, key: bytes) -> int:
    for line in read_bytes(path).splitlines():
        if line.startswith(key):
            return int(line.split()[1])
    return 0


def memory(pids: list[int]) -> tuple[int, int]:
    """Sum of RSS and of PSS (KiB) of these processes."""
    rss = sum(kib(f"/proc/{p}/status", b"VmRSS:") for p in pids)
    pss = sum(kib(f"/proc/{p}/smaps_rollup", b"Pss:") for p in pids)
    return rss, pss


@dataclass
class Group:
    """The processes of one two-node run: by LLMDEPLOY_RUN tag (names), by session, and
    named (pid, start) pairs (llmdeploy's supervisors and guardians)."""

    tags: tuple[str, ...] = ()
    sessions: set[int] = field(default_factory=set)
    named: set[tuple[int, int]] = field(default_factory=set)
    peak_rss: int = 0  # KiB
    peak_pss: int = 0
    _stop: threading.Event = field(default_factory=threading.Event)

    def live(self) -> list[int]:
        wanted = [f"/{t}/".encode() for t in self.tags]
        found = []
        for entry in os.listdir("/proc"):
            if not entry.isdigit():
                continue
            pid = int(entry)
            st = proc_stat(pid)
            if st is None or st[0] in "ZX":
                continue
            tagged = bool(wanted) and any(
                item.startswith(b"LLMDEPLOY_RUN=") and any(w in item for w in wanted)
                for item in read_bytes(f"/proc/{pid}/environ").split(b"\0")
            )
            if tagged or st[1] in self.sessions or (pid, st[2]) in self.named:
                found.append(pid)
        return found

    def sample(self) -> tuple[int, int]:
        rss, pss = memory(self.live())
        self.peak_rss, self.peak_pss = max(self.peak_rss, rss), max(self.peak_pss, pss)
        return rss, pss

    def watch(self, learn: object = None) -> None:
        def loop() -> None:
            while not self._stop.wait(0.25):
                if callable(learn):
                    learn()
                self.sample()

        threading.Thread(target=loop, daemon=True).start()

    def stop_watching(self) -> None:
        self._stop.set()

    def wait_gone(self, timeout: float) -> tuple[float | None, int]:
        """Seconds until none is left (None: still some after `timeout`), and how many
        were left then."""
        started = time.monotonic()
        while True:
            left = self.live()
            if not left:
                return time.monotonic() - started, 0
            if time.monotonic() - started > timeout:
                return None, len(left)
            time.sleep(0.05)

    def kill_all(self) -> None:
        for pid in self.live():
            try:
                os.kill(pid, signal.SIGKILL)
            except OSError:
                pass
        self.wait_gone(30)


# --- the setup ---------------------------------------------------------------------------------


@dataclass
class Setup:
    profile: Path
    envs: list[dict[str, str]]
    tmp: Path

    def record(self, rank: int) -> dict[str, object] | None:
        name = NAME if rank == 0 else f"{NAME}.node1"
        path = Path(self.envs[0]["LLMDEPLOY_STATE_DIR"]) / "deployments" / f"{name}.json"
        try:
            return dict(json.loads(path.read_text()))
        except (OSError, ValueError):
            return None


def prepare() -> Setup:
    env = isolated_env()
    tmp = Path(env["BENCH_TMP"])
    model = tiny_qwen3(tmp)
    port = free_port_block(2, set())
    data = yaml.safe_load(PROFILE.read_text())
    data.update(name=NAME, nodes=2)
    data["resources"]["tensor_parallel_size"] = 2
    data["distributed"] = {"backend": "native", "head": "127.0.0.1", "port": port}
    data["env"].pop("VLLM_ENABLE_V1_MULTIPROCESSING", None)
    profile = tmp / f"{NAME}.yaml"
    profile.write_text(yaml.safe_dump(data))
    cpus = sorted(os.sched_getaffinity(0))
    short = Path(tempfile.mkdtemp(prefix="mnb-", dir="/tmp"))  # ZeroMQ IPC paths ≤ 107 bytes
    envs, taken = [], {port, port + 1}
    for rank in (0, 1):
        vllm_port = free_port_block(20, taken)
        taken |= set(range(vllm_port, vllm_port + 20))
        (short / f"n{rank}").mkdir()
        envs.append(
            {
                **env,
                "LLMDEPLOY_TINY_QWEN3": model,
                "LLMDEPLOY_VLLM": str(VLLM),
                "VLLM_PORT": str(vllm_port),
                "VLLM_CACHE_ROOT": str(tmp / f"node{rank}" / "vllm-cache"),
                "TMPDIR": str(short / f"n{rank}"),
                "VLLM_CPU_OMP_THREADS_BIND": str(cpus[rank % len(cpus)]),
            }
        )
    return Setup(profile, envs, short)


def healthy(url: str) -> bool:
    try:
        with urllib.request.urlopen(url + "/health", timeout=5) as answer:
            return bool(answer.status == 200)
    except (urllib.error.URLError, OSError):
        return False


class HealthClock:
    """When node 0's GET /health first answered 200 (polled every 0.1 s in a thread):
    the engine's own start, apart from what comes after it."""

    def __init__(self, started: float, url: object) -> None:
        self.started, self.at = started, float("nan")
        self._stop = threading.Event()
        self._url = url  # a string, or a callable giving it once known
        threading.Thread(target=self._loop, daemon=True).start()

    def _loop(self) -> None:
        while not self._stop.wait(0.1):
            url = self._url() if callable(self._url) else self._url
            if url and healthy(str(url)):
                self.at = time.monotonic() - self.started
                return

    def stop(self) -> float:
        self._stop.set()
        return self.at


def ready_by_hand(url: str, deadline: float, procs: list[subprocess.Popen[bytes]]) -> None:
    """GET /health 200, then one 1-token completion — what llmdeploy calls ready."""
    while True:
        if any(p.poll() is not None for p in procs):
            raise SystemExit(f"a vLLM exited: {[p.returncode for p in procs]}")
        if time.monotonic() > deadline:
            raise SystemExit("by hand: not ready in time")
        if healthy(url):
            body = {"model": SERVED, "prompt": "hi", "max_tokens": 1}
            request = urllib.request.Request(
                url + "/v1/completions",
                json.dumps(body).encode(),
                {"content-type": "application/json"},
            )
            try:
                with urllib.request.urlopen(request, timeout=60) as answer:
                    if answer.status == 200:
                        return
            except (urllib.error.URLError, OSError):
                pass
        time.sleep(0.1)


# --- the two methods ---------------------------------------------------------------------------


def run_llmdeploy(setup: Setup, timeout: float) -> dict[str, float]:
    group = Group(tags=(NAME, f"{NAME}.node1"))

    own: set[int] = set()  # llmdeploy's own processes: supervisors and guardians

    def learn() -> None:
        for rank in (0, 1):
            rec = setup.record(rank) or {}
            for key in ("supervisor", "guardian", "engine_proc"):
                proc = rec.get(key)
                if isinstance(proc, dict):
                    group.named.add((int(proc["pid"]), int(proc["start"])))
                    if key == "engine_proc":
                        group.sessions.add(int(proc["pid"]))
                    else:
                        own.add(int(proc["pid"]))

    logs = [open(setup.tmp / f"up{rank}.log", "wb") for rank in (0, 1)]  # noqa: SIM115
    up = [*LLMDEPLOY, "up", str(setup.profile), "--detach"]
    try:
        group.watch(learn)
        started = time.monotonic()
        clock = HealthClock(started, lambda: (setup.record(0) or {}).get("base_url"))
        head = subprocess.Popen(up, env=setup.envs[0], stdout=logs[0], stderr=subprocess.STDOUT)
        node1 = subprocess.run(
            [*up, "--node-rank", "1"],
            env=setup.envs[1],
            stdout=logs[1],
            stderr=subprocess.STDOUT,
            timeout=timeout,
        )
        code = head.wait(timeout=timeout)
        ready = time.monotonic() - started
        health = clock.stop()
        if code or node1.returncode:
            raise SystemExit(f"llmdeploy up failed ({code}, {node1.returncode}); see {setup.tmp}")
        learn()
        at_ready = group.sample()
        own_rss, own_pss = memory(sorted(own))
        supervisor = (setup.record(0) or {}).get("supervisor")
        assert isinstance(supervisor, dict)
        group.stop_watching()
        os.kill(int(supervisor["pid"]), signal.SIGKILL)
        gone, left = group.wait_gone(120)
        if gone is None:
            raise SystemExit(f"{left} processes left 120 s after the SIGKILL")
        return {
            "health": health,
            "ready": ready,
            "gone": gone,
            "rss": group.peak_rss,
            "pss": group.peak_pss,
            "rss_ready": at_ready[0],
            "pss_ready": at_ready[1],
            "own_rss": own_rss,
            "own_pss": own_pss,
        }
    finally:
        group.stop_watching()
        for rank, name in ((0, NAME), (1, f"{NAME}.node1")):
            if setup.record(rank) is not None:
                subprocess.run(
                    [*LLMDEPLOY, "down", name], env=setup.envs[rank], capture_output=True
                )
        for log in logs:
            log.close()


def run_by_hand(setup: Setup, timeout: float, orphan_wait: float) -> dict[str, float]:
    shown = subprocess.run(
        [*LLMDEPLOY, "plan", str(setup.profile), "--json"],
        env=setup.envs[0],
        capture_output=True,
        text=True,
        check=True,
    )
    plan = json.loads(shown.stdout)
    node0, node1 = plan["nodes"]
    argv0 = list(node0["argv"])
    # node 1's command is node 0's with --node-rank 1 and --headless after the node flags
    at = argv0.index("--master-port") + 2
    expected = [*argv0[:at], "--headless", *argv0[at:]]
    expected[expected.index("--node-rank") + 1] = "1"
    assert list(node1["argv"]) == expected, (node1["argv"], expected)
    group = Group()
    procs: list[subprocess.Popen[bytes]] = []
    try:
        started = time.monotonic()
        for rank, node in enumerate((node0, node1)):
            log = open(setup.tmp / f"hand{rank}.log", "wb")  # noqa: SIM115
            procs.append(
                subprocess.Popen(
                    node["argv"],
                    env={**setup.envs[rank], **node["env"]},
                    stdin=subprocess.DEVNULL,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    start_new_session=True,
                )
            )
            log.close()
            group.sessions.add(procs[-1].pid)
        group.watch()
        clock = HealthClock(started, plan["base_url"])
        ready_by_hand(plan["base_url"], started + timeout, procs)
        ready = time.monotonic() - started
        health = clock.stop()
        at_ready = group.sample()
        group.stop_watching()
        os.kill(procs[0].pid, signal.SIGKILL)  # the head's vllm, as a crash would
        gone, left = group.wait_gone(orphan_wait)
        if orphan_wait:  # not for a warm-up
            names = sorted(read_bytes(f"/proc/{p}/comm").decode().strip() for p in group.live())
            print(f"  left {orphan_wait:g} s after SIGKILL of rank 0's vllm: {names}")
        return {
            "health": health,
            "ready": ready,
            "orphans": float(left),
            "gone": gone if gone is not None else float("nan"),
            "rss": group.peak_rss,
            "pss": group.peak_pss,
            "rss_ready": at_ready[0],
            "pss_ready": at_ready[1],
        }
    finally:
        group.stop_watching()
        group.kill_all()
        for proc in procs:
            proc.wait()


# --- report ----------------------------------------------------------------------------------


def fmt(values: list[float], unit: str) -> str:
    cells = [f"{v:8.1f}" for v in values]
    med = statistics.median(values) if all(v == v for v in values) else float("nan")
    return " ".join(cells) + f" {med:8.1f}  {unit}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--timeout", type=float, default=600)
    parser.add_argument("--orphan-wait", type=float, default=30)
    parser.add_argument(
        "--warmup", type=int, default=1, help="unmeasured starts by hand first (cold caches)"
    )
    args = parser.parse_args()
    setup = prepare()
    ours: list[dict[str, float]] = []
    hand: list[dict[str, float]] = []
    try:
        for _ in range(args.warmup):
            print("warm-up (by hand, not counted) …", flush=True)
            run_by_hand(setup, args.timeout, 0)
        for r in range(args.rounds):
            order = ("llmdeploy", "hand") if r % 2 == 0 else ("hand", "llmdeploy")
            for method in order:
                print(f"round {r + 1}: {method} …", flush=True)
                if method == "llmdeploy":
                    ours.append(run_llmdeploy(setup, args.timeout))
                    print(f"  {ours[-1]}", flush=True)
                else:
                    hand.append(run_by_hand(setup, args.timeout, args.orphan_wait))
                    print(f"  {hand[-1]}", flush=True)
    except BaseException:
        print(f"logs kept in {setup.tmp}")
        raise
    shutil.rmtree(setup.tmp, ignore_errors=True)
    shutil.rmtree(setup.envs[0]["BENCH_TMP"], ignore_errors=True)
    heads = " ".join(f"{'round ' + str(k + 1):>8}" for k in range(args.rounds))
    print()
    print(f"two nodes, tiny Qwen3, vLLM CPU, TP 2 (native), {args.rounds} alternating rounds")
    print(f"{'':44} {heads}   median")
    ready_ours, ready_hand = [x["ready"] for x in ours], [x["ready"] for x in hand]
    print(f"{'time to ready: llmdeploy (both nodes)':44} {fmt(ready_ours, 's')}")
    print(f"{'time to ready: by hand (health + 1 request)':44} {fmt(ready_hand, 's')}")
    ratio = [a / b for a, b in zip(ready_ours, ready_hand, strict=True)]
    print(f"{'  ratio llmdeploy / by hand':44} {fmt(ratio, 'x')}")
    print(f"{'node 0 /health 200: llmdeploy':44} {fmt([x['health'] for x in ours], 's')}")
    print(f"{'node 0 /health 200: by hand':44} {fmt([x['health'] for x in hand], 's')}")
    after_ours = [x["ready"] - x["health"] for x in ours]
    after_hand = [x["ready"] - x["health"] for x in hand]
    print(f"{'health 200 -> ready: llmdeploy':44} {fmt(after_ours, 's')}")
    print(f"{'health 200 -> ready: by hand':44} {fmt(after_hand, 's')}")
    print(f"{'SIGKILL head llmdeploy -> no process left':44} {fmt([x['gone'] for x in ours], 's')}")
    orphans = [x["orphans"] for x in hand]
    print(f"{'by hand: SIGKILL head vllm -> processes left':44} {fmt(orphans, '')}")
    print(f"{'  (after s)':44} {fmt([args.orphan_wait] * len(hand), 's')}")
    mib = 1024
    print(f"{'peak RSS sum: llmdeploy':44} {fmt([x['rss'] / mib for x in ours], 'MiB')}")
    print(f"{'peak RSS sum: by hand':44} {fmt([x['rss'] / mib for x in hand], 'MiB')}")
    print(f"{'peak PSS sum: llmdeploy':44} {fmt([x['pss'] / mib for x in ours], 'MiB')}")
    print(f"{'peak PSS sum: by hand':44} {fmt([x['pss'] / mib for x in hand], 'MiB')}")
    for key, label in (("rss_ready", "RSS"), ("pss_ready", "PSS")):
        print(f"{label + ' sum at ready: llmdeploy':44} {fmt([x[key] / mib for x in ours], 'MiB')}")
        print(f"{label + ' sum at ready: by hand':44} {fmt([x[key] / mib for x in hand], 'MiB')}")
    own = [x["own_rss"] / mib for x in ours]
    print(f"{'  of which llmdeploy (2 sup. + 2 guardians) RSS':44} {fmt(own, 'MiB')}")
    own = [x["own_pss"] / mib for x in ours]
    print(f"{'  of which llmdeploy (2 sup. + 2 guardians) PSS':44} {fmt(own, 'MiB')}")


if __name__ == "__main__":
    main()
