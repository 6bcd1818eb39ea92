"""`llmdeploy pull`: a hub model into the cache, verified, resumable, disk-checked.

    lock (one puller per model; a dead puller's lock is released by the kernel)
      -> list the hub's files (sizes, hashes) -> skip what the manifest says is verified
      -> refuse if the rest does not fit on the disk -> download with progress
      -> verify sizes and hashes (refetch once) -> record in the manifest

The manifest (`.llmdeploy/manifest.json` in the snapshot) lists files already
verified, with size and mtime, so a second pull hashes nothing and fetches nothing.
"""

from __future__ import annotations

import fcntl
import fnmatch
import hashlib
import json
import os
import shutil
import tempfile
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from llmdeploy import jsontext
from llmdeploy.errors import IntegrityError, NotFoundError, PreflightError
from llmdeploy.hub import found
from llmdeploy.hub.models import snapshot_dir
from llmdeploy.hub.progress import ByteProgress, human_bytes
from llmdeploy.profile.source import ModelSpec

MANIFEST = Path(".llmdeploy") / "manifest.json"


@dataclass(frozen=True)
class RemoteFile:
    path: str
    size: int
    sha256: str | None
    git_sha1: str | None = None  # Hugging Face's git blob id, for small files without sha256


class Hub(Protocol):
    name: str
    verifies_sha256: bool  # the client checks hashes itself: no need to hash twice

    def list_files(self, model: ModelSpec) -> list[RemoteFile]: ...

    def download(self, model: ModelSpec, target: Path, files: list[RemoteFile]) -> None: ...


@dataclass(frozen=True)
class PullResult:
    path: Path
    fetched: int  # files downloaded now
    cached: int  # files already verified
    bytes_fetched: int
    seconds: float
    found: str | None = None  # the other cache whose copy is used in place (hub/found.py)


def pull(
    model: ModelSpec,
    cache: Path,
    *,
    hub: Hub | None,
    offline: bool = False,
    note: Callable[[str], None] = lambda _text: None,
    disk_free: Callable[[Path], int] = lambda p: shutil.disk_usage(p).free,
    observe: Callable[[int, int], None] | None = None,
    environ: Mapping[str, str] | None = None,
) -> PullResult:
    started = time.monotonic()
    target = snapshot_dir(model, cache)
    if not is_complete(model, cache):
        # before anything is created: a copy used in place leaves no trace in our cache dir
        reused = _reuse(
            model, cache, hub, offline, note, os.environ if environ is None else environ
        )
        if reused is not None:
            return PullResult(
                reused.path, 0, reused.cached, 0, time.monotonic() - started, reused.found
            )
    target.mkdir(parents=True, exist_ok=True)
    with _exclusive(target, note):
        manifest = _read_manifest(target)
        if offline or hub is None:
            return _offline(model, target, manifest, started)
        files = _listing(hub, model)
        todo = [f for f in files if not _verified(target, f, manifest)]
        need = sum(f.size for f in todo) - _partial_bytes(target, todo)
        check_disk(target, need, disk_free(target))
        before = _bytes_present(target, files)  # partial downloads (temp files) included
        fetched = 0
        if todo:
            total = sum(f.size for f in files)
            label = f"pull {model.id}"
            measure = lambda: _bytes_present(target, files)  # noqa: E731
            with ByteProgress(label, total, measure, observe=observe):
                _download_verified(hub, model, target, todo, manifest)
            fetched = max(0, _bytes_present(target, files) - before)
        manifest["complete"] = [f.path for f in files]
        _write_manifest(target, manifest)
    return PullResult(
        target,
        len(todo),
        len(files) - len(todo),
        fetched,  # bytes fetched now: a resumed file's earlier part is not counted
        time.monotonic() - started,
    )


def _listing(hub: Hub, model: ModelSpec) -> list[RemoteFile]:
    files = [f for f in hub.list_files(model) if _wanted(f.path, model)]
    if not files:
        raise NotFoundError(f"{model.id}: no files match include/exclude on {hub.name}")
    if model.path and model.path not in {f.path for f in files}:
        raise NotFoundError(f"{model.id} has no file {model.path!r} on {hub.name}")
    return files


def _reuse(
    model: ModelSpec,
    cache: Path,
    hub: Hub | None,
    offline: bool,
    note: Callable[[str], None],
    environ: Mapping[str, str],
) -> PullResult | None:
    """A copy in another cache, verified against the hub's listing, is used where it is:
    nothing fetched, nothing copied. Offline, only one verified before (files unchanged)."""
    copy = found.find_existing(model, cache, environ)
    if copy is None:
        return None
    if offline or hub is None:
        done = found.verified_files(cache, model, copy.path)
        if done is not None:
            return PullResult(copy.path, 0, len(done), 0, 0.0, copy.where)
        note(f"{copy.describe()}; it cannot be verified offline")
        return None
    files = _listing(hub, model)
    # the copies in cache order (verified ones first): one refused, the next is checked
    refused = ""
    for candidate in found.find_all(model, cache, environ):
        if refused:
            note(f"{refused}; trying the next copy")
        if not candidate.verified:
            size = human_bytes(sum(f.size for f in files))
            note(
                f"{model.id} {candidate.describe()}: checking {len(files)} file(s), {size}, "
                "against the hub"
            )
        why = found.verify(candidate, model, cache, files)
        if why is None:
            return PullResult(candidate.path, 0, len(files), 0, 0.0, candidate.where)
        refused = f"not using the copy of {model.id} in {candidate.where} ({candidate.path}): {why}"
    if refused:
        note(f"{refused}; downloading it into {snapshot_dir(model, cache)}")
    return None


