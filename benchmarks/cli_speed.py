"""Wall time of the everyday CLI commands (goal: each ≤ 0.25 s, median of 5).

Run: make bench   (or .venv/bin/python benchmarks/cli_speed.py [runs])
"""

from __future__ import annotations

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


def main() -> int:
    runs = int(sys.argv[1]) if len(sys.argv) > 1 else 5
    exe = str(Path(sys.executable).parent / "llmdeploy")
    env = {**os.environ, "LLMDEPLOY_CACHE": tempfile.mkdtemp()}
    worst = 0.0
    for label, args in COMMANDS.items():
        subprocess.run([exe, *args], capture_output=True, check=True, env=env)  # warm the cache
        times = []
        for _ in range(runs):
            start = time.perf_counter()
            subprocess.run([exe, *args], capture_output=True, check=True, env=env)
            times.append(time.perf_counter() - start)
        median = statistics.median(times)
        worst = max(worst, median)
        print(
            f"llmdeploy {label:<10} median {median * 1000:6.0f} ms  "
            f"(min {min(times) * 1000:.0f}, max {max(times) * 1000:.0f}, n={runs})"
        )
    print(f"goal ≤ 250 ms: {'met' if worst <= 0.25 else 'MISSED'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
