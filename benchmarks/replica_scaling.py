"""Does a second replica add throughput? Output tokens/s of the tiny Qwen3 on
`transformers serve` with `replicas: 1` vs `replicas: 2` (behind the SMG router), on this
machine's cores.

Profile: src/llmdeploy/profiles/tiny-qwen3-transformers-cpu.yaml with `replicas` set
(1: the engine's own URL, as a user's profile would be; 2: the router's URL) and,
optionally, `env: {OMP_NUM_THREADS: "1"}` (each replica's torch then uses one intra-op
thread instead of one per core). Environment as tests/test_transformers_engine.py's
tf_env: LLMDEPLOY_TINY_QWEN3 (built by scripts/build_tiny_qwen3.py into a temp dir unless
set), LLMDEPLOY_TRANSFORMERS=.venv-vllm/bin/transformers, TMPDIR, a private
LLMDEPLOY_STATE_DIR.

Load: llmdeploy's bench (llmdeploy.bench.run, what `llmdeploy bench` runs), closed loop
at --concurrency (default 8) — enough to keep both replicas busy — streaming
/v1/completions, 32-word random prompts, --output-len tokens (default 64). transformers
serve refuses `ignore_eos` (HTTP 422), so the fixed length comes from its own
`generation_config` request field: the model's generation config plus `min_new_tokens`
(EOS suppressed until then); the table flags a run with any other length in usage.
One deployment at a time: up, 8 warm-up requests, measured run, down; the order of the
configurations alternates between rounds, the table shows medians over rounds. The cores
are shared with other users' jobs: each measured run starts once the machine is quiet
(--quiet) and is repeated (up to --attempts) while others used ≥ --max-others % of a core
during it; the "others" column shows what they took in the runs kept.

While each measured run goes, CPU is read from /proc: each replica's (and the router's,
the client's, and everything else on the machine: other users), and per thread: the
"threads/replica (busy)" column is each replica's thread count and, in parentheses, how
many of them used ≥ 10 % of a core. Ideal: 2 replicas = 2 x the output tokens/s of 1
(one core each); the CPU columns show what stands in the way on this machine.

Run: .venv/bin/python benchmarks/replica_scaling.py [--rounds 3] [--concurrency 8]
         [--requests 48] [--output-len 64] [--omp default,1] [--max-others 25]
Needs `make vllm-env` (.venv-vllm with transformers + accelerate). Nothing outlives it:
every deployment is taken down in `finally` (SIGTERM included).
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path

import yaml
from _common import LLMDEPLOY, ROOT, isolated_env

from llmdeploy.bench import LoadConfig, RequestParams, compute, random_prompts, run

PROFILE = ROOT / "src" / "llmdeploy" / "profiles" / "tiny-qwen3-transformers-cpu.yaml"
VENV = ROOT / ".venv-vllm"
MODEL = "tiny-qwen3"
CLK = os.sysconf("SC_CLK_TCK")


def prepare(env: dict[str, str]) -> None:
    tmp = Path(env["BENCH_TMP"])
    model = os.environ.get("LLMDEPLOY_TINY_QWEN3")
    if not model:
        model = str(tmp / "tiny-qwen3")
        build = [str(VENV / "bin" / "python"), str(ROOT / "scripts" / "build_tiny_qwen3.py"), model]
        subprocess.run(build, check=True, capture_output=True, timeout=600)
    (tmp / "tmp").mkdir(exist_ok=True)
    env.update(
        LLMDEPLOY_TINY_QWEN3=model,
        LLMDEPLOY_TRANSFORMERS=str(VENV / "bin" / "transformers"),
        TMPDIR=str(tmp / "tmp"),  # the launcher's alias cache goes here
        HF_HUB_OFFLINE="1",
    )


def profile(env: dict[str, str], name: str, replicas: int, omp: str) -> Path:
    data = yaml.safe_load(PROFILE.read_text())
    data.update(name=name, replicas=replicas)
    if omp != "default":
        data["env"] = {"OMP_NUM_THREADS": omp}
    path = Path(env["BENCH_TMP"]) / f"{name}.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def _record(env: dict[str, str], name: str) -> dict:
    path = Path(env["LLMDEPLOY_STATE_DIR"]) / "deployments" / f"{name}.json"
    return dict(json.loads(path.read_text()))


def _stat(path: str) -> list[str]:
    return Path(path).read_text().rsplit(")", 1)[1].split()


def _cpu(pid: int) -> float:
    f = _stat(f"/proc/{pid}/stat")
    return (int(f[11]) + int(f[12])) / CLK


def _threads(pid: int) -> dict[int, float]:
    """CPU seconds of every thread of a process."""
    out = {}
    for tid in os.listdir(f"/proc/{pid}/task"):
        try:
            f = _stat(f"/proc/{pid}/task/{tid}/stat")
        except OSError:
            continue
        out[int(tid)] = (int(f[11]) + int(f[12])) / CLK
    return out


def _machine_busy() -> float:
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


class CpuWatch:
    """CPU of the deployment's processes over a run, and what the rest of the machine used."""

    def __init__(self, pids: dict[str, int]) -> None:
        self.pids = pids
        self.peak_threads = {k: 0 for k in pids}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)

    def _sample(self) -> None:
        while not self._stop.wait(0.5):
            for k, pid in self.pids.items():
                n = int(_stat(f"/proc/{pid}/stat")[17])  # num_threads
                self.peak_threads[k] = max(self.peak_threads[k], n)

    def __enter__(self) -> CpuWatch:
        self.t0, self.machine0, self.client0 = (
            time.perf_counter(),
            _machine_busy(),
            time.process_time(),
        )
        self.cpu0 = {k: _cpu(p) for k, p in self.pids.items()}
        self.threads0 = {k: _threads(p) for k, p in self.pids.items()}
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        wall = time.perf_counter() - self.t0
        used = {k: _cpu(p) - self.cpu0[k] for k, p in self.pids.items()}
        used["client"] = time.process_time() - self.client0
        used["others"] = max(0.0, _machine_busy() - self.machine0 - sum(used.values()))
        self.percent = {k: v / wall * 100 for k, v in used.items()}
        # threads that used ≥ 10 % of a core over the run: the ones doing the work
        self.busy_threads = {}
        for k, pid in self.pids.items():
            now = _threads(pid)
            before = self.threads0[k]
            self.busy_threads[k] = sum(
                1 for tid, t in now.items() if (t - before.get(tid, 0.0)) / wall >= 0.10
            )


