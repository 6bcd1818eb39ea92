"""Supervision numbers on real processes (the fake engine):

1. how late "ready" is recorded after the engine's health first answers 200
   (goal: median ≤ 50 ms);
2. `down` of an engine that honours SIGTERM: all gone within grace + 1 s;
3. N repetitions each of Ctrl-C, SIGTERM, SIGKILL of a foreground `up`, and `down`
   of a detached one: processes left (goal: 0 in all).

Run: .venv/bin/python benchmarks/supervision.py [N]   (default 20)
"""

from __future__ import annotations

import json
import signal
import statistics
import subprocess
import sys
import time
from pathlib import Path

from _common import LLMDEPLOY, fake_profile, isolated_env, session_members, wait_for


def _record(env: dict[str, str], name: str) -> dict[str, object] | None:
    path = Path(env["LLMDEPLOY_STATE_DIR"]) / "deployments" / f"{name}.json"
    try:
        return dict(json.loads(path.read_text()))
    except (OSError, ValueError):
        return None


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
        session = int(str((_record(env, f"dn{i}") or {})["engine_pid"]))
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


def stop_once(how: str, i: int) -> int:
    """Start, stop one way, return how many processes of the engine's session are left."""
    env = isolated_env()
    name = f"{how}{i}"
    profile = fake_profile(env, name, "--spawn-grandchildren")
    if how == "down":
        subprocess.run(
            [*LLMDEPLOY, "up", str(profile), "--detach"], env=env, capture_output=True, check=True
        )
    else:
        proc = subprocess.Popen(
            [*LLMDEPLOY, "up", str(profile), "--grace", "3"],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )
        wait_for(lambda: (_record(env, name) or {}).get("phase") == "ready", 30)
    session = int(str((_record(env, name) or {})["engine_pid"]))
    if how == "down":
        subprocess.run([*LLMDEPLOY, "down", name], env=env, capture_output=True)
    else:
        proc.send_signal(
            {"ctrl-c": signal.SIGINT, "sigterm": signal.SIGTERM, "sigkill": signal.SIGKILL}[how]
        )
        proc.wait(timeout=30)
    # the guardian acts after a SIGKILL: give it grace + 1 s
    wait_for(lambda: session_members(session) == 0, 4)
    return session_members(session)


def main() -> int:
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 20
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
    total = 0
    for how in ("ctrl-c", "sigterm", "sigkill", "down"):
        left = [stop_once(how, i) for i in range(n)]
        total += sum(left)
        print(f"{how:>8}: {n} runs, processes left: {sum(left)}")
    print(f"all {4 * n} runs: {total} processes left (goal 0)")
    return 0 if total == 0 else 1


if __name__ == "__main__":
    raise SystemExit(main())
