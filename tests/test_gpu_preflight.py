"""GPU preflight against a fake `nvidia-smi` (a real program first on PATH) and a
fake `vllm` (the fake engine), so the real vLLM argv and checks are exercised."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
from conftest import cli
from helpers import FAKE_ENGINE, session_members


def _bin(tmp_path: Path, free_mib: int | None) -> Path:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir(exist_ok=True)
    if free_mib is not None:
        smi = bin_dir / "nvidia-smi"
        smi.write_text(
            "#!/bin/sh\n"
            'case "$1" in\n'
            f'  --query-gpu=*) echo "0, 81920, {free_mib}"; echo "1, 81920, {free_mib}" ;;\n'
            f'  --query-compute-apps=*) cat "{bin_dir}/gpu-pids" 2>/dev/null || true ;;\n'
            "  *) ;;\n"
            "esac\n"
        )
        smi.chmod(0o755)
    vllm = bin_dir / "vllm"
    vllm.write_text(f'#!/bin/sh\nexec {sys.executable} {FAKE_ENGINE} "$@"\n')
    vllm.chmod(0o755)
    return bin_dir


def _profile(tmp_path: Path, gpus: str) -> Path:
    path = tmp_path / "gpu.yaml"
    path.write_text(
        f"name: gpu\nmodel: {{source: local, path: {tmp_path}}}\n"
        f"engine: {{type: vllm, executable: {tmp_path / 'bin' / 'vllm'}}}\n"
        f"serving: {{port: auto}}\nresources: {{gpus: {gpus}, memory_fraction: 0.9}}\n"
    )
    return path


def _env(env: dict[str, str], bin_dir: Path) -> dict[str, str]:
    # only our fake nvidia-smi (or none) on PATH, then the system's basics
    return {**env, "PATH": f"{bin_dir}:/usr/bin:/bin"}


def test_too_little_free_memory_is_refused(tmp_path: Path, isolated_env: dict[str, str]) -> None:
    bin_dir = _bin(tmp_path, free_mib=10_000)
    result = cli("up", str(_profile(tmp_path, "[0]")), env=_env(isolated_env, bin_dir))
    assert result.returncode == 4, result.stderr
    assert "GPU 0 has 9.8 GiB free of 80.0 GiB; memory_fraction 0.9 needs 72.0 GiB" in result.stderr
    assert "Traceback" not in result.stderr


def test_enough_memory_starts_on_the_chosen_gpus(
    tmp_path: Path, isolated_env: dict[str, str]
) -> None:
    bin_dir = _bin(tmp_path, free_mib=80_000)
    env = _env(isolated_env, bin_dir)
    result = cli("up", str(_profile(tmp_path, "[1, 0]")), "--detach", env=env)
    assert result.returncode == 0, result.stdout + result.stderr
    log = cli("logs", "gpu", "-n", "200", env=env).stdout
    assert "CUDA_VISIBLE_DEVICES=1,0" in log
    assert "'serve'" in log and "'--gpu-memory-utilization', '0.9'" in log
    rows = cli("status", "--json", env=env).stdout
    down = cli("down", "gpu", env=env)
    assert down.returncode == 0, down.stderr
    import json

    assert session_members(json.loads(rows)[0]["engine_pid"]) == []


@pytest.mark.parametrize(
    ("free", "gpus", "message"),
    [
        (80_000, "[3]", "GPU 3 does not exist (found [0, 1])"),
        (None, "[0]", "no NVIDIA GPU is visible"),
    ],
)
def test_missing_gpus_are_refused(
    tmp_path: Path, isolated_env: dict[str, str], free: int | None, gpus: str, message: str
) -> None:
    bin_dir = _bin(tmp_path, free_mib=free)
    result = cli("up", str(_profile(tmp_path, gpus)), env=_env(isolated_env, bin_dir))
    assert result.returncode == 4
    assert message in result.stderr


def test_skip_gpu_check(tmp_path: Path, isolated_env: dict[str, str]) -> None:
    bin_dir = _bin(tmp_path, free_mib=None)
    env = _env(isolated_env, bin_dir)
    profile = _profile(tmp_path, "[0]")
    result = cli("up", str(profile), "--detach", "--skip-gpu-check", env=env)
    assert result.returncode == 0, result.stderr
    assert cli("down", "--all", env=env).returncode == 0


def test_down_fails_while_the_gpu_still_lists_an_engine_process(
    tmp_path: Path, isolated_env: dict[str, str]
) -> None:
    """Gone from the process table is not enough: the GPU's own list must agree."""
    bin_dir = _bin(tmp_path, free_mib=80_000)
    env = _env(isolated_env, bin_dir)
    assert cli("up", str(_profile(tmp_path, "[0]")), "--detach", env=env).returncode == 0
    import json

    engine_pid = json.loads(cli("status", "--json", env=env).stdout)[0]["engine_pid"]
    (bin_dir / "gpu-pids").write_text(f"{engine_pid}\n")  # the driver has not let go yet
    down = cli("down", "gpu", env=env)
    assert down.returncode == 5
    assert f"{engine_pid} (still on a GPU)" in down.stderr
    assert session_members(engine_pid) == []  # the process itself is gone
