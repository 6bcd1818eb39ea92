"""What clients see when a replica behind the router dies: SIGKILL of one of 3 replicas
under a steady request stream.

Deployment: 3 fake-engine replicas (tests/fake_engine.py, real HTTP servers) behind the
SMG router, `restart: {policy: on-failure, backoff_s: B}` (default B = 1 s, llmdeploy's
default), brought up with `llmdeploy up --detach` in a private LLMDEPLOY_STATE_DIR.
Load: C clients (default 4) sending non-streamed chat completions (max_tokens 2) to the
router's URL back to back, no think time, over llmdeploy's async client (keep-alive).

Each kill (default 5, victims r0, r1, r2, r0, …; the stream runs throughout), one loop
polls every ≈10 ms and stamps the first moment it sees each of:
  - removed: the supervisor saw the exit and took the replica out of the router (the
    member's phase leaves `ready` in the record; `_exited` DELETEs it from SMG first);
  - pool shrinks: the router's own gauge (smg_worker_pool_size, its Prometheus listener)
    counts one worker fewer — SMG finishes a queued removal later than it accepts it;
  - ready: the record shows the replacement `ready` (new pid; includes backoff B, start
    and readiness probe);
  - serves via router: the replacement's log shows a chat request — only the router sends
    those (the readiness probe is a /v1/completions) — or "never" within --serve-timeout
    after ready.
Counted over the requests that ended between the kill and --settle s after that:
failed (status != 200, connection error or timeout), failed after removal (sent after
"removed"), the last failure's time after the kill; from the router's metrics
(smg_worker_cb_outcomes_total of the dead worker's URL) how many attempts to the dead
replica failed inside the router (SMG retries them on another worker, 5 retries by
default) and when the last one was seen — when the router stopped sending to it; the
router's worker count after the round; p50 and max latency of the successful requests
(retries show in the max).
Goal: ≤ 1 % of requests failed, 0 failed after the router marks the replica down.

Run: .venv/bin/python benchmarks/replica_kill.py [--rounds 5] [--clients 4] [--backoff 1]
         [--settle 2] [--serve-timeout 20]
Nothing outlives it: the deployment is taken down in `finally` (SIGTERM included).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import statistics
import subprocess
import sys
import threading
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from _common import FAKE_ENGINE, LLMDEPLOY, isolated_env

from llmdeploy.client.aio import Client

NAME = "replica-kill"
BODY = {"model": "fake", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 2}


@dataclass
class Req:
    sent: float
    ended: float
    ok: bool
    why: str = ""


class Stream:
    """C clients sending back to back in a thread of their own (its own event loop)."""

    def __init__(self, url: str, clients: int) -> None:
        self.url, self.clients = url, clients
        self.done: list[Req] = []
        self.stop = threading.Event()
        self.thread = threading.Thread(target=lambda: asyncio.run(self._main()), daemon=True)

    async def _main(self) -> None:
        client = Client(self.url, timeout=30, connect_timeout=5)

        async def worker() -> None:
            while not self.stop.is_set():
                sent = time.perf_counter()
                try:
                    response = await client.request("POST", "/v1/chat/completions", BODY)
                    ok, why = response.status == 200, f"HTTP {response.status}"
                    if not ok:
                        why += f" {response.error[:80]}"
                except OSError as exc:
                    ok, why = False, f"{type(exc).__name__}: {exc}"[:100]
                self.done.append(Req(sent, time.perf_counter(), ok, "" if ok else why))

        try:
            await asyncio.gather(*(worker() for _ in range(self.clients)))
        finally:
            client.close()


def _record(env: dict[str, str]) -> dict:
    path = Path(env["LLMDEPLOY_STATE_DIR"]) / "deployments" / f"{NAME}.json"
    for _ in range(50):  # written by replace: a read never sees half a file, but retry
        try:
            return dict(json.loads(path.read_text()))
        except (OSError, ValueError):
            time.sleep(0.01)
    raise RuntimeError(f"no record at {path}")


def _member(env: dict[str, str], name: str) -> dict:
    return next(m for m in _record(env)["members"] if m["name"] == name)


def _profile(env: dict[str, str], backoff: float) -> Path:
    tmp = Path(env["BENCH_TMP"])
    data = {
        "name": NAME,
        "model": {"source": "local", "path": str(tmp)},
        "engine": {
            "type": "command",
            "command": [sys.executable, str(FAKE_ENGINE), "--port", "{port}", "--host", "{host}"],
        },
        "serving": {"port": "auto", "served_model_name": "fake"},
        "replicas": 3,
        "restart": {"policy": "on-failure", "max_restarts": 20, "backoff_s": backoff},
        "readiness": {"timeout_s": 60},
    }
    path = tmp / f"{NAME}.yaml"
    path.write_text(json.dumps(data))
    return path


def _wait(what: str, check: object, timeout: float = 60, step: float = 0.005) -> float:
    """Poll until check() is truthy; the perf_counter moment it was seen."""
    deadline = time.perf_counter() + timeout
    while time.perf_counter() < deadline:
        if check():  # type: ignore[operator]
            return time.perf_counter()
        time.sleep(step)
    raise RuntimeError(f"never: {what}")


def _router_view(metrics_port: int, worker: str) -> tuple[int | None, int]:
    """From the router's own Prometheus metrics: how many workers it has for the model,
    and how many of its attempts to reach `worker` failed so far (it retries those on
    another worker, so a client need not see them)."""
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{metrics_port}/metrics", timeout=5) as r:
            text = r.read().decode()
    except OSError:
        return None, 0
    pool, failures = 0.0, 0.0
    for line in text.splitlines():
        if line.startswith("smg_worker_pool_size{"):
            pool += float(line.rsplit(" ", 1)[1])
        elif line.startswith(f'smg_worker_cb_outcomes_total{{worker="{worker}"') and (
            'outcome="success"' not in line
        ):
            failures += float(line.rsplit(" ", 1)[1])
    return int(pool), int(failures)


def _metrics_port(env: dict[str, str]) -> int:
    """The router's Prometheus port (llmdeploy picks a free one), from the command line
    the deployment's log shows for it (SMG renames its process, so not /proc/PID/cmdline)."""
    log = Path(env["LLMDEPLOY_STATE_DIR"]) / "logs" / f"{NAME}.log"
    line = [x for x in log.read_text().splitlines() if "[router] starting:" in x][-1]
    words = line.split()
    return int(words[words.index("--prometheus-port") + 1])


