"""Hostile and broken caches for the reuse of models already downloaded (hub/found.py):
what an outside tester throws at it. Real `llmdeploy` processes, the real loopback hubs
(tests/fake_hub.py for ModelScope, a small tree-listing server for Hugging Face), copies
placed by the real `modelscope.snapshot_download`; then the cache is broken by hand.

Promises checked: a bad copy is never served (it is re-downloaded, or one line says why
not, naming the path); nothing in the user's cache is changed; no traceback; a hostile
file (FIFO, huge or binary ref, link loop) never hangs or crashes the command; the cache
a copy is used from is named."""

from __future__ import annotations

import json
import os
import resource
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import yaml
from conftest import cli
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
OLD_COMMIT = "fedcba9876543210fedcba9876543210fedcba98"
OWN = Path("modelscope") / "acme" / "tiny"


# --- fixtures and helpers ---------------------------------------------------------------------


@pytest.fixture(scope="module")
def hub_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """acme/tiny at two revisions: master, and v2 whose weights differ (same size)."""
    return write_tiny(tmp_path_factory.mktemp("hub"), {"master": 11, "v2": 12})


@pytest.fixture
def hubs(hub_root: Path, tmp_path: Path) -> Iterator[Callable[[], Hub]]:
    started = Hubs(hub_root, tmp_path)
    yield started.start
    started.stop()


@pytest.fixture
def placed(
    tmp_path: Path, isolated_env: dict[str, str], hubs: Callable[[], Hub]
) -> tuple[Path, Hub, dict[str, str]]:
    """A user's ModelScope cache filled by the real snapshot_download, a fresh hub that has
    seen no request, and an environment pointing MODELSCOPE_CACHE at that cache."""
    placer = hubs()
    ms_cache = tmp_path / "ms-cache"
    copy = place_tiny(hub_env(isolated_env, placer), ms_cache)
    hub = hubs()
    env = {**hub_env(isolated_env, hub), "MODELSCOPE_CACHE": str(ms_cache)}
    return copy, hub, env


def _profile(tmp_path: Path, model: dict[str, object], name: str = "p.yaml") -> Path:
    path = tmp_path / name
    path.write_text(yaml.safe_dump({"name": "p", "model": model, "engine": "vllm",
                                    "serving": {"port": "auto"}}))  # fmt: skip
    return path


def _listing(root: Path) -> dict[str, tuple[int, int, int]]:
    """Every entry under root (links not followed) with its type, size and mtime."""
    out = {}
    for path in [root, *root.rglob("*")]:
        st = path.lstat()
        out[path.relative_to(root).as_posix()] = (st.st_mode, st.st_size, st.st_mtime_ns)
    return out


def _file_gets(hub: Hub) -> list[str]:
    return [r["query"]["FilePath"] for r in hub.records() if "FilePath" in r["query"]]


def _clean(proc: subprocess.CompletedProcess[str]) -> None:
    assert "Traceback" not in proc.stderr + proc.stdout, proc.stderr


def _own(env: dict[str, str], revision: str = "master") -> Path:
    return Path(env["LLMDEPLOY_CACHE"]) / OWN / revision


def _hub_bytes(hub_root: Path, rel: str, revision: str = "master") -> bytes:
    return (hub_root / "acme" / "tiny" / revision / rel).read_bytes()


def _pulled_fresh(pull: subprocess.CompletedProcess[str], env: dict[str, str],
                  hub_root: Path, revision: str = "master") -> None:  # fmt: skip
    """The pull did not use the found copy: it fetched a verified one into our cache."""
    _clean(pull)
    assert pull.returncode == 0, pull.stderr
    assert "found in" not in pull.stdout, pull.stdout
    own = _own(env, revision)
    assert f"p: {own} — fetched" in pull.stdout, pull.stdout
    for rel in FILES:
        assert (own / rel).read_bytes() == _hub_bytes(hub_root, rel, revision)


# --- a broken copy in ModelScope's cache ------------------------------------------------------


def _truncate(p: Path) -> None:
    p.write_bytes(p.read_bytes()[:-1000])


