"""The orphan matrix, on real processes: every way of stopping a deployment, at every
phase, with an engine whose descendants escape (setsid, double fork) — count what is
left. And how fast a SIGINT ends `up` while it downloads and while it waits for ready.

    stop:  ctrl-c | sigterm | sigkill (of a foreground `up`) | down (of a detached one)
    when:  ready (after ready) | start (a random instant from launch to ready)
           | download (a random instant while the model downloads from a loopback hub)

"Left" = processes whose argv names the trial's directory (read with `ps`, not with
llmdeploy's own process code) that are alive once the stop returned and the guardian
had its grace. Goal: 0 in every cell. Time from SIGINT to exit: goal median ≤ 1 s.

Run: .venv/bin/python benchmarks/orphan_matrix.py [N]     (N trials per cell, default 20)
"""

from __future__ import annotations

import json
import random
import signal
import statistics
import subprocess
import sys
import time
from pathlib import Path

from _common import FAKE_ENGINE, LLMDEPLOY, ROOT, isolated_env, wait_for

sys.path.insert(0, str(ROOT / "tests"))
from hub_helpers import Hub

ESCAPES = ["--spawn-grandchildren", "--escape-setsid", "--escape-double-fork"]
SIGNALS = {"ctrl-c": signal.SIGINT, "sigterm": signal.SIGTERM, "sigkill": signal.SIGKILL}


def _profile(env: dict[str, str], name: str, hub_model: bool) -> Path:
    tmp = Path(env["BENCH_TMP"])
    command = [sys.executable, str(FAKE_ENGINE), "--port", "{port}", "--ready-after", "0.5"]
    command += [*ESCAPES, "--pid-file", str(tmp / "escaped.pids"), "--say", str(tmp)]
    local = f"{{source: local, path: {tmp}}}"
    model = "{source: modelscope, id: acme/slow}" if hub_model else local
    path = tmp / f"{name}.yaml"
    path.write_text(
        f"name: {name}\nmodel: {model}\n"
        f"engine: {{type: command, command: {json.dumps(command)}}}\nserving: {{port: auto}}\n"
    )
    return path


def _as_from_a_terminal() -> None:
    """A shell's background job (`nohup … &`) starts with SIGINT ignored, which the child
    would inherit until it installs its handlers; a terminal's `up` has it at default."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def _left(tmp: Path) -> int:
    out = subprocess.run(["ps", "-ww", "-eo", "stat=,args="], capture_output=True, text=True)
    return sum(
        1
        for line in out.stdout.splitlines()
        if str(tmp) in line and "fake_hub" not in line and not line.startswith("Z")
    )


def _phase(env: dict[str, str], name: str) -> str | None:
    path = Path(env["LLMDEPLOY_STATE_DIR"]) / "deployments" / f"{name}.json"
    try:
        return str(json.loads(path.read_text())["phase"])
    except (OSError, ValueError, KeyError):
        return None


def _pulling(env: dict[str, str], name: str) -> bool:
    path = Path(env["LLMDEPLOY_STATE_DIR"]) / "deployments" / f"{name}.json"
    try:
        return bool(json.loads(path.read_text()).get("pull_done"))
    except (OSError, ValueError):
        return False


def trial(how: str, when: str, hub: Hub | None, rng: random.Random) -> tuple[int, float | None]:
    """One start and stop; (processes left, seconds from SIGINT/SIGTERM to exit)."""
    env = isolated_env()
    if hub is not None:
        env["MODELSCOPE_ENDPOINT"] = hub.url
        env["NO_PROXY"] = "127.0.0.1,localhost"
    name = "m"
    tmp = Path(env["BENCH_TMP"])
    profile = _profile(env, name, hub is not None)
    argv = [*LLMDEPLOY, "up", str(profile), "--grace", "3"]
    if how == "down":
        argv.append("--detach")
    proc = subprocess.Popen(
        argv,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
        preexec_fn=_as_from_a_terminal,
    )
    if when == "ready":
        wait_for(lambda: _phase(env, name) == "ready", 60)
    elif when == "download":
        wait_for(lambda: _pulling(env, name), 60)
        time.sleep(rng.uniform(0, 0.5))
    else:
        if how == "down":  # `down` can only stop a deployment that exists (lock taken)
            wait_for(lambda: _phase(env, name) is not None, 60)
        time.sleep(rng.uniform(0, 1.2))  # the instant under test
    took = None
    started = time.monotonic()
    if how == "down":
        subprocess.run([*LLMDEPLOY, "down", name], env=env, capture_output=True, timeout=60)
        proc.wait(60)
    else:
        proc.send_signal(SIGNALS[how])
        proc.wait(60)
        took = time.monotonic() - started if how != "sigkill" else None
    wait_for(lambda: _left(tmp) == 0, 3 + 5)  # a guardian after SIGKILL: grace + margin
    left = _left(tmp)
    subprocess.run([*LLMDEPLOY, "down", "--all"], env=env, capture_output=True, timeout=60)
    return left, took


def _hub(tmp: Path) -> Hub:
    root = tmp / "hubroot"
    model = root / "acme" / "slow" / "master"
    model.mkdir(parents=True)
    (model / "weights.bin").write_bytes(random.Random(1).randbytes(20_000_000))
    return Hub(root, tmp / "hub", ("--slow-bps", "1000000"))  # 20 s: never finishes here


def main() -> int:
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 20
    rng = random.Random(11)
    hub = _hub(Path(isolated_env()["BENCH_TMP"]))
    total, latencies = 0, {"download": [], "start": [], "ready": []}  # type: ignore[var-annotated]
    try:
        for when in ("ready", "start", "download"):
            for how in ("ctrl-c", "sigterm", "sigkill", "down"):
                source = hub if when == "download" else None
                results = [trial(how, when, source, rng) for _ in range(n)]
                left = sum(r[0] for r in results)
                total += left
                if how == "ctrl-c":
                    latencies[when] = [r[1] for r in results if r[1] is not None]
                print(f"{when:>8} {how:>8}: {n} trials, processes left: {left}", flush=True)
    finally:
        hub.stop()
    print(f"all {12 * n} trials: {total} processes left (goal 0)")
    for when, values in latencies.items():
        if values:
            print(
                f"SIGINT to exit during {when}: median {statistics.median(values):.2f} s, "
                f"max {max(values):.2f} s (n={len(values)}; includes stopping the engine)"
            )
    return 0 if total == 0 else 1


if __name__ == "__main__":
    raise SystemExit(main())