def kill_once(
    env: dict[str, str], stream: Stream, victim: str, args: argparse.Namespace, metrics: int
) -> dict:
    member = _member(env, victim)
    old_pid = int(member["proc"]["pid"])
    worker = f"http://127.0.0.1:{member['port']}"
    log = Path(member["log"])
    offset = log.stat().st_size
    pool_before, router_failures = _router_view(metrics, worker)
    router_failures0 = router_failures
    start_index = len(stream.done)
    t_kill = time.perf_counter()
    os.kill(old_pid, signal.SIGKILL)

    # One loop watches everything, each moment stamped when first seen (≈10 ms apart):
    seen: dict[str, float] = {}
    last_router_failure, new_pid = None, None
    deadline = t_kill + 60.0
    while time.perf_counter() < deadline:
        now = time.perf_counter()
        m = _member(env, victim)
        if "removed" not in seen and m["phase"] != "ready":
            seen["removed"] = now  # the supervisor saw the exit: out of the router first
        pool, failures = _router_view(metrics, worker)
        if failures > router_failures:
            router_failures, last_router_failure = failures, now
        if "pool_drop" not in seen and pool is not None and pool_before and pool < pool_before:
            seen["pool_drop"] = now  # the router's own worker count went down
        pid = int(m["proc"]["pid"]) if m.get("proc") else None
        if "ready" not in seen and m["phase"] == "ready" and pid not in (None, old_pid):
            seen["ready"], new_pid = now, pid
        if new_pid is not None:
            with log.open("rb") as f:
                f.seek(offset)
                text = f.read().decode(errors="replace")
            _, found, after = text.partition(f"fake engine pid {new_pid} ")
            if found and "POST /v1/chat/completions" in after:  # only the router sends chat
                seen["served"] = now
                break
            deadline = min(deadline, seen["ready"] + args.serve_timeout)
        time.sleep(0.01)
    if "ready" not in seen:
        raise RuntimeError(f"{victim} was not ready again within 60 s")
    time.sleep(args.settle)
    window = [r for r in stream.done[start_index:] if r.ended >= t_kill]
    failed = [r for r in window if not r.ok]
    ok_latency = [r.ended - r.sent for r in window if r.ok]
    since = lambda key: None if key not in seen else seen[key] - t_kill  # noqa: E731
    return {
        "victim": victim,
        "requests": len(window),
        "failed": len(failed),
        "after_removal": sum(r.sent >= seen["removed"] for r in failed),
        "last_fail_ms": (max(r.ended for r in failed) - t_kill) * 1000 if failed else None,
        "router_failed": router_failures - router_failures0,
        "last_router_fail_ms": None
        if last_router_failure is None
        else (last_router_failure - t_kill) * 1000,
        "removed_ms": since("removed") * 1000,
        "pool_drop_s": since("pool_drop"),
        "ready_s": since("ready"),
        "served_s": since("served"),
        "pool": _router_view(metrics, worker)[0],
        "max_ms": max(ok_latency) * 1000,
        "p50_ms": statistics.median(ok_latency) * 1000,
        "errors": sorted({r.why for r in failed}),
    }


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--rounds", type=int, default=5, help="kills")
    p.add_argument("--clients", type=int, default=4)
    p.add_argument("--backoff", type=float, default=1.0, help="restart.backoff_s")
    p.add_argument("--settle", type=float, default=2.0, help="s of stream after each recovery")
    p.add_argument(
        "--serve-timeout", type=float, default=20.0,
        help="s to wait for the replacement to get a request through the router",
    )  # fmt: skip
    args = p.parse_args()
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # so `finally` takes it down

    env = isolated_env()
    up = subprocess.run(
        [*LLMDEPLOY, "up", str(_profile(env, args.backoff)), "--detach"],
        env=env, capture_output=True, text=True,
    )  # fmt: skip
    stream: Stream | None = None
    try:
        if up.returncode != 0:
            print(up.stdout + up.stderr, file=sys.stderr)
            return 1
        url = _record(env)["base_url"]
        print(
            f"3 fake-engine replicas behind the router at {url}; {args.clients} clients; "
            f"restart backoff {args.backoff:g} s; load average {os.getloadavg()[0]:.2f}"
        )
        metrics = _metrics_port(env)
        print(f"router's worker pool (its own gauge): {_router_view(metrics, '')[0]}")
        stream = Stream(url, args.clients)
        stream.thread.start()
        time.sleep(args.settle)
        baseline = list(stream.done)
        base_rps = len(baseline) / args.settle
        base_failed = sum(not r.ok for r in baseline)
        print(f"steady stream: {base_rps:,.0f} req/s, {base_failed} failed before any kill")
        results = []
        for k in range(args.rounds):
            victim = f"r{k % 3}"
            res = kill_once(env, stream, victim, args, metrics)
            results.append(res)
            if res["errors"]:
                print(f"  kill {k + 1} errors: {'; '.join(res['errors'])}")
        stream.stop.set()
        stream.thread.join(40)
        report(results, args, env)
    finally:
        if stream is not None:
            stream.stop.set()
            stream.thread.join(40)
        down = subprocess.run(
            [*LLMDEPLOY, "down", NAME], env=env, capture_output=True, text=True, timeout=120
        )
        print(f"down: {(down.stdout + down.stderr).strip()}")
    return 0


