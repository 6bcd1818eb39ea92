"""Checks that refuse a launch before anything starts: the port, GPU memory, the model."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
from dataclasses import dataclass
from pathlib import Path

from llmdeploy.errors import PreflightError
from llmdeploy.profile.model import Profile

# vLLM's default --gpu-memory-utilization; it refuses to start without that much free.
VLLM_DEFAULT_FRACTION = 0.9


def check_port(host: str, port: int) -> None:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as sock:
        try:
            sock.bind((host, port))
            return
        except OSError as exc:
            reason = exc.strerror or str(exc)
    owner = port_owner(port)
    held = f" by {owner}" if owner else ""
    raise PreflightError(
        f"port {port} on {host} is not available ({reason}){held}",
        hint="stop that process, choose another serving.port, or use `port: auto`",
    )


def port_owner(port: int) -> str | None:
    """'pid 123 (python3)' for the process listening on `port`, from /proc."""
    inodes = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            with open(table) as handle:
                next(handle)
                for row in handle:
                    cols = row.split()
                    if int(cols[1].rsplit(":", 1)[1], 16) == port and cols[3] == "0A":
                        inodes.add(cols[9])
        except OSError:
            continue
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            for fd in os.listdir(f"/proc/{pid}/fd"):
                target = os.readlink(f"/proc/{pid}/fd/{fd}")
                if target.startswith("socket:[") and target[8:-1] in inodes:
                    return f"pid {pid} ({Path(f'/proc/{pid}/comm').read_text().strip()})"
        except OSError:
            continue
    return None


@dataclass(frozen=True)
class Gpu:
    index: int
    total_mib: int
    free_mib: int


def _nvidia_smi(query: str) -> str | None:
    """nvidia-smi's CSV answer to one query, or None where there is no nvidia-smi."""
    exe = shutil.which("nvidia-smi")
    if exe is None:
        return None
    argv = [exe, query, "--format=csv,noheader,nounits"]
    try:
        return subprocess.run(argv, capture_output=True, text=True, timeout=30, check=True).stdout
    except (OSError, subprocess.SubprocessError) as exc:
        raise PreflightError(f"nvidia-smi failed: {exc}") from None


def query_gpus() -> list[Gpu] | None:
    """GPUs as nvidia-smi reports them, or None where there is no nvidia-smi."""
    out = _nvidia_smi("--query-gpu=index,memory.total,memory.free")
    if out is None:
        return None
    gpus = []
    for line in out.strip().splitlines():
        index, total, free = (part.strip() for part in line.split(","))
        gpus.append(Gpu(int(index), int(float(total)), int(float(free))))
    return gpus


def check_gpus(profile: Profile, gpus: list[Gpu] | None) -> None:
    wanted = profile.resources.gpu_ids
    if wanted is None or profile.engine.type in ("llamacpp", "command"):
        return
    if gpus is None:
        raise PreflightError(
            f"the profile asks for GPU(s) {wanted} but no NVIDIA GPU is visible "
            "(nvidia-smi not found)",
            hint="run on a GPU machine, or pass --skip-gpu-check if the engine finds GPUs "
            "another way",
        )
    fraction = profile.resources.memory_fraction
    if fraction is None and profile.engine.type == "vllm":
        fraction = VLLM_DEFAULT_FRACTION
    by_index = {gpu.index: gpu for gpu in gpus}
    for index in wanted:
        gpu = by_index.get(index)
        if gpu is None:
            raise PreflightError(f"GPU {index} does not exist (found {sorted(by_index)})")
        need = (fraction or 0) * gpu.total_mib
        if gpu.free_mib < need:
            raise PreflightError(
                f"GPU {index} has {gpu.free_mib / 1024:.1f} GiB free of "
                f"{gpu.total_mib / 1024:.1f} GiB; memory_fraction {fraction:g} needs "
                f"{need / 1024:.1f} GiB free",
                hint="wait for the previous engine to release it, stop what uses it, "
                "or lower resources.memory_fraction",
            )


def gpu_pids() -> set[int] | None:
    """Pids of processes using any GPU, or None where nvidia-smi cannot tell."""
    try:
        out = _nvidia_smi("--query-compute-apps=pid")
    except PreflightError:
        return None
    if out is None:
        return None
    return {int(word) for word in out.split() if word.isdigit()}
