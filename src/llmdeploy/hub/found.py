"""A hub model already on this machine, downloaded by someone else: reuse it in place.

Where (per source, in this order; the first that looks complete offline wins):

  modelscope   model.cache_dir X, as `modelscope.snapshot_download(id, cache_dir=X)` lays it out:
                 X/models/{owner}--{name}/snapshots/{revision}/          (modelscope-hub >= 0.5)
                 X/models/{owner}/{name, . -> ___}/, X/hub/models/…     (clients <= 1.37: no
                                                                         revision, so only
                                                                         the hub's listing can
                                                                         tell it is the one)
               then ModelScope's own cache, MODELSCOPE_CACHE or ~/.cache/modelscope, same layouts
  huggingface  model.cache_dir X, then HF_HUB_CACHE / HF_HOME/hub / ~/.cache/huggingface/hub:
                 {cache}/models--{owner}--{name}/refs/{revision} names the commit,
                 {cache}/models--{owner}--{name}/snapshots/{commit}/     (files link to blobs/)

Offline (`plan`, `find_existing`) a copy only has to look complete: files there, no partial
download left, the served file present, and not rejected before with the same files. `pull`
(in `up`, its worker) then checks it against the hub's listing — sizes and sha256 —
with `verify`. Hashing costs time (hundreds of MB/s), so what was verified is remembered in a
sidecar manifest under llmdeploy's own cache, keyed by path, size and mtime: a second check
hashes nothing. Nothing is ever written into the user's caches.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from llmdeploy import jsontext
from llmdeploy.hub.models import DEFAULT_REVISION
from llmdeploy.profile.source import ModelSpec

if TYPE_CHECKING:
    from llmdeploy.hub.pull import RemoteFile

SIDECARS = ".found"  # under llmdeploy's cache: one JSON per found directory
COMMIT = re.compile(r"^[0-9a-f]{40}$")


@dataclass(frozen=True)
class Found:
    path: Path  # the snapshot directory (the engine gets path / model.path)
    where: str  # which cache, for people: "ModelScope cache (MODELSCOPE_CACHE=/x)"
    verified: bool  # checked against the hub before, and no file changed since

    def describe(self) -> str:
        state = "verified against the hub" if self.verified else "not yet verified"
        return f"found in {self.where}: {self.path} ({state})"


def find_existing(model: ModelSpec, cache: Path, environ: Mapping[str, str]) -> Found | None:
    """The first candidate directory that looks complete offline. Never contacts a hub."""
    if model.source not in ("modelscope", "huggingface") or not model.id:
        return None
    for where, path in candidates(model, environ):
        if _looks_complete(path, model) and not _rejected(cache, model, path):
            return Found(path, where, is_verified(cache, model, path))
    return None


def candidates(model: ModelSpec, environ: Mapping[str, str]) -> list[tuple[str, Path]]:
    owner, name = (model.id or "/").split("/", 1)
    revision = model.revision or DEFAULT_REVISION[model.source]
    roots: list[tuple[str, Path]] = []
    if model.cache_dir:
        roots.append((f"model.cache_dir {model.cache_dir}", _expand(model.cache_dir, environ)))
    if model.source == "modelscope":
        roots.append(_modelscope_root(environ))
        return [
            (where, path)
            for where, root in roots
            for path in _ms_layouts(root, owner, name, revision)
        ]
    roots.append(_huggingface_root(environ))
    found = [(where, _hf_snapshot(root, owner, name, revision)) for where, root in roots]
    return [(where, path) for where, path in found if path is not None]


def _ms_layouts(root: Path, owner: str, name: str, revision: str) -> list[Path]:
    legacy = name.replace(".", "___")
    return [
        root / "models" / f"{owner}--{name}" / "snapshots" / revision,
        root / "models" / owner / legacy,
        root / "hub" / "models" / owner / legacy,
    ]


def _hf_snapshot(root: Path, owner: str, name: str, revision: str) -> Path | None:
    repo = root / f"models--{owner}--{name}"
    try:
        commit = (repo / "refs" / revision).read_text().strip()
    except (OSError, ValueError):
        # a pinned commit has no ref file: huggingface_hub names the snapshot by it directly
        commit = revision if COMMIT.match(revision) else ""
    return repo / "snapshots" / commit if commit else None


def _modelscope_root(environ: Mapping[str, str]) -> tuple[str, Path]:
    if environ.get("MODELSCOPE_CACHE"):
        value = environ["MODELSCOPE_CACHE"]
        return f"ModelScope cache (MODELSCOPE_CACHE={value})", _expand(value, environ)
    return "ModelScope cache (~/.cache/modelscope)", _home(environ) / ".cache" / "modelscope"


def _huggingface_root(environ: Mapping[str, str]) -> tuple[str, Path]:
    for variable in ("HF_HUB_CACHE", "HUGGINGFACE_HUB_CACHE"):
        if environ.get(variable):
            value = environ[variable]
            return f"Hugging Face cache ({variable}={value})", _expand(value, environ)
    if environ.get("HF_HOME"):
        value = environ["HF_HOME"]
        return f"Hugging Face cache (HF_HOME={value})", _expand(value, environ) / "hub"
    xdg = environ.get("XDG_CACHE_HOME")
    base = _expand(xdg, environ) if xdg else _home(environ) / ".cache"
    return "Hugging Face cache (~/.cache/huggingface/hub)", base / "huggingface" / "hub"


def _home(environ: Mapping[str, str]) -> Path:
    return Path(environ["HOME"]) if environ.get("HOME") else Path.home()


def _expand(value: str, environ: Mapping[str, str]) -> Path:
    if value == "~" or value.startswith("~/"):
        return _home(environ) / value[2:]
    return Path(value)


def _looks_complete(path: Path, model: ModelSpec) -> bool:
    """Files there, none half-downloaded, the served file among them."""
    try:
        if not path.is_dir():
            return False
        names = [name for _root, _dirs, files in os.walk(path) for name in files]
    except OSError:
        return False
    if not names or any(name.endswith(".incomplete") for name in names):
        return False
    return not model.path or (path / model.path).is_file()


# --- verification against the hub's listing ---------------------------------------------------


def verify(found: Found, model: ModelSpec, cache: Path, files: list[RemoteFile]) -> str | None:
    """None if every listed file is there with the hub's size and sha256; else why not.
    What is verified (or the first reason to reject) is remembered in the sidecar."""
    sidecar = _read(cache, model, found.path)
    known: dict[str, Any] = sidecar.get("files", {})
    checked: dict[str, Any] = {}
    why = None
    for f in files:
        why = _check(found.path, f, known.get(f.path), checked)
        if why is not None:
            stat = _stat(found.path / f.path)
            sidecar["rejected"] = {"file": f.path, "stat": stat, "why": why}
            sidecar.pop("verified", None)
            break
    else:
        sidecar.pop("rejected", None)
        sidecar["verified"] = [f.path for f in files]
    sidecar["files"] = {**known, **checked}
    _write(cache, model, found.path, sidecar)
    return why


def _check(
    base: Path, f: RemoteFile, entry: dict[str, Any] | None, checked: dict[str, Any]
) -> str | None:
    stat = _stat(base / f.path)
    if stat is None:
        return f"{f.path} is missing"
    if stat[0] != f.size:
        return f"{f.path} has {stat[0]} bytes, the hub lists {f.size}"
    if not f.sha256:  # small git files on Hugging Face publish no sha256: the size must do
        return None
    if entry and [entry.get("size"), entry.get("mtime_ns")] == stat:
        digest = entry.get("sha256")  # hashed before, file unchanged since
    else:
        digest = sha256_file(base / f.path)
    checked[f.path] = {"size": stat[0], "mtime_ns": stat[1], "sha256": digest}
    if digest != f.sha256:
        return f"{f.path}: sha256 differs from the hub's (same size, other bytes)"
    return None


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def is_verified(cache: Path, model: ModelSpec, path: Path) -> bool:
    return verified_files(cache, model, path) is not None


def verified_files(cache: Path, model: ModelSpec, path: Path) -> list[str] | None:
    """The files verified against the hub before, if every one still has that size and
    mtime; None if never verified or anything changed since."""
    sidecar = _read(cache, model, path)
    listed = sidecar.get("verified")
    if not isinstance(listed, list):
        return None
    files = sidecar.get("files", {})
    for rel in listed:
        stat = _stat(path / rel)
        entry = files.get(rel)
        if stat is None or (entry and [entry.get("size"), entry.get("mtime_ns")] != stat):
            return None
    return [str(rel) for rel in listed]


def _rejected(cache: Path, model: ModelSpec, path: Path) -> bool:
    """Rejected before, and the file that failed is still as it was then."""
    rejected = _read(cache, model, path).get("rejected")
    return isinstance(rejected, dict) and _stat(path / str(rejected.get("file"))) == rejected.get(
        "stat"
    )


def _stat(path: Path) -> list[int] | None:
    try:
        st = path.stat()  # follows Hugging Face's snapshot links to their blobs
    except OSError:
        return None
    return [st.st_size, st.st_mtime_ns] if path.is_file() else None


def sidecar_path(cache: Path, model: ModelSpec, path: Path) -> Path:
    revision = model.revision or DEFAULT_REVISION.get(model.source, "")
    key = "\0".join((model.source, model.id or "", revision, str(path.resolve())))
    return cache / SIDECARS / f"{hashlib.sha256(key.encode()).hexdigest()[:24]}.json"


def _read(cache: Path, model: ModelSpec, path: Path) -> dict[str, Any]:
    try:
        data = jsontext.loads(sidecar_path(cache, model, path).read_text())
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) and data.get("path") == str(path) else {}


def _write(cache: Path, model: ModelSpec, path: Path, data: dict[str, Any]) -> None:
    target = sidecar_path(cache, model, path)
    target.parent.mkdir(parents=True, exist_ok=True)
    data["path"] = str(path)
    fd, tmp = tempfile.mkstemp(dir=target.parent, suffix=".tmp")
    with os.fdopen(fd, "w") as handle:
        json.dump(data, handle, indent=1)
    os.replace(tmp, target)  # atomic: two pulls checking at once never see half a file
