"""A model already downloaded elsewhere is served in place (src/llmdeploy/hub/found.py):
placed by the REAL `modelscope.snapshot_download(id, cache_dir=X)` against the loopback hub
(tests/fake_hub.py), or laid out by hand as Hugging Face's cache; then `plan`, `pull` and `up`
run as real processes. The hub's request log tells whether a file was fetched; a listing of
the user's caches (with mtimes) before and after tells whether llmdeploy wrote into them."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from conftest import cli
from helpers import fake_profile, session_members
from hub_helpers import (
    TINY_FILES,
    Hub,
    Hubs,
    hf_layout,
    hub_env,
    place_tiny,
    serve_hf_tree,
    write_tiny,
)

FILES = TINY_FILES
COMMIT = "0123456789abcdef0123456789abcdef01234567"


@pytest.fixture(scope="module")
def hub_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_tiny(tmp_path_factory.mktemp("hub"), {"master": 11})


@pytest.fixture
def hubs(hub_root: Path, tmp_path: Path) -> Iterator[Callable[[], Hub]]:
    started = Hubs(hub_root, tmp_path)
    yield started.start
    started.stop()


def _file_gets(hub: Hub) -> list[dict[str, Any]]:
    return [r for r in hub.records() if "FilePath" in r["query"]]


def _listing(root: Path) -> dict[str, tuple[int, int]]:
    """Every entry under root with size and mtime: any write into it changes this."""
    out = {}
    for path in [root, *root.rglob("*")]:
        st = path.lstat()
        out[path.relative_to(root).as_posix()] = (st.st_size, st.st_mtime_ns)
    return out


def _profile(tmp_path: Path, model: dict[str, object], *, fake: bool = False) -> Path:
    if fake:  # a real server process that names the model path it was given in its argv
        own = tmp_path / "fake"
        own.mkdir(exist_ok=True)
        return fake_profile(own, "p", "--served-model-name", "model={model_path}",
                            extra={"model": model})  # fmt: skip
    path = tmp_path / "p.yaml"
    path.write_text(yaml.safe_dump({"name": "p", "model": model, "engine": "vllm",
                                    "serving": {"port": "auto"}}))  # fmt: skip
    return path


def _up_serves_from(profile: Path, env: dict[str, str], expected: Path) -> None:
    up = cli("up", str(profile), "--detach", "--no-probe", env=env, timeout=120)
    assert up.returncode == 0, up.stdout + up.stderr
    rows = json.loads(cli("status", "--json", env=env).stdout)
    log = cli("logs", "p", "-n", "200", env=env).stdout
    down = cli("down", "p", env=env)
    assert down.returncode == 0, down.stderr
    assert session_members(int(rows[0]["engine_pid"])) == []
    started = [line for line in log.splitlines() if "starting p at" in line]
    assert started and f"model={expected}" in started[-1], log


def test_snapshot_download_cache_dir_is_served_in_place(
    tmp_path: Path, isolated_env: dict[str, str], hubs: Callable[[], Hub]
) -> None:
    placer = hubs()
    user_cache = tmp_path / "user-cache"
    found = place_tiny(hub_env(isolated_env, placer), user_cache)
    before = _listing(user_cache)
    hub = hubs()
    env = hub_env(isolated_env, hub)
    model = {"id": "acme/tiny", "cache_dir": str(user_cache)}

    plan = cli("plan", str(_profile(tmp_path, model)), env=env)
    assert plan.returncode == 0, plan.stderr
    assert f"# model: {found} (found in model.cache_dir {user_cache}; unverified" in plan.stdout
    assert f"--model {found}" in plan.stdout or str(found) in plan.stdout.splitlines()[-1]
    assert hub.records() == []  # plan never asks the hub

    _up_serves_from(_profile(tmp_path, model, fake=True), env, found)
    pull = cli("pull", str(_profile(tmp_path, model)), env=env)
    assert pull.returncode == 0, pull.stderr
    assert f"p: {found} — found in model.cache_dir {user_cache}, 3 file(s) verified" in pull.stdout
    assert hub.records(), "the copy was never checked against the hub's listing"
    assert _file_gets(hub) == []  # not one file requested
    assert _listing(user_cache) == before  # nothing written into the user's cache
    assert not (Path(env["LLMDEPLOY_CACHE"]) / "modelscope").exists()  # and nothing copied


def test_modelscope_cache_is_found_and_verified_once(
    tmp_path: Path, isolated_env: dict[str, str], hubs: Callable[[], Hub]
) -> None:
    placer = hubs()
    ms_cache = tmp_path / "ms-cache"
    found = place_tiny(hub_env(isolated_env, placer), ms_cache)
    before = _listing(ms_cache)
    hub = hubs()
    env = {**hub_env(isolated_env, hub), "MODELSCOPE_CACHE": str(ms_cache)}
    profile = _profile(tmp_path, {"id": "acme/tiny"})

    first = cli("pull", str(profile), env=env)
    assert first.returncode == 0, first.stderr
    assert f"found in ModelScope cache (MODELSCOPE_CACHE={ms_cache})" in first.stdout
    assert "checking 3 file(s)" in first.stderr  # hashed once …
    second = cli("pull", str(profile), env=env)
    assert second.returncode == 0, second.stderr
    assert "checking" not in second.stderr  # … and not again: the sidecar remembers
    plan = cli("plan", str(profile), env=env)
    assert f"# model: {found} (found in ModelScope cache" in plan.stdout
    assert "verified against the hub)" in plan.stdout
    _up_serves_from(_profile(tmp_path, {"id": "acme/tiny"}, fake=True), env, found)
    assert _file_gets(hub) == []
    assert _listing(ms_cache) == before


@pytest.fixture
def hf_hub(hub_root: Path, tmp_path: Path) -> Iterator[tuple[str, Path]]:
    source = hub_root / "acme" / "tiny" / "master"
    with serve_hf_tree(source, tmp_path / "hf-hub", lfs_from=0) as served:
        yield served


def test_hugging_face_cache_is_found(
    tmp_path: Path, isolated_env: dict[str, str], hub_root: Path, hf_hub: tuple[str, Path]
) -> None:
    url, log = hf_hub
    hf_cache = tmp_path / "hf-cache"
    found = hf_layout(hub_root, hf_cache, COMMIT)
    before = _listing(hf_cache)
    env = {k: v for k, v in isolated_env.items() if not k.startswith("HF_")}
    env.update(HF_HUB_CACHE=str(hf_cache), HF_ENDPOINT=url, NO_PROXY="127.0.0.1,localhost")
    model = {"source": "huggingface", "id": "acme/tiny"}

    plan = cli("plan", str(_profile(tmp_path, model)), env=env)
    assert (
        f"# model: {found} (found in Hugging Face cache (HF_HUB_CACHE={hf_cache}); unverified"
        in plan.stdout
    )
    pull = cli("pull", str(_profile(tmp_path, model)), env=env)
    assert pull.returncode == 0, pull.stderr
    assert f"p: {found} — found in Hugging Face cache" in pull.stdout
    paths = [json.loads(line)["path"] for line in log.read_text().splitlines()]
    assert any(p.startswith("/api/models/acme/tiny/tree/main") for p in paths), paths
    assert not [p for p in paths if "/resolve/" in p], paths  # files come from /resolve/
    _up_serves_from(_profile(tmp_path, model, fake=True), env, found)
    assert _listing(hf_cache) == before


def test_corrupt_copy_is_not_used(
    tmp_path: Path, isolated_env: dict[str, str], hubs: Callable[[], Hub], hub_root: Path
) -> None:
    placer = hubs()
    ms_cache = tmp_path / "ms-cache"
    found = place_tiny(hub_env(isolated_env, placer), ms_cache)
    weights = found / "weights.bin"
    weights.write_bytes(bytes(b ^ 0xFF for b in weights.read_bytes()))  # same size, other bytes
    hub = hubs()
    env = {**hub_env(isolated_env, hub), "MODELSCOPE_CACHE": str(ms_cache)}
    own = Path(env["LLMDEPLOY_CACHE"]) / "modelscope" / "acme" / "tiny" / "master"

    # up was planned on the found copy; its pull rejects it, fetches a verified copy into
    # llmdeploy's cache, and the engine is started on that one (planned again after the pull)
    fake = _profile(tmp_path, {"id": "acme/tiny"}, fake=True)
    up = cli("up", str(fake), "--detach", "--no-probe", env=env, timeout=120)
    log = cli("logs", "p", "-n", "200", env=env).stdout
    rows = json.loads(cli("status", "--json", env=env).stdout)
    assert cli("down", "p", env=env).returncode == 0
    assert up.returncode == 0, up.stdout + up.stderr
    assert "weights.bin: sha256 differs from the hub's" in log
    started = [line for line in log.splitlines() if "starting p at" in line]
    assert started and f"model={own}" in started[-1], log
    assert session_members(int(rows[0]["engine_pid"])) == []
    assert (own / "weights.bin").read_bytes() == (
        hub_root / "acme" / "tiny" / "master" / "weights.bin"
    ).read_bytes()
    assert {r["query"]["FilePath"] for r in _file_gets(hub)} == set(FILES)


def test_copy_missing_a_file_is_not_used(
    tmp_path: Path, isolated_env: dict[str, str], hubs: Callable[[], Hub]
) -> None:
    placer = hubs()
    ms_cache = tmp_path / "ms-cache"
    found = place_tiny(hub_env(isolated_env, placer), ms_cache)
    (found / "sub" / "tokenizer.json").unlink()
    hub = hubs()
    env = {**hub_env(isolated_env, hub), "MODELSCOPE_CACHE": str(ms_cache)}

    pull = cli("pull", str(_profile(tmp_path, {"id": "acme/tiny"})), env=env)
    assert pull.returncode == 0, pull.stderr
    assert "sub/tokenizer.json is missing; downloading it into" in pull.stderr
    assert "fetched 3 file(s)" in pull.stdout
    assert "found in" not in pull.stdout
    plan = cli("plan", str(_profile(tmp_path, {"id": "acme/tiny"})), env=env)
    own = Path(env["LLMDEPLOY_CACHE"]) / "modelscope" / "acme" / "tiny" / "master"
    assert f"# model: {own}\n" in plan.stdout  # llmdeploy's own complete copy wins now
