"""Supervision numbers on real processes (the fake engine):

1. how late "ready" is recorded after the engine's health first answers 200
   (goal: median ≤ 50 ms);
2. `down` of an engine that honours SIGTERM: all gone within grace + 1 s;
(The orphan matrix — every way of stopping, at every phase — is orphan_matrix.py.)

Run: .venv/bin/python benchmarks/supervision.py
"""

from __future__ import annotations

import json
import statistics
import subprocess
import time
from pathlib import Path

from _common import LLMDEPLOY, fake_profile, isolated_env, session_members, wait_for


def _record(env: dict[str, str], name: str) -> dict[str, object] | None:
    path = Path(env["LLMDEPLOY_STATE_DIR"]) / "deployments" / f"{name}.json"
    try:
        return dict(json.loads(path.read_text()))
    except (OSError, ValueError):
        return None


def _engine_pid(env: dict[str, str], name: str) -> int:
    engine = (_record(env, name) or {}).get("engine_proc")
    return int(engine["pid"]) if isinstance(engine, dict) else 0


def ready_latency(runs: int) -> list[float]:
    lateness = []
    for i in range(runs):
        env = isolated_env()
        stamp = Path(env["BENCH_TMP"]) / "first-200"
        profile = fake_profile(env, f"lat{i}", "--ready-after", "0.7", "--record-ready", str(stamp))
        subprocess.run(
            [*LLMDEPLOY, "up", str(profile), "--detach"], env=env, capture_output=True, check=True
        )
        record = _record(env, f"lat{i}")
        assert record is not None
        lateness.append(float(str(record["ready_at"])) - float(stamp.read_text()))
        subprocess.run([*LLMDEPLOY, "down", "--all"], env=env, capture_output=True, check=True)
    return lateness


def down_time(runs: int, grace: float) -> list[float]:
    took = []
    for i in range(runs):
        env = isolated_env()
        profile = fake_profile(env, f"dn{i}", "--spawn-grandchildren")
        subprocess.run(
            [*LLMDEPLOY, "up", str(profile), "--detach"], env=env, capture_output=True, check=True
        )
        session = _engine_pid(env, f"dn{i}")
        start = time.monotonic()
        subprocess.run(
            [*LLMDEPLOY, "down", f"dn{i}", "--grace", str(grace)],
            env=env,
            capture_output=True,
            check=True,
        )
        wait_for(lambda s=session: session_members(s) == 0, grace + 5)
        took.append(time.monotonic() - start)
    return took


def main() -> int:
    late = ready_latency(10)
    print(
        f"ready recorded after first health 200: median {statistics.median(late) * 1000:.1f} ms "
        f"(min {min(late) * 1000:.1f}, max {max(late) * 1000:.1f}, n={len(late)}; "
        "includes the 1-token probe request)"
    )
    grace = 5.0
    took = down_time(10, grace)
    print(
        f"down (engine honours SIGTERM, grace {grace:g} s): "
        f"median {statistics.median(took):.2f} s, "
        f"max {max(took):.2f} s (goal ≤ grace + 1 = {grace + 1:g} s)"
    )
    return 0

if __name__ == "__main__":
    raise SystemExit(main())