def _flip(p: Path) -> None:
    p.write_bytes(bytes(b ^ 0x5A for b in p.read_bytes()))


def _dangling(p: Path) -> None:
    p.unlink()
    p.symlink_to(p.parent / "nowhere")


def _loop(p: Path) -> None:
    p.unlink()
    p.symlink_to(p.name)  # weights.bin -> weights.bin: ELOOP


def _outside(p: Path) -> None:
    # a link out of the cache to a file of the right size but other bytes
    other = p.parent.parent.parent.parent.parent.parent / "elsewhere.bin"
    other.write_bytes(bytes(len(p.read_bytes())))
    p.unlink()
    p.symlink_to(other)


def _directory(p: Path) -> None:
    p.unlink()
    (p / "inside").mkdir(parents=True)
    (p / "inside" / "x").write_bytes(b"x" * 10)


def _fifo(p: Path) -> None:
    p.unlink()
    os.mkfifo(p)


BREAKS = {
    "truncated": (_truncate, "weights.bin has 599000 bytes, the hub lists 600000"),
    "same-size-other-bytes": (_flip, "weights.bin: sha256 differs from the hub's"),
    "dangling-link": (_dangling, "weights.bin is missing"),
    "link-loop": (_loop, "weights.bin is missing"),
    "link-out-of-the-cache": (_outside, "weights.bin: sha256 differs from the hub's"),
    "directory": (_directory, "weights.bin is not a regular file"),
    "fifo": (_fifo, "weights.bin is not a regular file"),
}


@pytest.mark.parametrize("kind", sorted(BREAKS))
def test_broken_weight_file_is_never_served(
    kind: str, tmp_path: Path, placed: tuple[Path, Hub, dict[str, str]], hub_root: Path
) -> None:
    copy, hub, env = placed
    breaker, why = BREAKS[kind]
    breaker(copy / "weights.bin")
    ms_cache = Path(env["MODELSCOPE_CACHE"])
    before = _listing(ms_cache)
    profile = _profile(tmp_path, {"id": "acme/tiny"})

    plan = cli("plan", str(profile), env=env, timeout=30)  # a FIFO must not hang it
    _clean(plan)
    assert plan.returncode == 0, plan.stderr
    pull = cli("pull", str(profile), env=env, timeout=60)
    _pulled_fresh(pull, env, hub_root)
    # one line says which copy was refused and why, naming its path
    refusal = [line for line in pull.stderr.splitlines() if "not using the copy" in line]
    assert len(refusal) == 1 and str(copy) in refusal[0] and why in refusal[0], pull.stderr
    assert sorted(_file_gets(hub)) == sorted(FILES)
    assert _listing(ms_cache) == before  # the user's cache: not repaired, not removed
    again = cli("plan", str(profile), env=env, timeout=30)
    assert f"# model: {_own(env)}\n" in again.stdout, again.stdout


def test_fifo_among_the_files_does_not_hang_the_offline_look(
    tmp_path: Path, placed: tuple[Path, Hub, dict[str, str]]
) -> None:
    """A FIFO as the file the engine serves (model.path): the copy is not complete."""
    copy, hub, env = placed
    _fifo(copy / "weights.bin")
    profile = _profile(tmp_path, {"id": "acme/tiny", "path": "weights.bin"})
    plan = cli("plan", str(profile), env=env, timeout=30)
    _clean(plan)
    assert plan.returncode == 0 and "found in" not in plan.stdout, plan.stdout
    assert hub.records() == []


# --- revisions ----------------------------------------------------------------------------------


