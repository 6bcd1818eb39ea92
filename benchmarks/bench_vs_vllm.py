"""`llmdeploy bench` against vLLM's own `vllm bench serve`, on one real vLLM deployment.

Brings up `tiny-qwen3-vllm-cpu` (vLLM's CPU build serving the tiny random Qwen3 of
scripts/build_tiny_qwen3.py), then measures it with both tools on the same prompts (one
ShareGPT-style file, sent as-is to /v1/completions; vLLM's `custom` JSONL dataset would
need pandas, which its CPU environment lacks), the same lengths (`--ignore-eos`: every
request generates exactly OUTPUT_LEN tokens), the same closed loop (vLLM: `--request-rate
inf --max-concurrency C`) and the same one-request warm-up (vLLM's "initial single prompt
test run"; ours `--warmup 1`). Rounds alternate which tool goes first; the medians over
rounds are compared (and the per-round ratios). Goal: output token throughput and median
TTFT within ±5 % of vLLM's.

`--calibrate` then runs both tools once more against tests/instant_server.py, whose time to
first token is known (TTFT_MS): what each tool reports above it is that tool's own
overhead — the explanation of any TTFT gap between them at low latencies.

Needs `make vllm-env` (.venv-vllm). Run when the machine is otherwise idle:
    .venv/bin/python benchmarks/bench_vs_vllm.py [--requests 96] [--concurrency 1,8]
        [--rounds 3] [--input-len 64] [--output-len 128] [--calibrate]
LLMDEPLOY_TINY_QWEN3=DIR reuses a built model; otherwise one is built (≈30 s).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
from pathlib import Path

from _common import LLMDEPLOY, ROOT, isolated_env

from llmdeploy.bench import random_prompts

PROFILE = ROOT / "src" / "llmdeploy" / "profiles" / "tiny-qwen3-vllm-cpu.yaml"
NAME = "tiny-qwen3-vllm-cpu"
VLLM = ROOT / ".venv-vllm" / "bin" / "vllm"
TTFT_MS, ITL_MS = 5, 2  # the calibration server's delays


def prepare(env: dict[str, str]) -> None:
    tmp = Path(env["BENCH_TMP"])
    model = os.environ.get("LLMDEPLOY_TINY_QWEN3")
    if not model:
        model = str(tmp / "tiny-qwen3")
        build = [str(VLLM.parent / "python"), str(ROOT / "scripts" / "build_tiny_qwen3.py"), model]
        subprocess.run(build, check=True, capture_output=True, timeout=600)
    (tmp / "tmp").mkdir(exist_ok=True)
    env.update(
        LLMDEPLOY_TINY_QWEN3=model,
        LLMDEPLOY_VLLM=str(VLLM),
        VLLM_CACHE_ROOT=str(tmp / "vllm-cache"),
        TMPDIR=str(tmp / "tmp"),
        HF_HUB_OFFLINE="1",
    )


def ours(env: dict[str, str], url: str, prompts: Path, args: argparse.Namespace, c: int) -> dict:
    out = Path(env["BENCH_TMP"]) / f"ours-{c}.json"
    _check(subprocess.run(
        [*LLMDEPLOY, "bench", "--url", url, "--model", "tiny-qwen3", "--endpoint", "completions",
         "--prompts", str(prompts), "--requests", str(args.requests), "--concurrency", str(c),
         "--output-len", str(args.output_len), "--ignore-eos", "--warmup", "1",
         "--json", str(out)],
        env=env, capture_output=True, text=True, timeout=1800,
    ))  # fmt: skip
    summary = json.loads(out.read_text())["runs"][0]["summary"]
    return {
        "tok_s": summary["output_tok_per_s"],
        "ttft": summary["median_ttft_ms"],
        "tokens": summary["output_tokens"],
    }


def theirs(env: dict[str, str], url: str, prompts: Path, args: argparse.Namespace, c: int) -> dict:
    out = Path(env["BENCH_TMP"]) / f"vllm-{c}.json"
    model = env["LLMDEPLOY_TINY_QWEN3"]
    _check(subprocess.run(
        [str(VLLM), "bench", "serve", "--backend", "openai", "--base-url", url,
         "--endpoint", "/v1/completions", "--model", model, "--served-model-name", "tiny-qwen3",
         "--dataset-name", "sharegpt", "--dataset-path", str(prompts), "--disable-shuffle",
         "--sharegpt-output-len", str(args.output_len),
         "--num-prompts", str(args.requests), "--request-rate", "inf",
         "--max-concurrency", str(c), "--ignore-eos", "--disable-tqdm",
         "--save-result", "--result-filename", str(out)],
        env=env, capture_output=True, text=True, timeout=1800,
    ))  # fmt: skip
    result = json.loads(out.read_text())
    return {
        "tok_s": result["output_throughput"],
        "ttft": result["median_ttft_ms"],
        "tokens": result["total_output_tokens"],
    }


def _check(done: subprocess.CompletedProcess[str]) -> None:
    if done.returncode != 0:
        raise SystemExit(f"{done.args[0]} failed ({done.returncode}):\n{done.stderr[-3000:]}")


def compare(env: dict[str, str], url: str, prompts: Path, args: argparse.Namespace) -> None:
    """Per level: each tool's median over rounds, and the median (and range) of the per-round
    ratios — a round's two runs are adjacent in time, so their ratio cancels slow drifts."""
    print(f"{args.requests} requests, {args.input_len} words in, {args.output_len} tokens out")
    head = f"{'conc':>4}  {'figure':<16}{'llmdeploy':>11}{'vllm':>11}"
    print(f"{head}{'ratio':>8}{'range':>14}   rounds (llmdeploy/vllm)")
    for c in args.concurrency:
        rounds: dict[str, list[dict]] = {"ours": [], "vllm": []}
        for r in range(args.rounds):
            order = [("ours", ours), ("vllm", theirs)]
            for tool, fn in order if r % 2 == 0 else order[::-1]:
                rounds[tool].append(fn(env, url, prompts, args, c))
        pairs = list(zip(rounds["ours"], rounds["vllm"], strict=True))
        for key, label in (("tok_s", "output tok/s"), ("ttft", "median TTFT ms")):
            a = statistics.median(x[key] for x, _ in pairs)
            b = statistics.median(y[key] for _, y in pairs)
            ratios = [x[key] / y[key] for x, y in pairs]
            spread = f"{min(ratios):.3f}-{max(ratios):.3f}"
            each = " ".join(f"{x[key]:.1f}/{y[key]:.1f}" for x, y in pairs)
            ratio = statistics.median(ratios)
            print(f"{c:>4}  {label:<16}{a:>11.1f}{b:>11.1f}{ratio:>7.3f}x{spread:>14}   {each}")
        tokens = {t: {x["tokens"] for x in v} for t, v in rounds.items()}
        print(f"{'':>4}  output tokens per run: llmdeploy {tokens['ours']}, vllm {tokens['vllm']}")