def report(results: list[dict], args: argparse.Namespace, env: dict[str, str]) -> None:
    print()

    def ms(v: float | None) -> str:
        return "-" if v is None else f"{v:.0f} ms"

    def sec(v: float | None) -> str:
        return "never" if v is None else f"{v:.2f} s"

    head = ("kill", "victim", "requests", "failed", "failed after", "last failed",
            "router-side", "last router-", "out of", "router pool", "replacement",
            "serves via", "pool", "latency")  # fmt: skip
    sub = ("", "", "", "", "removal", "(client)", "failures", "side failure", "router",
           "shrinks", "ready", "router", "after", "p50 / max")  # fmt: skip
    widths = [4, 6, 8, 6, 12, 11, 11, 12, 7, 11, 11, 10, 5, 16]
    print("  ".join(f"{h:>{w}}" for h, w in zip(head, widths, strict=True)))
    print("  ".join(f"{h:>{w}}" for h, w in zip(sub, widths, strict=True)))
    for i, r in enumerate(results, 1):
        row = (
            i, r["victim"], r["requests"], r["failed"], r["after_removal"],
            ms(r["last_fail_ms"]), r["router_failed"], ms(r["last_router_fail_ms"]),
            ms(r["removed_ms"]), sec(r["pool_drop_s"]), sec(r["ready_s"]), sec(r["served_s"]),
            r["pool"], f"{r['p50_ms']:.1f} / {r['max_ms']:.0f} ms",
        )  # fmt: skip
        print("  ".join(f"{v!s:>{w}}" for v, w in zip(row, widths, strict=True)))
    total = sum(r["requests"] for r in results)
    failed = sum(r["failed"] for r in results)
    after = sum(r["after_removal"] for r in results)
    share = failed / total * 100 if total else 0.0
    med = lambda key: statistics.median(r[key] for r in results)  # noqa: E731
    router_side = sum(r["router_failed"] for r in results)
    served = [r["served_s"] for r in results if r["served_s"] is not None]
    never = len(results) - len(served)
    serving = (
        f"serving through the router {statistics.median(served):.2f} s" if served else ""
    ) + (f"; NEVER served through the router after {never} of {len(results)} kills "
         f"(within {args.serve_timeout:g} s)" if never else "")  # fmt: skip
    print(
        f"summary: {failed} of {total} requests failed ({share:.2f} %; goal ≤ 1 %: "
        f"{'met' if share <= 1 else 'MISSED'}), {after} sent after the supervisor took the "
        f"replica out of the router (goal 0: {'met' if after == 0 else 'MISSED'}); "
        f"{router_side} attempts to a dead replica failed inside the router (it retried them); "
        f"median: out "
        f"of the router {med('removed_ms'):.0f} ms after the kill, replacement ready "
        f"{med('ready_s'):.2f} s (backoff {args.backoff:g} s included), {serving.lstrip('; ')}"
    )
    log = Path(env["LLMDEPLOY_STATE_DIR"]) / "logs" / f"{NAME}.log"
    notes = [
        line
        for line in log.read_text(errors="replace").splitlines()
        if "exited" in line or "sends requests" in line or "could not" in line
    ]
    for line in notes[-6:]:
        print(f"  log: {line}")


if __name__ == "__main__":
    raise SystemExit(main())