def test_pinned_revision_is_not_served_from_a_copy_of_another(
    tmp_path: Path, isolated_env: dict[str, str], hubs: Callable[[], Hub], hub_root: Path
) -> None:
    """A copy of master in the pre-1.38 layout (no revision on disk) is found for a profile
    pinned to v2 — and refused once the hub's v2 listing is compared, then v2 is fetched."""
    placer = hubs()
    ms_cache = tmp_path / "ms-cache"
    placed = place_tiny(hub_env(isolated_env, placer), ms_cache)
    legacy = ms_cache / "models" / "acme" / "tiny"
    legacy.parent.mkdir(parents=True)
    placed.rename(legacy)  # as modelscope <= 1.37 left it
    before = _listing(ms_cache)
    hub = hubs()
    env = {**hub_env(isolated_env, hub), "MODELSCOPE_CACHE": str(ms_cache)}
    profile = _profile(tmp_path, {"id": "acme/tiny", "revision": "v2"})

    plan = cli("plan", str(profile), env=env)
    assert f"# model: {legacy} (found in ModelScope cache" in plan.stdout  # unverified
    pull = cli("pull", str(profile), env=env)
    _pulled_fresh(pull, env, hub_root, "v2")
    assert "sha256 differs" in pull.stderr
    assert _listing(ms_cache) == before

    # and the same copy is used in place for master, where it is the right one
    master = _profile(tmp_path, {"id": "acme/tiny"}, "master.yaml")
    pull = cli("pull", str(master), env=env)
    _clean(pull)
    assert f"p: {legacy} — found in ModelScope cache" in pull.stdout, pull.stdout + pull.stderr


def test_new_layout_of_another_revision_is_not_found(
    tmp_path: Path, placed: tuple[Path, Hub, dict[str, str]]
) -> None:
    copy, _hub, env = placed
    plan = cli("plan", str(_profile(tmp_path, {"id": "acme/tiny", "revision": "v2"})), env=env)
    assert plan.returncode == 0 and "found in" not in plan.stdout, plan.stdout
    assert str(copy) not in plan.stdout


# --- the caches themselves: where the environment points -----------------------------------------


@pytest.mark.parametrize("variable", ["MODELSCOPE_CACHE", "HF_HUB_CACHE", "HF_HOME"])
@pytest.mark.parametrize("kind", ["file", "missing", "fifo"])
def test_cache_variable_pointing_at_nonsense(
    variable: str, kind: str, tmp_path: Path, isolated_env: dict[str, str]
) -> None:
    target = tmp_path / "odd"
    if kind == "file":
        target.write_text("not a directory")
    elif kind == "fifo":
        os.mkfifo(target)
    env = {k: v for k, v in isolated_env.items() if not k.startswith(("MODELSCOPE_", "HF_"))}
    env[variable] = str(target)
    source = "modelscope" if variable.startswith("MODELSCOPE") else "huggingface"
    plan = cli("plan", str(_profile(tmp_path, {"source": source, "id": "acme/tiny"})), env=env,
               timeout=30)  # fmt: skip
    _clean(plan)
    assert plan.returncode == 0, plan.stderr
    assert "found in" not in plan.stdout


def test_relative_cache_variable_names_an_absolute_path(
    tmp_path: Path, placed: tuple[Path, Hub, dict[str, str]]
) -> None:
    """MODELSCOPE_CACHE=ms-cache (relative, as a user may export it) is the directory
    relative to where the command runs; the engine, started elsewhere, gets it absolute."""
    copy, hub, env = placed
    env = {**env, "MODELSCOPE_CACHE": "ms-cache"}
    profile = _profile(tmp_path, {"id": "acme/tiny"})
    plan = cli("plan", str(profile), env=env, cwd=tmp_path)
    _clean(plan)
    assert f"# model: {copy} (found in ModelScope cache (MODELSCOPE_CACHE=ms-cache)" in (
        plan.stdout
    ), plan.stdout
    pull = cli("pull", str(profile), env=env, cwd=tmp_path)
    assert f"p: {copy} — found in ModelScope cache" in pull.stdout, pull.stdout + pull.stderr
    # verified from one directory, still verified (same sidecar) from another
    plan = cli("plan", str(profile), env={**env, "MODELSCOPE_CACHE": str(copy.parents[3])})
    assert "verified against the hub)" in plan.stdout, plan.stdout
    assert _file_gets(hub) == []


# --- two caches -----------------------------------------------------------------------------------


