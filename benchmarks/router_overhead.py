"""What the router (SMG) in front of a deployment costs: one replica behind it vs the same
replica addressed directly.

The replica is tests/instant_server.py (answers from precomputed bytes, ≈0.1 ms per
request), deployed with `replicas: 1` and `router: {}` (so the deployment's URL is the
router's), through `llmdeploy up --detach` in a private LLMDEPLOY_STATE_DIR. "Direct" is
that same server process at its own loopback port (from the deployment's record). Load is
llmdeploy's own bench client (llmdeploy.bench.run, what `llmdeploy bench` runs):
non-streamed /v1/completions with 8-word prompts and max_tokens 1.

Measured, per round (rounds alternate which target goes first, to cancel drift):
  1. concurrency 1 (sequential requests): median end-to-end latency, direct and through
     the router; the difference is what the router adds per request;
  2. throughput (req/s) through the router ÷ direct, at concurrency 1 and 64;
  3. at concurrency 64, CPU used by the client, the server and the router (% of one core)
     and the router's CPU per request — on a 2-core machine the three share the cores.
The tables show the median over rounds (and the per-round spread). The cores are shared
with other users' jobs: a round starts once the machine is quiet (--quiet) and is
repeated (up to --attempts) while other processes used ≥ 25 % of a core during a
concurrency-64 run; the CPU table shows what they took.
Goals: ≤ 1 ms added per request at concurrency 1; throughput ratio ≥ 0.95.

--router-args passes SMG flags (the profile's router.extra_args) to see what they cost.
--server-delay-ms D makes the instant server wait D ms before each answer (a stand-in for
an engine that takes real time per request) to see the ratio against a non-instant server.

Run: .venv/bin/python benchmarks/router_overhead.py [--rounds 5] [--requests 1000]
         [--requests-64 4000] [--server-delay-ms 0] [--router-args "SMG FLAGS"] [--quiet 0.25]
Nothing outlives it: the deployment is taken down in `finally` (SIGTERM included).
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import statistics
import subprocess
import sys
import time
from pathlib import Path

from _common import LLMDEPLOY, ROOT, isolated_env

from llmdeploy.bench import LoadConfig, RequestParams, compute, random_prompts, run

INSTANT = ROOT / "tests" / "instant_server.py"
NAME = "router-overhead"
MODEL = "inst"
PARAMS = RequestParams(model=MODEL, endpoint="completions", stream=False, max_tokens=1)
PROMPTS = random_prompts(64, 8, seed=0)
CLK = os.sysconf("SC_CLK_TCK")
QUIET_OTHERS = 25  # % of a core: other users' processes below this left the cores to us


def _record(env: dict[str, str], name: str) -> dict:
    path = Path(env["LLMDEPLOY_STATE_DIR"]) / "deployments" / f"{name}.json"
    return dict(json.loads(path.read_text()))


def _cpu(pid: int) -> float:
    """CPU seconds (user + system, every thread) of a live process."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLK


def _profile(env: dict[str, str], delay_ms: float, router_args: list[str]) -> Path:
    tmp = Path(env["BENCH_TMP"])
    command = [sys.executable, str(INSTANT), "--port", "{port}", "--host", "{host}"]
    command += ["--model-name", MODEL, "--ttft-ms", str(delay_ms)]
    data = {
        "name": NAME,
        "model": {"source": "local", "path": str(tmp)},
        "engine": {"type": "command", "command": command},
        "serving": {"port": "auto", "served_model_name": MODEL},
        "replicas": 1,
        "router": {"extra_args": router_args},
        "readiness": {"timeout_s": 60},
    }
    path = tmp / f"{NAME}.yaml"
    path.write_text(json.dumps(data))  # JSON is YAML
    return path


def _machine_busy() -> float:
    """CPU seconds the whole machine has spent busy (all cores; /proc/stat)."""
    fields = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    return (sum(fields) - fields[3] - fields[4]) / CLK  # minus idle and iowait


def wait_quiet(limit: float = 0.25, longest: float = 180.0) -> tuple[float, float]:
    """Wait (at most `longest` s) until the machine's CPU use over one second is below
    `limit` cores — other users' jobs share these cores. Returns (seconds waited, the
    last reading in cores)."""
    start = time.perf_counter()
    while True:
        before = _machine_busy()
        time.sleep(1.0)
        cores = _machine_busy() - before
        waited = time.perf_counter() - start
        if cores < limit or waited >= longest:
            return waited, cores


