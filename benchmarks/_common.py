"""Shared bits of the benchmarks: an isolated environment and the fake engine."""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
FAKE_ENGINE = ROOT / "tests" / "fake_engine.py"
# The tests' plain readers of the machine (sysview.py: ports, /proc) serve the benchmarks too.
sys.path.insert(0, str(ROOT / "tests"))
LLMDEPLOY = [sys.executable, "-m", "llmdeploy"]


def tiny_qwen3(tmp: Path) -> str:
    """The tiny random Qwen3 the vLLM benchmarks serve: LLMDEPLOY_TINY_QWEN3 if set, else
    one built into `tmp` (≈5 s) by the vLLM environment's Python."""
    model = os.environ.get("LLMDEPLOY_TINY_QWEN3")
    if not model:
        model = str(tmp / "tiny-qwen3")
        python = ROOT / ".venv-vllm" / "bin" / "python"
        build = [str(python), str(ROOT / "scripts" / "build_tiny_qwen3.py"), model]
        subprocess.run(build, check=True, capture_output=True, timeout=600)
    return model


def isolated_env() -> dict[str, str]:
    tmp = Path(tempfile.mkdtemp(prefix="llmdeploy-bench-"))
    env = dict(os.environ)
    env["LLMDEPLOY_STATE_DIR"] = str(tmp / "state")
    env["LLMDEPLOY_CACHE"] = str(tmp / "cache")
    env["BENCH_TMP"] = str(tmp)
    return env


def fake_profile(env: dict[str, str], name: str, *switches: str) -> Path:
    tmp = Path(env["BENCH_TMP"])
    path = tmp / f"{name}.yaml"
    args = ", ".join(f"'{a}'" for a in switches)
    path.write_text(
        f"name: {name}\nmodel: {{source: local, path: {tmp}}}\n"
        f"engine:\n  type: command\n  command: ['{sys.executable}', '{FAKE_ENGINE}', "
        f"--port, '{{port}}', {args}]\nserving: {{port: auto}}\n"
    )
    return path


def session_members(session: int) -> int:
    out = subprocess.run(["ps", "-eo", "sid=,stat="], capture_output=True, text=True).stdout
    return sum(
        1
        for line in out.splitlines()
        if int(line.split()[0]) == session and not line.split()[1].startswith("Z")
    )


def wait_for(predicate: object, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():  # type: ignore[operator]
            return True
        time.sleep(0.01)
    return False