def measure(env: dict[str, str], name: str, replicas: int, omp: str, args: argparse.Namespace,
            gen_config: dict) -> dict:  # fmt: skip
    path = profile(env, name, replicas, omp)
    up = subprocess.run(
        [*LLMDEPLOY, "up", str(path), "--detach"], env=env, capture_output=True, text=True,
        timeout=900,
    )  # fmt: skip
    try:
        if up.returncode != 0:
            raise RuntimeError(f"up {name} failed:\n{up.stdout}{up.stderr[-3000:]}")
        rec = _record(env, name)
        url = rec["base_url"]
        if rec.get("members"):
            pids = {m["name"]: int(m["proc"]["pid"]) for m in rec["members"]}
        else:
            pids = {"r0": int(rec["engine_proc"]["pid"])}
        params = RequestParams(
            model=MODEL,
            endpoint="completions",
            max_tokens=args.output_len,
            extra_body={
                "generation_config": json.dumps({**gen_config, "min_new_tokens": args.output_len})
            },
        )
        prompts = random_prompts(args.requests, 32, seed=args.round_seed)
        warm = random_prompts(args.concurrency, 32, seed=10_000 + args.round_seed)
        run(url, params, warm, LoadConfig(args.concurrency, requests=args.concurrency))
        for attempt in range(1, args.attempts + 1):
            waited, cores = wait_quiet(args.quiet)
            with CpuWatch(pids) as watch:
                load = LoadConfig(args.concurrency, requests=args.requests)
                result = run(url, params, prompts, load)
            others = watch.percent["others"]
            if others < args.max_others or attempt == args.attempts:
                break
            print(f"  ({name}: others used {others:.0f} % of a core meanwhile: again)", flush=True)
        m = compute(result.records, result.duration)
        if m["failed"]:
            errors = {r.error for r in result.records if r.error}
            raise RuntimeError(f"{name}: {m['failed']} requests failed: {errors}")
        lengths = {r.output_tokens for r in result.records}
        replica_names = [k for k in pids if k != "router"]
        return {
            "tok_s": m["output_tok_per_s"],
            "req_s": m["req_per_s"],
            "ttft": m["median_ttft_ms"],
            "tpot": m["median_tpot_ms"],
            "lengths": lengths,
            "replica_cpu": [watch.percent[k] for k in replica_names],
            "router_cpu": watch.percent.get("router"),
            "client_cpu": watch.percent["client"],
            "others_cpu": watch.percent["others"],
            "threads": [watch.peak_threads[k] for k in replica_names],
            "busy_threads": [watch.busy_threads[k] for k in replica_names],
            "load": os.getloadavg()[0],
            "waited": waited,
            "quiet": cores,
            "attempts": attempt,
        }
    finally:
        down = subprocess.run(
            [*LLMDEPLOY, "down", name], env=env, capture_output=True, text=True, timeout=180
        )
        if down.returncode != 0:
            print(f"down {name}: {down.stdout}{down.stderr}", file=sys.stderr)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--concurrency", type=int, default=8)
    p.add_argument("--requests", type=int, default=48, help="measured requests per run")
    p.add_argument("--output-len", type=int, default=64)
    p.add_argument("--omp", default="default,1", help="OMP_NUM_THREADS settings to try")
    p.add_argument(
        "--quiet", type=float, default=0.25,
        help="before each run, wait (≤ 180 s) until the machine uses fewer cores than this",
    )  # fmt: skip
    p.add_argument(
        "--max-others", type=float, default=25.0,
        help="measure again (up to --attempts) if other processes used more %% of a core",
    )  # fmt: skip
    p.add_argument("--attempts", type=int, default=3)
    args = p.parse_args()
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # so `finally` takes it down

    env = isolated_env()
    prepare(env)
    gen_config = json.loads(
        (Path(env["LLMDEPLOY_TINY_QWEN3"]) / "generation_config.json").read_text()
    )
    gen_config.pop("transformers_version", None)
    configs = [(r, omp) for omp in args.omp.split(",") for r in (1, 2)]
    print(
        f"{os.cpu_count()} cores; tiny Qwen3 at {env['LLMDEPLOY_TINY_QWEN3']}; concurrency "
        f"{args.concurrency}, {args.requests} requests x {args.output_len} tokens per run; "
        f"{args.rounds} rounds of {len(configs)} configurations"
    )
    results: dict[tuple[int, str], list[dict]] = {c: [] for c in configs}
    for r in range(args.rounds):
        args.round_seed = r
        order = configs if r % 2 == 0 else configs[::-1]
        for replicas, omp in order:
            name = f"scale-{replicas}-omp{omp}"
            got = measure(env, name, replicas, omp, args, gen_config)
            results[(replicas, omp)].append(got)
            print(
                f"round {r + 1}: {replicas} replica(s), OMP_NUM_THREADS={omp}: "
                f"{got['tok_s']:6.1f} tok/s, replica CPU "
                f"{'+'.join(f'{x:.0f}' for x in got['replica_cpu'])} %, others "
                f"{got['others_cpu']:.0f} %, load {got['load']:.1f} (attempt {got['attempts']}, "
                f"waited {got['waited']:.0f} s for a quiet start)",
                flush=True,
            )
    report(results, args)
    return 0


