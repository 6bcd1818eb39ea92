"""Wall time of the everyday CLI commands (goal: `validate` and `plan` ≤ 0.2 s, median).

Run: make bench   (or .venv/bin/python benchmarks/cli_speed.py [--runs N] [--src DIR]...)

--src DIR measures the llmdeploy in DIR (a `src/` directory) instead of the installed one,
through `python -m llmdeploy`; give it twice to compare two checkouts run for run, e.g.
the commit before a change:
    git archive HEAD~1 | tar -x -C /tmp/before
    .venv/bin/python benchmarks/cli_speed.py --src /tmp/before/src --src src
Runs of the variants are interleaved, so a busy machine slows them alike. CPU time (user +
sys of the child) is shown too: it moves less than wall time when other work competes.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

PROFILE = Path(__file__).resolve().parent.parent / "profiles" / "qwen3-8b.yaml"
COMMANDS = {
    "--help": ["--help"],
    "validate": ["validate", str(PROFILE)],
    "plan": ["plan", str(PROFILE)],
}
GOAL_S = 0.2  # for validate and plan; --help is listed for reference


def _run(argv: list[str], env: dict[str, str]) -> tuple[float, float]:
    """(wall, cpu) seconds of one run; fails loudly if the command fails."""
    start = time.perf_counter()
    proc = subprocess.Popen(argv, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    assert proc.stderr is not None
    with proc.stderr:
        stderr = proc.stderr.read().decode()  # until the child exits: no pipe can fill up
    # wait4, not wait: it also returns the child's CPU time.
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - start
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode != 0:
        raise SystemExit(f"{' '.join(argv)} failed ({proc.returncode}): {stderr}")
    return wall, usage.ru_utime + usage.ru_stime


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("runs", nargs="?", type=int, default=None, help="(old spelling)")
    parser.add_argument("--runs", dest="runs_opt", type=int, default=11)
    parser.add_argument("--src", action="append", default=[], help="a src/ directory")
    args = parser.parse_args()
    runs = args.runs or args.runs_opt
    base_env = {**os.environ, "LLMDEPLOY_CACHE": tempfile.mkdtemp()}
    variants: dict[str, tuple[list[str], dict[str, str]]] = {}
    if not args.src:
        variants["installed"] = ([str(Path(sys.executable).parent / "llmdeploy")], base_env)
    for src in args.src:
        env = {**base_env, "PYTHONPATH": str(Path(src).resolve())}
        variants[src] = ([sys.executable, "-m", "llmdeploy"], env)

    missed = False
    for label, args_ in COMMANDS.items():
        samples: dict[str, list[tuple[float, float]]] = {name: [] for name in variants}
        for prefix, env in variants.values():
            _run([*prefix, *args_], env)  # warm the page cache and bytecode
        for _ in range(runs):
            for name, (prefix, env) in variants.items():
                samples[name].append(_run([*prefix, *args_], env))
        for name, timings in samples.items():
            walls = [w for w, _ in timings]
            median = statistics.median(walls)
            cpu = statistics.median(c for _, c in timings)
            if label != "--help" and median > GOAL_S:
                missed = True
            where = "" if len(variants) == 1 else f"  [{name}]"
            print(
                f"llmdeploy {label:<10} median {median * 1000:5.0f} ms  "
                f"(min {min(walls) * 1000:.0f}, max {max(walls) * 1000:.0f}; "
                f"cpu median {cpu * 1000:.0f} ms; n={runs}){where}"
            )
    print(f"goal ≤ {GOAL_S * 1000:.0f} ms for validate and plan: {'MISSED' if missed else 'met'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
