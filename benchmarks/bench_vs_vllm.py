"""`llmdeploy bench` against vLLM's own `vllm bench serve`, at the same flags, on one real
vLLM deployment.

Brings up `tiny-qwen3-vllm-cpu` (vLLM's CPU build serving the tiny random Qwen3 of
scripts/build_tiny_qwen3.py) with its prefix cache off (see uncached_profile), then runs,
alternating which goes first each round, each run with prompts of a fresh seed:

    llmdeploy bench --url URL --model tiny-qwen3 --endpoint completions --input-len N
        --output-len M --ignore-eos --requests K --concurrency C
    vllm bench serve --base-url URL --endpoint /v1/completions --dataset-name random
        --random-input-len N --random-output-len M --ignore-eos --num-prompts K
        --max-concurrency C --request-rate inf

Both send /v1/completions, K random prompts of N tokens (ours made through the server's
POST /tokenize; vLLM's random dataset decodes random token ids with its local copy of the
tokenizer), M output tokens each, C requests in flight, no warm-up (vLLM 0.32 skips its
ready-check request unless --ready-check-timeout-sec; ours --warmup 0), streaming.

Printed per concurrency: the input tokens of a run as each tool reports them (both from
the server's usage) and as the server counted them (`vllm:prompt_tokens_total` in
/metrics, read before and after each run; with `vllm:prefix_cache_hits_total`, which
must stay 0) — goal: within 2 % of each other —; output
tok/s and median TTFT, each tool's median over rounds and the median of the per-round
ratios llmdeploy/vllm (a round's two runs are adjacent in time, so the ratio cancels slow
drifts) — goal 0.9-1.1.

On a shared machine other processes' load swings single runs several-fold, so each run
also records the CPU the rest of the machine used meanwhile ("others", in cores: busy
time from /proc/stat minus the engine's session and the tool's own process) and the
ratios are taken over the rounds whose two runs both saw less than --quiet cores of it
(all rounds, said so, when fewer than two were quiet). A round starts once others use
less than that (or after --wait-quiet seconds).

Needs `make vllm-env` (.venv-vllm). Run when the machine is otherwise idle:
    .venv/bin/python benchmarks/bench_vs_vllm.py [--requests 64] [--concurrency 1,8]
        [--rounds 3] [--input-len 256] [--output-len 64]
LLMDEPLOY_TINY_QWEN3=DIR reuses a built model; otherwise one is built (≈5 s).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import time
import urllib.request
from collections.abc import Callable
from functools import partial
from pathlib import Path

from _common import LLMDEPLOY, ROOT, isolated_env, tiny_qwen3

PROFILE = ROOT / "src" / "llmdeploy" / "profiles" / "tiny-qwen3-vllm-cpu.yaml"
NAME = "tiny-qwen3-vllm-cpu"
SERVED = "tiny-qwen3"
VLLM = ROOT / ".venv-vllm" / "bin" / "vllm"

Figures = dict[str, float]


def uncached_profile(env: dict[str, str]) -> Path:
    """The shipped profile with vLLM's prefix cache off. On the tiny model's 503-token
    byte-level vocabulary vLLM's random dataset repeats itself: its prompts are runs of
    consecutive token ids, and every run through the bytes 0x80-0xFF decodes to the same
    U+FFFD characters (64 prompts: 55 distinct first 128-token blocks, 8 identical) — with
    the cache on, 40-50 % of vLLM's prompt tokens at concurrency 8 were cache hits (ours 0),
    and the TTFT compared the datasets, not the tools."""
    text = PROFILE.read_text()
    old = "extra_args: [--enforce-eager]"
    assert old in text, f"{PROFILE}: no `{old}` to extend"
    path = Path(env["BENCH_TMP"]) / PROFILE.name
    path.write_text(text.replace(old, "extra_args: [--enforce-eager, --no-enable-prefix-caching]"))
    return path


def prepare(env: dict[str, str]) -> None:
    tmp = Path(env["BENCH_TMP"])
    model = tiny_qwen3(tmp)
    (tmp / "tmp").mkdir(exist_ok=True)
    env.update(
        LLMDEPLOY_TINY_QWEN3=model,
        LLMDEPLOY_VLLM=str(VLLM),
        VLLM_CACHE_ROOT=str(tmp / "vllm-cache"),
        TMPDIR=str(tmp / "tmp"),
        HF_HUB_OFFLINE="1",
    )


def served_counters(url: str) -> Figures:
    """The server's own counts (vLLM's /metrics, summed over label sets): prompt tokens,
    and prompt tokens its prefix cache served."""
    with urllib.request.urlopen(url + "/metrics", timeout=30) as response:
        text = response.read().decode()
    names = {"served_input": "vllm:prompt_tokens_total", "cached": "vllm:prefix_cache_hits_total"}
    return {
        key: sum(
            float(line.rsplit(" ", 1)[1])
            for line in text.splitlines()
            if line.startswith(name + "{") or line.startswith(name + " ")
        )
        for key, name in names.items()
    }


def ours(env: dict[str, str], url: str, args: argparse.Namespace, c: int, seed: int) -> Figures:
    out = Path(env["BENCH_TMP"]) / f"ours-{c}.json"
    _check(subprocess.run(
        [*LLMDEPLOY, "bench", "--url", url, "--model", SERVED, "--endpoint", "completions",
         "--input-len", str(args.input_len), "--output-len", str(args.output_len),
         "--ignore-eos", "--requests", str(args.requests), "--concurrency", str(c),
         "--seed", str(seed), "--json", str(out)],
        env=env, capture_output=True, text=True, timeout=1800,
    ))  # fmt: skip
    run = json.loads(out.read_text())["runs"][0]
    summary = run["summary"]
    return {
        "tok_s": summary["output_tok_per_s"],
        "ttft": summary["median_ttft_ms"],
        "input": summary["input_tokens"],
        "output": summary["output_tokens"],
        "build_s": run["prompts"]["seconds"],
        "calls": run["prompts"]["calls"],
    }


def theirs(env: dict[str, str], url: str, args: argparse.Namespace, c: int, seed: int) -> Figures:
    out = Path(env["BENCH_TMP"]) / f"vllm-{c}.json"
    _check(subprocess.run(
        [str(VLLM), "bench", "serve", "--backend", "openai", "--base-url", url,
         "--endpoint", "/v1/completions", "--model", env["LLMDEPLOY_TINY_QWEN3"],
         "--served-model-name", SERVED, "--dataset-name", "random",
         "--random-input-len", str(args.input_len), "--random-output-len", str(args.output_len),
         "--ignore-eos", "--num-prompts", str(args.requests), "--max-concurrency", str(c),
         "--request-rate", "inf", "--seed", str(seed), "--disable-tqdm",
         "--save-result", "--result-filename", str(out)],
        env=env, capture_output=True, text=True, timeout=1800,
    ))  # fmt: skip
    result = json.loads(out.read_text())
    return {
        "tok_s": result["output_throughput"],
        "ttft": result["median_ttft_ms"],
        "input": result["total_input_tokens"],
        "output": result["total_output_tokens"],
    }


def _check(done: subprocess.CompletedProcess[str]) -> None:
    if done.returncode != 0:
        raise SystemExit(f"{done.args[0]} failed ({done.returncode}):\n{done.stderr[-3000:]}")


HZ = os.sysconf("SC_CLK_TCK")


def machine_busy() -> float:
    """CPU seconds the whole machine spent busy (user, nice, system, irq, softirq, steal)."""
    with open("/proc/stat") as f:
        fields = [int(x) for x in f.readline().split()[1:9]]
    user, nice, system, _idle, _iowait, irq, softirq, steal = fields
    return (user + nice + system + irq + softirq + steal) / HZ


def session_cpu(session: int) -> float:
    """CPU seconds of the live processes of a session (the engine's)."""
    total = 0
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                fields = f.read().rpartition(")")[2].split()
        except OSError:
            continue
        if int(fields[3]) == session:
            total += int(fields[11]) + int(fields[12])
    return total / HZ


def children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def others_now(session: int, seconds: float = 2.0) -> float:
    """Cores the rest of the machine is using right now (the engine idles between runs)."""
    busy, engine = machine_busy(), session_cpu(session)
    time.sleep(seconds)
    return (machine_busy() - busy - (session_cpu(session) - engine)) / seconds


def wait_quiet(session: int, args: argparse.Namespace) -> None:
    """Start a round only once others use < --quiet cores, or after --wait-quiet s."""
    deadline = time.monotonic() + args.wait_quiet
    while time.monotonic() < deadline and others_now(session) >= args.quiet:
        pass


def measured(run: Callable[[], Figures], url: str, session: int) -> Figures:
    """One run, with the input tokens the server itself counted and
    served from its prefix cache meanwhile, and the CPU (in cores) that processes other than
    the engine and the tool used meanwhile."""
    before = served_counters(url)
    wall, busy, engine, tool = (
        time.monotonic(),
        machine_busy(),
        session_cpu(session),
        children_cpu(),
    )
    figures = run()
    ours = (session_cpu(session) - engine) + (children_cpu() - tool)
    figures["others"] = (machine_busy() - busy - ours) / (time.monotonic() - wall)
    after = served_counters(url)
    figures.update({key: after[key] - before[key] for key in after})
    return figures


def print_tokens(label: str, runs: list[Figures], expected: int) -> None:
    told = sorted({int(x["input"]) for x in runs})
    served = sorted({int(x["served_input"]) for x in runs})
    cached = sorted({int(x["cached"]) for x in runs})
    out = sorted({int(x["output"]) for x in runs})
    print(
        f"  {label:<10} input tokens: {told} reported, {served} counted by the server "
        f"(expected {expected}), {cached} from its prefix cache; output tokens {out}"
    )


def compare(env: dict[str, str], url: str, args: argparse.Namespace, session: int) -> bool:
    """Per level: input tokens, then each tool's median over rounds and the median (and
    range) of the per-round ratios. True if every goal was met."""
    n, m, k = args.input_len, args.output_len, args.requests
    print(f"{k} prompts of {n} tokens, {m} tokens out (ignore_eos), /v1/completions, streamed")
    met = True
    for c in args.concurrency:
        rounds: dict[str, list[Figures]] = {"ours": [], "vllm": []}
        for r in range(args.rounds):
            wait_quiet(session, args)
            # Fresh prompts every run (a seed of their own), as a user comparing runs would.
            seed = args.seed + 1000 * r + c
            order = [("ours", ours), ("vllm", theirs)]
            for tool, fn in order if r % 2 == 0 else order[::-1]:
                call = partial(fn, env, url, args, c, seed)
                rounds[tool].append(measured(call, url, session))
        pairs = list(zip(rounds["ours"], rounds["vllm"], strict=True))
        quiet = [(x, y) for x, y in pairs if max(x["others"], y["others"]) < args.quiet]
        print(f"\nconcurrency {c}, {args.rounds} rounds")
        for who in ("ours", "vllm"):
            print_tokens("llmdeploy" if who == "ours" else "vllm", rounds[who], k * n)
        build_s = statistics.median(x["build_s"] for x in rounds["ours"])
        calls = statistics.median(x["calls"] for x in rounds["ours"])
        print(f"  llmdeploy made its prompts in {build_s:.2f} s ({calls:.0f} tokenizer calls)")
        a_in = statistics.median(x["served_input"] for x in rounds["ours"])
        b_in = statistics.median(x["served_input"] for x in rounds["vllm"])
        gap = abs(a_in - b_in) / b_in
        met &= gap <= 0.02
        print(f"  input tokens llmdeploy/vllm: {a_in / b_in:.4f} (goal: within 2 %)")
        noise = " ".join(f"{x['others']:.2f}/{y['others']:.2f}" for x, y in pairs)
        print(f"  others' CPU per round (cores, llmdeploy/vllm run): {noise}")
        used = quiet if len(quiet) >= 2 else pairs
        which = f"{len(quiet)} quiet rounds (others < {args.quiet:g} cores)"
        print(f"  ratios over {which if used is quiet else f'all rounds: only {which}'}")
        head = f"  {'figure':<16}{'llmdeploy':>11}{'vllm':>11}{'ratio':>8}{'range':>14}"
        print(f"{head}   rounds used (llmdeploy/vllm)")
        for key, label in (("tok_s", "output tok/s"), ("ttft", "median TTFT ms")):
            a = statistics.median(x[key] for x, _ in used)
            b = statistics.median(y[key] for _, y in used)
            ratios = [x[key] / y[key] for x, y in used]
            spread = f"{min(ratios):.3f}-{max(ratios):.3f}"
            each = " ".join(f"{x[key]:.1f}/{y[key]:.1f}" for x, y in used)
            ratio = statistics.median(ratios)
            met &= 0.9 <= ratio <= 1.1
            print(f"  {label:<16}{a:>11.1f}{b:>11.1f}{ratio:>7.3f}x{spread:>14}   {each}")
    return met


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    p.add_argument("--requests", type=int, default=64)
    p.add_argument("--concurrency", type=lambda s: [int(x) for x in s.split(",")], default=[1, 8])
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--input-len", type=int, default=256, help="tokens per prompt")
    p.add_argument("--output-len", type=int, default=64)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument(
        "--quiet",
        type=float,
        default=0.3,
        help="a round is quiet below this many cores of others' CPU",
    )
    p.add_argument(
        "--wait-quiet", type=float, default=120, help="s to wait for a quiet machine per round"
    )
    args = p.parse_args()
    if not VLLM.exists():
        print(f"skipped: {VLLM} missing (make vllm-env)")
        return 0
    env = isolated_env()
    prepare(env)
    up = subprocess.run([*LLMDEPLOY, "up", str(uncached_profile(env)), "--detach"], env=env,
                        capture_output=True, text=True, timeout=900)  # fmt: skip
    try:
        if up.returncode != 0:
            print(up.stdout, up.stderr[-3000:])
            return 1
        state = Path(env["LLMDEPLOY_STATE_DIR"]) / "deployments" / f"{NAME}.json"
        deployment = json.loads(state.read_text())
        url, session = deployment["base_url"], int(deployment["engine_proc"]["pid"])
        print(f"load average before: {os.getloadavg()[0]:.2f}")
        met = compare(env, url, args, session)
        print(f"\ngoals {'met' if met else 'NOT met'}")
    finally:
        down = subprocess.run([*LLMDEPLOY, "down", NAME], env=env, capture_output=True,
                              text=True, timeout=300)  # fmt: skip
        print(down.stdout.strip() or down.stderr.strip())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