def report(results: dict[tuple[int, str], list[dict]], args: argparse.Namespace) -> None:
    def med(rows: list[dict], key: str) -> float:
        return statistics.median(x[key] for x in rows)

    print()
    print(
        "replicas  OMP_NUM_THREADS  out tok/s (rounds)          req/s  TTFT p50  TPOT p50"
        "  CPU % per replica  router  client  others  threads/replica (busy)"
    )
    for (replicas, omp), rows in results.items():
        per_round = " ".join(f"{x['tok_s']:.0f}" for x in rows)
        cpu = "+".join(
            f"{statistics.median(x['replica_cpu'][i] for x in rows):.0f}" for i in range(replicas)
        )
        router = "-" if replicas == 1 else f"{med(rows, 'router_cpu'):.0f}"
        threads = ", ".join(
            f"{rows[0]['threads'][i]} ({statistics.median(x['busy_threads'][i] for x in rows):g})"
            for i in range(replicas)
        )
        lengths = set().union(*(x["lengths"] for x in rows))
        fixed = "" if lengths == {args.output_len} else f"  lengths {sorted(lengths)}!"
        print(
            f"{replicas:8}  {omp:>15}  {med(rows, 'tok_s'):9.1f} ({per_round:<14})"
            f"  {med(rows, 'req_s'):5.2f}  {med(rows, 'ttft'):6.0f} ms  {med(rows, 'tpot'):5.1f} ms"
            f"  {cpu:>17}  {router:>6}  {med(rows, 'client_cpu'):6.0f}  "
            f"{med(rows, 'others_cpu'):6.0f}  {threads}{fixed}"
        )
    parts = []
    for omp in args.omp.split(","):
        one, two = results.get((1, omp)), results.get((2, omp))
        if one and two:
            ratios = [b["tok_s"] / a["tok_s"] for a, b in zip(one, two, strict=True)]
            parts.append(
                f"OMP_NUM_THREADS={omp}: 2 replicas / 1 = "
                f"{med(two, 'tok_s') / med(one, 'tok_s'):.2f} "
                f"(per round {', '.join(f'{x:.2f}' for x in ratios)})"
            )
    best = max(results.items(), key=lambda kv: med(kv[1], "tok_s"))
    print(
        "summary: " + "; ".join(parts) + f"; best {med(best[1], 'tok_s'):.0f} tok/s with "
        f"{best[0][0]} replica(s), OMP_NUM_THREADS={best[0][1]}"
    )


if __name__ == "__main__":
    raise SystemExit(main())
