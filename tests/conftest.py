from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PROFILES = ROOT / "src" / "llmdeploy" / "profiles"


def cli(
    *args: str, env: dict[str, str] | None = None, timeout: float = 60, cwd: Path | None = None
) -> subprocess.CompletedProcess[str]:
    """Run the real CLI in a fresh interpreter, as a user would."""
    return subprocess.run(
        [sys.executable, "-m", "llmdeploy", *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=timeout,
        cwd=cwd,
        stdin=subprocess.DEVNULL,
    )


@pytest.fixture
def isolated_env(tmp_path: Path) -> Iterator[dict[str, str]]:
    """An environment whose state and cache directories are private to the test."""
    env = dict(os.environ)
    env["LLMDEPLOY_STATE_DIR"] = str(tmp_path / "state")
    env["LLMDEPLOY_CACHE"] = str(tmp_path / "cache")
    env["HOME"] = str(tmp_path / "home")
    env.pop("PORT", None)
    yield env


def engine_python(kind: str) -> Path | None:
    """The python of an engine's own environment (`make vllm-env` / `make sglang-env`).

    Missing: the test is skipped — unless LLMDEPLOY_REQUIRE_ENGINES=1 (set by `make test`),
    where a missing engine environment is a failure, so CI cannot silently test less.
    """
    venv = Path(os.environ.get(f"LLMDEPLOY_{kind.upper()}_VENV", ROOT / f".venv-{kind}"))
    python = venv / "bin" / "python"
    if (venv / ".ready").exists() and python.exists():
        return python
    if os.environ.get("LLMDEPLOY_REQUIRE_ENGINES") == "1":
        pytest.fail(f"{venv} is missing: run `make {kind}-env`")
    pytest.skip(f"{venv} not built (make {kind}-env)")
    return None


INSTANT = Path(__file__).parent / "instant_server.py"


@pytest.fixture
def instant() -> Iterator[Callable[..., str]]:
    """Start tests/instant_server.py with the given switches; returns its base URL."""
    procs: list[subprocess.Popen[str]] = []

    def start(*switches: str) -> str:
        proc = subprocess.Popen(
            [sys.executable, str(INSTANT), "--port", "0", *switches],
            stdout=subprocess.PIPE,
            text=True,
        )
        procs.append(proc)
        assert proc.stdout is not None
        line = proc.stdout.readline()
        assert line.startswith("listening on"), line
        return "http://" + line.split()[-1]

    yield start
    for proc in procs:
        proc.terminate()
        proc.wait(10)
        if proc.stdout is not None:
            proc.stdout.close()