def test_both_caches_hold_it_the_profiles_cache_dir_wins_and_is_named(
    tmp_path: Path, isolated_env: dict[str, str], hubs: Callable[[], Hub]
) -> None:
    placer = hubs()
    first = place_tiny(hub_env(isolated_env, placer), tmp_path / "user-cache")
    place_tiny(hub_env(isolated_env, placer), tmp_path / "ms-cache")
    hub = hubs()
    env = {**hub_env(isolated_env, hub), "MODELSCOPE_CACHE": str(tmp_path / "ms-cache")}
    profile = _profile(tmp_path, {"id": "acme/tiny", "cache_dir": str(tmp_path / "user-cache")})
    plan = cli("plan", str(profile), env=env)
    assert f"# model: {first} (found in model.cache_dir {tmp_path / 'user-cache'};" in plan.stdout
    pull = cli("pull", str(profile), env=env)
    assert f"p: {first} — found in model.cache_dir" in pull.stdout, pull.stdout + pull.stderr
    assert _file_gets(hub) == []


def test_a_bad_first_copy_falls_back_to_a_good_second_one_not_to_a_download(
    tmp_path: Path, isolated_env: dict[str, str], hubs: Callable[[], Hub]
) -> None:
    placer = hubs()
    bad = place_tiny(hub_env(isolated_env, placer), tmp_path / "user-cache")
    good = place_tiny(hub_env(isolated_env, placer), tmp_path / "ms-cache")
    _flip(bad / "weights.bin")
    hub = hubs()
    env = {**hub_env(isolated_env, hub), "MODELSCOPE_CACHE": str(tmp_path / "ms-cache")}
    profile = _profile(tmp_path, {"id": "acme/tiny", "cache_dir": str(tmp_path / "user-cache")})

    pull = cli("pull", str(profile), env=env)
    _clean(pull)
    assert pull.returncode == 0, pull.stderr
    assert "not using the copy of acme/tiny in model.cache_dir" in pull.stderr, pull.stderr
    assert f"p: {good} — found in ModelScope cache (MODELSCOPE_CACHE=" in pull.stdout, (
        pull.stdout + pull.stderr
    )
    assert _file_gets(hub) == []  # the second copy is used: nothing downloaded
    plan = cli("plan", str(profile), env=env)
    assert f"# model: {good} (found in ModelScope cache" in plan.stdout, plan.stdout
    assert "verified against the hub)" in plan.stdout


# --- a copy verified before, changed after -----------------------------------------------------


@pytest.mark.parametrize("keep_mtime", [False, True], ids=["touched", "mtime-restored"])
def test_copy_changed_after_it_was_verified_is_checked_again(
    keep_mtime: bool, tmp_path: Path, placed: tuple[Path, Hub, dict[str, str]], hub_root: Path
) -> None:
    """Same size, other bytes, written after the sidecar remembered the copy as verified —
    also when the writer puts the old mtime back (cp -p, rsync -t, curl -R do)."""
    copy, _hub, env = placed
    profile = _profile(tmp_path, {"id": "acme/tiny"})
    first = cli("pull", str(profile), env=env)
    assert "found in ModelScope cache" in first.stdout, first.stdout + first.stderr
    weights = copy / "weights.bin"
    st = weights.stat()
    _flip(weights)
    if keep_mtime:
        os.utime(weights, ns=(st.st_atime_ns, st.st_mtime_ns))
        assert weights.stat().st_mtime_ns == st.st_mtime_ns
    plan = cli("plan", str(profile), env=env)
    assert "verified against the hub)" not in plan.stdout, plan.stdout
    pull = cli("pull", str(profile), env=env)
    _pulled_fresh(pull, env, hub_root)
    assert "weights.bin: sha256 differs from the hub's" in pull.stderr


# --- llmdeploy's own record of what it verified -------------------------------------------------