def _measure(url: str, concurrency: int, requests: int, pids: dict[str, int]) -> dict:
    warm = LoadConfig(concurrency, requests=max(100, concurrency * 8))
    run(url, PARAMS, PROMPTS, warm)  # connections, caches: not measured
    cpu0 = {k: _cpu(p) for k, p in pids.items()}
    client0, machine0 = time.process_time(), _machine_busy()
    result = run(url, PARAMS, PROMPTS, LoadConfig(concurrency, requests=requests))
    wall = result.duration
    m = compute(result.records, wall)
    assert m["failed"] == 0, f"{m['failed']} failed requests at {url}"
    used = {k: _cpu(p) - cpu0[k] for k, p in pids.items()}
    used["client"] = time.process_time() - client0
    # What the rest of the machine (other users' processes) took meanwhile.
    used["others"] = max(0.0, _machine_busy() - machine0 - sum(used.values()))
    return {
        "rps": m["req_per_s"],
        "p50": m["median_e2el_ms"],
        "p99": m["p99_e2el_ms"],
        "cpu": {k: v / wall * 100 for k, v in used.items()},
        "router_us": used["router"] / requests * 1e6 if "router" in used else None,
    }


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--requests", type=int, default=1000, help="per run at concurrency 1")
    p.add_argument("--requests-64", type=int, default=4000, help="per run at concurrency 64")
    p.add_argument("--server-delay-ms", type=float, default=0.0)
    p.add_argument("--attempts", type=int, default=3, help="per round, while others were busy")
    p.add_argument("--router-args", default="", help="SMG flags (router.extra_args), one string")
    p.add_argument(
        "--quiet", type=float, default=0.25,
        help="before each round, wait (≤ 180 s) until the machine uses fewer cores than this",
    )  # fmt: skip
    args = p.parse_args()
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # so `finally` takes it down

    env = isolated_env()
    os.environ["LLMDEPLOY_STATE_DIR"] = env["LLMDEPLOY_STATE_DIR"]
    profile = _profile(env, args.server_delay_ms, args.router_args.split())
    up = subprocess.run(
        [*LLMDEPLOY, "up", str(profile), "--detach"], env=env, capture_output=True, text=True
    )
    try:
        if up.returncode != 0:
            print(up.stdout + up.stderr, file=sys.stderr)
            return 1
        rec = _record(env, NAME)
        members = {m["name"]: m for m in rec["members"]}
        router_url = rec["base_url"]
        direct_url = f"http://127.0.0.1:{members['r0']['port']}"
        server_pid = int(members["r0"]["proc"]["pid"])
        router_pid = int(members["router"]["proc"]["pid"])
        comm = Path(f"/proc/{router_pid}/comm").read_text().strip()
        print(
            f"instant server (pid {server_pid}, delay {args.server_delay_ms:g} ms) at "
            f"{direct_url}; router ({comm}, pid {router_pid}) at {router_url}"
        )
        print(
            f"{os.cpu_count()} cores; load average at start "
            f"{os.getloadavg()[0]:.2f}; {args.rounds} rounds"
        )
        targets = {
            "direct": (direct_url, {"server": server_pid}),
            "router": (router_url, {"server": server_pid, "router": router_pid}),
        }
        rounds: list[dict[str, dict[int, dict]]] = []
        for r in range(args.rounds):
            order = ["direct", "router"] if r % 2 == 0 else ["router", "direct"]
            got: dict[str, dict[int, dict]] = {"direct": {}, "router": {}}
            for attempt in range(1, args.attempts + 1):
                waited, _ = wait_quiet(args.quiet)
                for c, n in ((1, args.requests), (64, args.requests_64)):
                    for target in order:
                        url, pids = targets[target]
                        got[target][c] = _measure(url, c, n, pids)
                others = max(got[t][64]["cpu"]["others"] for t in got)
                if others < QUIET_OTHERS or attempt == args.attempts:
                    break
                print(f"  (round {r + 1}: others used {others:.0f} % of a core: again)")
            d, t = got["direct"], got["router"]
            print(
                f"round {r + 1}: c=1 p50 {d[1]['p50']:.3f} → {t[1]['p50']:.3f} ms "
                f"(+{t[1]['p50'] - d[1]['p50']:.3f}); req/s c=1 {d[1]['rps']:,.0f} → "
                f"{t[1]['rps']:,.0f}, c=64 {d[64]['rps']:,.0f} → {t[64]['rps']:,.0f} "
                f"(others used {d[64]['cpu']['others']:.0f}/{t[64]['cpu']['others']:.0f} % of a "
                f"core during c=64; waited {waited:.0f} s for a quiet start)",
                flush=True,
            )
            rounds.append(got)
        report(rounds, args)
    finally:
        down = subprocess.run(
            [*LLMDEPLOY, "down", NAME], env=env, capture_output=True, text=True, timeout=120
        )
        print(f"down: {(down.stdout + down.stderr).strip()}")
    return 0


