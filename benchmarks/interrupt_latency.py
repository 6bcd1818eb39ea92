"""From signal to exit: how long `llmdeploy smoke`, `bench` (a sweep) and `generate` take
to stop when told to, mid-request. The goal is ≤ 1 s.

Each run starts the real CLI against tests/instant_server.py answering after 2 s (so the
command is surely waiting on the network), waits until the server has a request, waits a
further random 0-300 ms (so the signal lands at varied moments), sends SIGINT, SIGTERM
or SIGHUP in turn, and times until the process has exited (a blocking waitpid: no
polling error). generate runs against a detached deployment of the same server.

Run: .venv/bin/python benchmarks/interrupt_latency.py [runs per command, default 10]
     [--load: two CPU-bound busy loops run beside it, on a 2-core machine the worst case]
"""

from __future__ import annotations

import json
import os
import random
import signal
import socket
import statistics
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path

from _common import LLMDEPLOY, ROOT, isolated_env

INSTANT = ROOT / "tests" / "instant_server.py"
SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)


def requests_seen(url: str) -> int:
    with urllib.request.urlopen(url + "/stats", timeout=5) as response:
        return int(json.load(response)["requests"])


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
    return port


def start_server(port: int) -> subprocess.Popen[str]:
    proc = subprocess.Popen(
        [sys.executable, str(INSTANT), "--port", str(port), "--ttft-ms", "2000"],
        stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    assert proc.stdout is not None and proc.stdout.readline().startswith("listening")
    return proc


def one(argv: list[str], url: str, signum: int, env: dict[str, str], rng: random.Random) -> float:
    """Seconds from `signum` to exit for one run; raises if the exit code is wrong."""
    before = requests_seen(url)
    proc = subprocess.Popen(
        argv, env=env, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    watchdog = threading.Timer(60, proc.kill)
    watchdog.start()
    try:
        deadline = time.monotonic() + 60
        while requests_seen(url) == before:
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"{argv[3]} sent no request: {proc.communicate()[1]}")
            time.sleep(0.005)
        time.sleep(rng.uniform(0, 0.3))  # the moment under test, varied on purpose
        start = time.perf_counter()
        proc.send_signal(signum)
        code = proc.wait()  # blocking waitpid: returns the moment the process is gone
        took = time.perf_counter() - start
    finally:
        watchdog.cancel()
    stderr = proc.stderr.read() if proc.stderr else ""
    if code != 128 + signum:
        raise RuntimeError(f"{argv[3]}: exit {code} after signal {signum}: {stderr}")
    return took


def deploy(env: dict[str, str], port: int) -> None:
    """A detached deployment `latency` of the instant server, for generate. --no-probe:
    its 1-token readiness request would wait 2 s too, past the probe's 1 s timeout."""
    tmp = Path(env["BENCH_TMP"])
    profile = tmp / "latency.yaml"
    profile.write_text(json.dumps({
        "name": "latency",
        "model": {"source": "local", "path": str(tmp)},
        "engine": {"type": "command", "command": [sys.executable, str(INSTANT), "--host",
                   "{host}", "--port", "{port}", "--ttft-ms", "2000"]},
        "serving": {"port": port, "served_model_name": "m"},
    }))  # fmt: skip
    subprocess.run([*LLMDEPLOY, "up", str(profile), "--detach", "--no-probe"], env=env,
                   check=True, capture_output=True, timeout=120)  # fmt: skip


def commands(env: dict[str, str], url: str, deployed: str) -> dict[str, list[str]]:
    tmp = Path(env["BENCH_TMP"])
    prompts = tmp / "prompts.jsonl"
    prompts.write_text("".join(json.dumps({"prompt": f"q {i}"}) + "\n" for i in range(500)))
    return {
        "smoke": [*LLMDEPLOY, "smoke", "--url", url, "--model", "m"],
        "bench": [*LLMDEPLOY, "bench", "--url", url, "--model", "m", "--concurrency", "1,4",
                  "--requests", "100", "--json", str(tmp / "bench.json")],
        "generate": [*LLMDEPLOY, "generate", "latency", "-i", str(prompts), "-o",
                     str(tmp / "out.jsonl"), "--concurrency", "4"],
    }  # fmt: skip


def main() -> int:
    args = [a for a in sys.argv[1:] if a != "--load"]
    runs = int(args[0]) if args else 10
    busy = [subprocess.Popen([sys.executable, "-c", "while True: pass"])
            for _ in range(2 if "--load" in sys.argv else 0)]  # fmt: skip
    env, rng = isolated_env(), random.Random(0)
    port, deployed = free_port(), free_port()
    server = start_server(port)
    try:
        deploy(env, deployed)
        argvs = commands(env, f"http://127.0.0.1:{port}", f"http://127.0.0.1:{deployed}")
        load = " with two busy loops beside it" if busy else ""
        print(f"signal → exit, mid-request, {runs} runs per command{load} ({os.cpu_count()} CPUs)")
        for name, argv in argvs.items():
            url = f"http://127.0.0.1:{deployed if name == 'generate' else port}"
            if name == "generate":
                (Path(env["BENCH_TMP"]) / "out.jsonl").unlink(missing_ok=True)
            times = [one(argv, url, SIGNALS[i % 3], env, rng) for i in range(runs)]
            print(f"  {name:9} median {statistics.median(times) * 1000:6.0f} ms   "
                  f"max {max(times) * 1000:6.0f} ms   (all exited 128+signum)")  # fmt: skip
    finally:
        subprocess.run([*LLMDEPLOY, "down", "latency"], env=env, capture_output=True)
        server.terminate()
        server.wait(10)
        for proc in busy:
            proc.kill()
            proc.wait()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