@pytest.mark.parametrize("kind", ["file", "garbage-sidecars", "fifo-sidecar"])
def test_broken_sidecar_store_is_no_crash(
    kind: str, tmp_path: Path, placed: tuple[Path, Hub, dict[str, str]]
) -> None:
    copy, hub, env = placed
    store = Path(env["LLMDEPLOY_CACHE"]) / ".found"
    profile = _profile(tmp_path, {"id": "acme/tiny"})
    if kind == "file":
        store.parent.mkdir(parents=True)
        store.write_text("in the way")
    else:
        first = cli("pull", str(profile), env=env)
        assert "found in" in first.stdout, first.stdout + first.stderr
        for sidecar in store.iterdir():
            sidecar.unlink()
            if kind == "fifo-sidecar":
                os.mkfifo(sidecar)
            else:
                sidecar.write_bytes(b"\xff\x00[not json" * 100)
    for command in ("plan", "pull"):
        done = cli(command, str(profile), env=env, timeout=60)
        _clean(done)
        assert done.returncode == 0, done.stderr
        assert str(copy) in done.stdout, done.stdout
    assert _file_gets(hub) == []


# --- Hugging Face: refs and small files -----------------------------------------------------------


@pytest.fixture
def hf_tree(hub_root: Path, tmp_path: Path) -> Iterator[tuple[str, Path]]:
    source = hub_root / "acme" / "tiny" / "master"
    with serve_hf_tree(source, tmp_path / "hf-hub", lfs_from=1000) as served:
        yield served


def _hf_env(isolated_env: dict[str, str], url: str, cache: Path) -> dict[str, str]:
    env = {k: v for k, v in isolated_env.items() if not k.startswith(("HF_", "MODELSCOPE_"))}
    env.update(HF_HUB_CACHE=str(cache), HF_ENDPOINT=url, NO_PROXY="127.0.0.1,localhost")
    return env


HF_MODEL = {"source": "huggingface", "id": "acme/tiny"}


def test_hf_small_git_file_with_other_bytes_is_not_served(
    tmp_path: Path, isolated_env: dict[str, str], hub_root: Path, hf_tree: tuple[str, Path]
) -> None:
    """config.json is no LFS file: the hub publishes no sha256 for it, only its git blob id —
    which still tells a same-size edit from the real thing."""
    url, _log = hf_tree
    cache = tmp_path / "hf-cache"
    snapshot = hf_layout(hub_root, cache, COMMIT)
    config = snapshot / "config.json"
    real = config.resolve()
    config.unlink()
    edited = real.parent / "edited"
    edited.write_bytes(b"{" + b"x" * (len(real.read_bytes()) - 2) + b"}")
    config.symlink_to(os.path.relpath(edited, config.parent))
    before = _listing(cache)
    env = _hf_env(isolated_env, url, cache)
    pull = cli("pull", str(_profile(tmp_path, HF_MODEL)), env=env)
    _clean(pull)
    assert "found in" not in pull.stdout, pull.stdout
    assert "config.json: git blob id differs from the hub's" in pull.stderr, pull.stderr
    assert _listing(cache) == before

    # the untouched copy passes the same check
    good = tmp_path / "hf-good"
    found = hf_layout(hub_root, good, COMMIT)
    pull = cli("pull", str(_profile(tmp_path, HF_MODEL)), env=_hf_env(isolated_env, url, good))
    _clean(pull)
    assert f"p: {found} — found in Hugging Face cache" in pull.stdout, pull.stdout + pull.stderr


def _huge(ref: Path) -> None:
    with open(ref, "wb") as handle:  # sparse: no disk used, 3 GiB when read
        handle.truncate(3 << 30)


REFS: dict[str, Callable[[Path], None]] = {
    "fifo": lambda ref: os.mkfifo(ref),
    "huge": _huge,
    "binary": lambda ref: ref.write_bytes(b"\xff\xfe\x00" * 20),
    "climbs-out": lambda ref: ref.write_text("../../../outside"),
    "directory": lambda ref: ref.mkdir(),
    "empty": lambda ref: ref.write_text(""),
}