def is_complete(model: ModelSpec, cache: Path) -> bool:
    """Everything an earlier pull listed is here and verified: no need to ask the hub."""
    target = snapshot_dir(model, cache)
    listed = _read_manifest(target).get("complete")
    return listed is not None and all((target / p).is_file() for p in listed)


def check_disk(target: Path, need: int, free: int) -> None:
    """Refuse when the download does not fit, with a margin for temp files and logs."""
    margin = 100_000_000 + need // 20
    if need + margin > free:
        raise PreflightError(
            f"not enough disk space at {target}: the download needs {human_bytes(need)} "
            f"(+{human_bytes(margin)} margin), {human_bytes(free)} is free",
            hint="free some space or point LLMDEPLOY_CACHE / model.cache_dir elsewhere",
        )


def _download_verified(
    hub: Hub, model: ModelSpec, target: Path, todo: list[RemoteFile], manifest: dict[str, Any]
) -> None:
    pending = todo
    for _attempt in (1, 2):  # one refetch of what failed verification
        hub.download(model, target, pending)
        bad = [f for f in pending if not _check_file(target, f, hash_it=not hub.verifies_sha256)]
        for f in pending:
            if f not in bad:
                _remember(target, f, manifest)
        _write_manifest(target, manifest)  # progress survives a later failure
        if not bad:
            return
        for f in bad:
            (target / f.path).unlink(missing_ok=True)  # corrupt: fetch it again
        pending = bad
    raise IntegrityError(
        f"{model.id}: {', '.join(f.path for f in pending)} failed verification twice "
        "(size or sha256 differs from what the hub publishes)",
        hint="the hub copy may be broken; try another revision or report it upstream",
    )


def _check_file(target: Path, f: RemoteFile, *, hash_it: bool) -> bool:
    path = target / f.path
    if not path.is_file() or path.stat().st_size != f.size:
        return False
    return not (hash_it and f.sha256) or sha256_of(path) == f.sha256


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _offline(
    model: ModelSpec, target: Path, manifest: dict[str, Any], started: float
) -> PullResult:
    listed = manifest.get("complete")
    if listed is None:
        raise NotFoundError(
            f"{model.id} ({target.name}) is not in the cache at {target}",
            hint="pull it once with network access (llmdeploy pull), then --offline works",
        )
    missing = [p for p in listed if not (target / p).is_file()]
    if missing:
        raise NotFoundError(f"{model.id}: files missing from the cache: {', '.join(missing[:5])}")
    return PullResult(target, 0, len(listed), 0, time.monotonic() - started)


def _wanted(path: str, model: ModelSpec) -> bool:
    if model.include and not any(fnmatch.fnmatch(path, p) for p in model.include):
        return model.path == path  # the file the engine serves is always wanted
    return not (model.exclude and any(fnmatch.fnmatch(path, p) for p in model.exclude))


def _verified(target: Path, f: RemoteFile, manifest: dict[str, Any]) -> bool:
    entry = manifest.get("files", {}).get(f.path)
    path = target / f.path
    if not entry or not path.is_file():
        return False
    stat = path.stat()
    return bool(
        entry.get("size") == f.size == stat.st_size
        and entry.get("sha256") == f.sha256
        and entry.get("mtime_ns") == stat.st_mtime_ns
    )


def _remember(target: Path, f: RemoteFile, manifest: dict[str, Any]) -> None:
    stat = (target / f.path).stat()
    manifest.setdefault("files", {})[f.path] = {
        "size": f.size,
        "sha256": f.sha256,
        "mtime_ns": stat.st_mtime_ns,
    }


def _bytes_present(target: Path, files: list[RemoteFile]) -> int:
    """Bytes of the wanted files on disk, complete or partial (temp files included)."""
    total = 0
    for root, _dirs, names in os.walk(target):
        for name in names:
            try:
                total += os.path.getsize(os.path.join(root, name))
            except OSError:
                continue
    return min(total, sum(f.size for f in files))


def _partial_bytes(target: Path, todo: list[RemoteFile]) -> int:
    total = 0
    for f in todo:
        path = target / f.path
        if path.is_file():
            total += min(path.stat().st_size, f.size)
    return total


def _read_manifest(target: Path) -> dict[str, Any]:
    try:
        data = jsontext.loads((target / MANIFEST).read_text())
        return data if isinstance(data, dict) else {}
    except (OSError, ValueError):
        return {}


def _write_manifest(target: Path, manifest: dict[str, Any]) -> None:
    path = target / MANIFEST
    path.parent.mkdir(exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, suffix=".tmp")
    with os.fdopen(fd, "w") as handle:
        json.dump(manifest, handle, indent=1)
    os.replace(tmp, path)


@contextmanager
def _exclusive(target: Path, note: Callable[[str], None]) -> Iterator[None]:
    """One puller per snapshot. A second one waits; a dead one's lock is gone with it."""
    lock_path = target.parent / f".{target.name}.lock"
    fd = os.open(lock_path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 64, 0).decode(errors="replace").strip() or "?"
            note(f"another pull of this model is running (pid {holder}); waiting for it")
            fcntl.flock(fd, fcntl.LOCK_EX)
        os.ftruncate(fd, 0)
        os.pwrite(fd, str(os.getpid()).encode(), 0)
        yield
    finally:
        os.close(fd)