def calibrate(env: dict[str, str], prompts: Path, args: argparse.Namespace) -> None:
    server = subprocess.Popen(
        [sys.executable, str(ROOT / "tests" / "instant_server.py"), "--port", "0",
         "--ttft-ms", str(TTFT_MS), "--itl-ms", str(ITL_MS)],
        stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        assert server.stdout is not None
        url = "http://" + server.stdout.readline().split()[-1]
        print(f"\ncalibration: instant server, TTFT {TTFT_MS} ms and ITL {ITL_MS} ms by design")
        compare(env, url, prompts, argparse.Namespace(**{**vars(args), "concurrency": [1]}))
    finally:
        server.terminate()
        server.wait(10)
        if server.stdout is not None:
            server.stdout.close()


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    p.add_argument("--requests", type=int, default=96)
    p.add_argument("--concurrency", type=lambda s: [int(x) for x in s.split(",")], default=[1, 8])
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--input-len", type=int, default=64, help="words per prompt")
    p.add_argument("--output-len", type=int, default=128)
    p.add_argument("--calibrate", action="store_true", help="also against a known-TTFT server")
    args = p.parse_args()
    if not VLLM.exists():
        print(f"skipped: {VLLM} missing (make vllm-env)")
        return 0
    env = isolated_env()
    prepare(env)
    prompts = Path(env["BENCH_TMP"]) / "prompts.json"  # ShareGPT-style: both tools read it
    conversations = [
        {"conversations": [{"from": "human", "value": p.text}, {"from": "gpt", "value": "-"}]}
        for p in random_prompts(args.requests, args.input_len, seed=0)
    ]
    prompts.write_text(json.dumps(conversations))
    up = subprocess.run([*LLMDEPLOY, "up", str(PROFILE), "--detach"], env=env,
                        capture_output=True, text=True, timeout=900)  # fmt: skip
    try:
        if up.returncode != 0:
            print(up.stdout, up.stderr[-3000:], file=sys.stderr)
            return 1
        state = Path(env["LLMDEPLOY_STATE_DIR"]) / "deployments" / f"{NAME}.json"
        url = json.loads(state.read_text())["base_url"]
        print(f"load average before: {os.getloadavg()[0]:.2f}")
        compare(env, url, prompts, args)
    finally:
        down = subprocess.run([*LLMDEPLOY, "down", NAME], env=env, capture_output=True,
                              text=True, timeout=300)  # fmt: skip
        print(down.stdout.strip() or down.stderr.strip())
    if args.calibrate:
        calibrate(env, prompts, args)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
