"""Two nodes of the tiny Qwen3 on a Ray cluster llmdeploy starts itself (vLLM's Ray
executor, tensor-parallel 2 over two "nodes" on loopback: two `llmdeploy up --node-rank`
process trees, each running `ray start --block` with explicit ports). vLLM's CPU platform
refuses Ray; the test-only platform plugin the vLLM env installs (LLMDEPLOY_TEST_CPU_RAY=1)
lets it. Ready, a chat through node 0, then SIGKILL of node 0's llmdeploy: every process of
both nodes — Ray's gcs_server, raylets, workers — gone, and nothing of theirs in /dev/shm."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
import yaml
from conftest import PROFILES, cli, engine_python
from helpers import record
from sysview import free_port_block

pytestmark = pytest.mark.engine


def _tagged(names: tuple[str, ...]) -> list[int]:
    """Live processes whose LLMDEPLOY_RUN tag names one of these deployments."""
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            environ = Path(f"/proc/{entry}/environ").read_bytes()
            state = Path(f"/proc/{entry}/stat").read_text().rpartition(")")[2].split()[0]
        except OSError:
            continue
        tags = [v for v in environ.split(b"\0") if v.startswith(b"LLMDEPLOY_RUN=")]
        if state != "Z" and any(f"/{n}/".encode() in t for t in tags for n in names):
            found.append(int(entry))
    return found


def _wait_gone(names: tuple[str, ...], timeout: float) -> list[int]:
    deadline = time.monotonic() + timeout
    while True:
        left = _tagged(names)
        if not left or time.monotonic() > deadline:
            return left
        time.sleep(0.2)


@pytest.fixture
def ray_nodes(isolated_env: dict[str, str], tiny_model: Path, tmp_path: Path):  # type: ignore[no-untyped-def]
    python = engine_python("vllm")
    assert python is not None
    data = yaml.safe_load((PROFILES / "tiny-qwen3-vllm-cpu.yaml").read_text())
    port = free_port_block(2 + 2 * 40)
    data.update(name="ray2", nodes=2)
    data["resources"]["tensor_parallel_size"] = 2
    data["distributed"] = {"backend": "ray", "head": "127.0.0.1", "port": port}
    data["env"].pop("VLLM_ENABLE_V1_MULTIPROCESSING", None)
    data["env"]["LLMDEPLOY_TEST_CPU_RAY"] = "1"
    profile = tmp_path / "ray2.yaml"
    profile.write_text(yaml.safe_dump(data))
    base = {
        **isolated_env,
        "LLMDEPLOY_TINY_QWEN3": str(tiny_model),
        "LLMDEPLOY_VLLM": str(python.parent / "vllm"),
    }
    envs = []
    for rank in (0, 1):
        own = tmp_path / f"node{rank}"
        own.mkdir()
        vllm_port = free_port_block(20)
        envs.append(
            {
                **base,
                "TMPDIR": str(own),
                "VLLM_CACHE_ROOT": str(own / "cache"),
                "VLLM_PORT": str(vllm_port),
                "VLLM_CPU_OMP_THREADS_BIND": str(rank),
            }
        )
    yield profile, envs
    for rank, name in ((0, "ray2"), (1, "ray2.node1")):
        cli("down", name, "--grace", "5", env=envs[rank], timeout=120)


def test_two_ray_nodes_serve_and_a_killed_head_takes_everything_down(ray_nodes) -> None:  # type: ignore[no-untyped-def]
    profile, envs = ray_nodes
    shm_before = set(os.listdir("/dev/shm"))
    head = subprocess.Popen(
        [sys.executable, "-m", "llmdeploy", "up", str(profile), "--detach"],
        env=envs[0], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )  # fmt: skip
    node1 = cli("up", str(profile), "--node-rank", "1", "--detach", env=envs[1], timeout=600)
    out, _ = head.communicate(timeout=600)
    assert head.returncode == 0, out[-3000:]
    assert node1.returncode == 0, node1.stdout + node1.stderr[-3000:]
    rec = record(envs[0], "ray2") or {}
    assert rec["phase"] == "ready"
    assert "[ray] 2 nodes in the cluster" in Path(str(rec["log"])).read_text()
    body = {"model": "tiny-qwen3", "messages": [{"role": "user", "content": "hi"}],
            "max_tokens": 4, "temperature": 0}  # fmt: skip
    request = urllib.request.Request(
        f"{rec['base_url']}/v1/chat/completions", json.dumps(body).encode(),
        {"content-type": "application/json"},
    )  # fmt: skip
    with urllib.request.urlopen(request, timeout=120) as answer:
        assert json.loads(answer.read())["usage"]["completion_tokens"] == 4
    ray_pids = _tagged(("ray2", "ray2.node1"))
    names = {Path(f"/proc/{p}/comm").read_text().strip() for p in ray_pids}
    assert {"gcs_server", "raylet"} <= names, names  # Ray's own processes carry our tag
    killed_at = time.monotonic()
    os.kill(int(rec["supervisor_pid"]), signal.SIGKILL)
    left = _wait_gone(("ray2", "ray2.node1"), timeout=90)
    took = time.monotonic() - killed_at
    assert left == [], [
        Path(f"/proc/{p}/comm").read_text() for p in left if Path(f"/proc/{p}").exists()
    ]
    print(f"SIGKILL of node 0's llmdeploy -> no process of either node after {took:.1f} s")
    # Each node's record says failed only once its stop is complete (/dev/shm included).
    # Wait for node 0's too: the guardian stops processes the tag scan above cannot see
    # (vLLM's EngineCore renames itself with setproctitle, which hides its environment).
    for env, name in ((envs[0], "ray2"), (envs[1], "ray2.node1")):
        deadline = time.monotonic() + 60
        while (record(env, name) or {}).get("phase") != "failed":
            assert time.monotonic() < deadline, record(env, name)
            time.sleep(0.2)
    assert "guardian stopped its processes" in str((record(envs[0], "ray2") or {}).get("reason"))
    assert "node 0 is gone" in str((record(envs[1], "ray2.node1") or {}).get("reason"))
    new = set(os.listdir("/dev/shm")) - shm_before
    assert not {n for n in new if n.startswith(("psm_", "plasma", "sem.mp"))}, new