def _med(values: list[float]) -> str:
    return f"{statistics.median(values):,.3f}"


def report(rounds: list[dict[str, dict[int, dict]]], args: argparse.Namespace) -> None:
    def col(target: str, c: int, key: str) -> list[float]:
        return [r[target][c][key] for r in rounds]

    added = [r["router"][1]["p50"] - r["direct"][1]["p50"] for r in rounds]
    ratio1 = [r["router"][1]["rps"] / r["direct"][1]["rps"] for r in rounds]
    ratio64 = [r["router"][64]["rps"] / r["direct"][64]["rps"] for r in rounds]
    print()
    print(f"median over {len(rounds)} rounds        direct      router   router/direct")
    for c in (1, 64):
        d, t = col("direct", c, "rps"), col("router", c, "rps")
        ratio = ratio1 if c == 1 else ratio64
        print(
            f"req/s, concurrency {c:<3}     {statistics.median(d):9,.0f}   "
            f"{statistics.median(t):9,.0f}   {statistics.median(ratio):8.3f}  "
            f"(rounds {min(ratio):.3f}-{max(ratio):.3f})"
        )
    for c in (1, 64):
        for key in ("p50", "p99"):
            d, t = col("direct", c, key), col("router", c, key)
            print(
                f"E2E {key} ms, concurrency {c:<3}{statistics.median(d):9.3f}   "
                f"{statistics.median(t):9.3f}   {statistics.median(t) - statistics.median(d):+8.3f}"
            )
    print()
    keys = ("client", "server", "router", "others")
    print("CPU at concurrency 64, % of one core (median)   " + "  ".join(f"{k:>7}" for k in keys))
    for target in ("direct", "router"):
        cpus = [r[target][64]["cpu"] for r in rounds]
        parts = {k: statistics.median(c[k] for c in cpus) if k in cpus[0] else None for k in keys}
        shown = "  ".join("      -" if v is None else f"{v:7.0f}" for v in parts.values())
        print(f"{target:<47}{shown}   total {sum(v or 0 for v in parts.values()):4.0f}")
    router_us = statistics.median(r["router"][64]["router_us"] for r in rounds)
    router_us1 = statistics.median(r["router"][1]["router_us"] for r in rounds)
    print(
        f"router CPU per request: {router_us1:.0f} µs at concurrency 1, "
        f"{router_us:.0f} µs at concurrency 64"
    )
    quiet = [
        r["router"][64]["rps"] / r["direct"][64]["rps"]
        for r in rounds
        if max(r["direct"][64]["cpu"]["others"], r["router"][64]["cpu"]["others"]) < QUIET_OTHERS
    ]
    if quiet:
        print(
            f"c=64 ratio in the {len(quiet)} round(s) where other processes used < "
            f"{QUIET_OTHERS} % of a core during both runs: median {statistics.median(quiet):.3f}"
            f" ({', '.join(f'{x:.3f}' for x in quiet)})"
        )
    a, r1, r64 = statistics.median(added), statistics.median(ratio1), statistics.median(ratio64)
    verdict = [
        f"added {a:.3f} ms ({'met' if a <= 1 else 'MISSED'} ≤ 1 ms)",
        f"throughput ratio {r1:.3f} at c=1, {r64:.3f} at c=64 "
        f"({'met' if min(r1, r64) >= 0.95 else 'MISSED'} ≥ 0.95)",
    ]
    delay = f", server delay {args.server_delay_ms:g} ms" if args.server_delay_ms else ""
    delay += f", router args {args.router_args!r}" if args.router_args else ""
    print(
        f"summary{delay}: router adds median {a * 1000:.0f} µs per request; " + "; ".join(verdict)
    )


if __name__ == "__main__":
    raise SystemExit(main())