@pytest.mark.parametrize("kind", sorted(REFS))
def test_hostile_refs_main_never_hangs_nor_crashes(
    kind: str, tmp_path: Path, isolated_env: dict[str, str], hub_root: Path
) -> None:
    cache = tmp_path / "hf-cache"
    snapshot = hf_layout(hub_root, cache, COMMIT)
    ref = cache / "models--acme--tiny" / "refs" / "main"
    ref.unlink()
    REFS[kind](ref)
    # a complete copy where "../../../outside" would lead from snapshots/
    outside = cache / "models--acme--tiny" / "snapshots" / "../../../outside"
    outside.mkdir(parents=True)
    for rel in FILES:
        (outside / rel).parent.mkdir(parents=True, exist_ok=True)
        (outside / rel).write_bytes(_hub_bytes(hub_root, rel))
    env = _hf_env(isolated_env, "http://127.0.0.1:9", cache)
    argv = [sys.executable, "-m", "llmdeploy", "plan", str(_profile(tmp_path, HF_MODEL))]

    def limit() -> None:  # a ref read whole would need 3 GiB: fail fast, not swap
        resource.setrlimit(resource.RLIMIT_AS, (2 << 30, 2 << 30))

    plan = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=30,
                          preexec_fn=limit, stdin=subprocess.DEVNULL)  # fmt: skip
    _clean(plan)
    assert plan.returncode == 0, plan.stderr
    assert "found in" not in plan.stdout, plan.stdout  # no commit named: nothing found
    assert str(snapshot) not in plan.stdout


def test_refs_main_naming_an_older_commit_is_refused(
    tmp_path: Path, isolated_env: dict[str, str], hub_root: Path, hf_tree: tuple[str, Path]
) -> None:
    """refs/main names a commit whose snapshot holds other bytes than the hub's main: the
    copy is refused once listed; the hub here serves no files, so the download then fails
    with one line."""
    url, _log = hf_tree
    cache = tmp_path / "hf-cache"
    hf_layout(hub_root, cache, COMMIT)
    old = cache / "models--acme--tiny" / "snapshots" / OLD_COMMIT
    old.mkdir()
    for rel in FILES:
        (old / rel).parent.mkdir(parents=True, exist_ok=True)
        (old / rel).write_bytes(_hub_bytes(hub_root, rel, "v2"))
    (cache / "models--acme--tiny" / "refs" / "main").write_text(OLD_COMMIT)
    before = _listing(cache)
    env = _hf_env(isolated_env, url, cache)
    profile = _profile(tmp_path, HF_MODEL)
    plan = cli("plan", str(profile), env=env)
    assert f"# model: {old} (found in Hugging Face cache" in plan.stdout, plan.stdout
    pull = cli("pull", str(profile), env=env)
    _clean(pull)
    assert f"not using the copy of acme/tiny in Hugging Face cache (HF_HUB_CACHE={cache}) " in (
        pull.stderr
    ), pull.stderr
    assert pull.returncode != 0 and pull.stderr.strip().splitlines()[-1].startswith("error:")
    assert _listing(cache) == before


# --- concurrency ----------------------------------------------------------------------------------


def test_concurrent_pulls_of_a_found_copy_agree(
    tmp_path: Path, placed: tuple[Path, Hub, dict[str, str]]
) -> None:
    copy, hub, env = placed
    before = _listing(Path(env["MODELSCOPE_CACHE"]))
    profile = _profile(tmp_path, {"id": "acme/tiny"})
    argv = [sys.executable, "-m", "llmdeploy", "pull", str(profile)]
    procs = [
        subprocess.Popen(argv, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        for _ in range(4)
    ]
    for proc in procs:
        stdout, stderr = proc.communicate(timeout=60)
        assert proc.returncode == 0 and "Traceback" not in stderr, stderr
        assert f"p: {copy} — found in ModelScope cache" in stdout, stdout + stderr
    assert _file_gets(hub) == []
    assert _listing(Path(env["MODELSCOPE_CACHE"])) == before
    assert not _own(env).exists()
    sidecars = list((Path(env["LLMDEPLOY_CACHE"]) / ".found").iterdir())
    assert [p.suffix for p in sidecars] == [".json"]  # no temporary file left behind
    assert json.loads(sidecars[0].read_text())["verified"]
