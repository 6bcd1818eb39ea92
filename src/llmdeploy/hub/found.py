"""A hub model already on this machine, downloaded by someone else: reuse it in place.

Where (per source, in this order; the first copy verified before wins, else the first that
looks complete offline — `plan` and `pull` name the cache it is in):

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
(in `up`, its worker) then checks it against the hub's listing — sizes and sha256 (Hugging
Face's small git files: their git blob id) — with `verify`; a copy refused there is passed
over for the next candidate. Hashing costs time (hundreds of MB/s), so what was verified is
remembered in a sidecar manifest under llmdeploy's own cache, keyed by path, size, mtime,
ctime and inode (a rewrite that puts the old mtime back still changes the ctime): a second
check hashes nothing. Nothing is ever written into the user's caches.

The caches are other programs' files, read as untrusted: a ref or sidecar is read only if it
is a regular file, and only its first bytes (a FIFO would block, a huge file exhaust memory);
a ref must name a commit (a path in it could lead out of the cache); a weight file is hashed
only if it is a regular file that did not change while it was read. A sidecar that cannot be
written only means the next check hashes again.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import stat as stat_module
import tempfile
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from llmdeploy import jsontext
from llmdeploy.files import open_regular
from llmdeploy.hub.models import DEFAULT_REVISION
from llmdeploy.profile.source import ModelSpec

if TYPE_CHECKING:
    from llmdeploy.hub.pull import RemoteFile

SIDECARS = ".found"  # under llmdeploy's cache: one JSON per found directory
COMMIT = re.compile(r"^[0-9a-f]{40}$")
REF_LIMIT = 4096  # a ref holds a 40-character commit: anything longer is not one
SIDECAR_LIMIT = 64 << 20


@dataclass(frozen=True)
class Found:
    path: Path  # the snapshot directory (the engine gets path / model.path)
    where: str  # which cache, for people: "ModelScope cache (MODELSCOPE_CACHE=/x)"
    verified: bool  # checked against the hub before, and no file changed since

    def describe(self) -> str:
        state = "verified against the hub" if self.verified else "not yet verified"
        return f"found in {self.where}: {self.path} ({state})"


def find_existing(model: ModelSpec, cache: Path, environ: Mapping[str, str]) -> Found | None:
    """The copy to use: the first verified before (files unchanged since), else the first
    that looks complete offline. Never contacts a hub."""
    return next(find_all(model, cache, environ), None)


def find_all(model: ModelSpec, cache: Path, environ: Mapping[str, str]) -> Iterator[Found]:
    """Every candidate that looks complete and was not rejected (with the same files), each
    directory once: the verified ones first, then the others, each group in cache order."""
    if model.source not in ("modelscope", "huggingface") or not model.id:
        return
    seen: set[str] = set()
    later: list[Found] = []
    for where, path in candidates(model, environ):
        key = _real(path)
        if key in seen or not _looks_complete(path, model) or _rejected(cache, model, path):
            continue
        seen.add(key)
        copy = Found(path, where, is_verified(cache, model, path))
        if copy.verified:
            yield copy
        else:
            later.append(copy)
    yield from later


def _real(path: Path) -> str:
    try:
        return str(path.resolve())
    except (OSError, RuntimeError):
        return str(path)


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
    ref = _read_small(repo / "refs" / revision, REF_LIMIT)
    if ref is None:
        # a pinned commit has no ref file: huggingface_hub names the snapshot by it directly
        commit = revision if COMMIT.match(revision) else ""
    else:
        # huggingface_hub writes the commit there; anything else (a path that climbs out
        # of the cache, binary, a huge file) names no snapshot
        text = ref.decode("ascii", errors="replace").strip()
        commit = text if COMMIT.match(text) else ""
    return repo / "snapshots" / commit if commit else None


def _read_small(path: Path, limit: int) -> bytes | None:
    """A regular file's bytes if it has at most `limit`; None for anything else. Never
    blocks (a FIFO) and never reads more than limit + 1 bytes (a huge or endless file)."""
    try:
        with open_regular(path, "rb") as handle:
            data = handle.read(limit + 1)
    except OSError:
        return None
    return data if len(data) <= limit else None


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
    """Absolute: the engine is handed this path and may run elsewhere (a relative
    MODELSCOPE_CACHE means the directory where the command runs, as for the hub clients)."""
    if value == "~" or value.startswith("~/"):
        return _home(environ) / value[2:]
    return Path(value).absolute()


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
    files_seen = sidecar.get("files")
    known: dict[str, Any] = files_seen if isinstance(files_seen, dict) else {}
    checked: dict[str, Any] = {}
    why = None
    for f in files:
        entry = known.get(f.path)
        why = _check(found.path, f, entry if isinstance(entry, dict) else None, checked)
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
    path = base / f.path
    stat = _stat(path)
    if stat is None:
        return f"{f.path} is missing" if not _exists(path) else f"{f.path} is not a regular file"
    if stat[0] != f.size:
        return f"{f.path} has {stat[0]} bytes, the hub lists {f.size}"
    # LFS files carry a sha256; Hugging Face's small git files only their git blob id
    kind, expected = ("sha256", f.sha256) if f.sha256 else ("git_sha1", f.git_sha1)
    if not expected:  # nothing published to compare with: the size must do
        return None
    if entry and _same(entry, stat) and isinstance(entry.get(kind), str):
        digest: str | None = entry[kind]  # hashed before, file unchanged since
    else:
        digest, stat = _digest(path, kind)
        if digest is None or stat is None:
            return f"{f.path} changed while it was checked, or is not a regular file"
    checked[f.path] = {**_entry(stat), kind: digest}
    if digest != expected:
        what = "sha256" if kind == "sha256" else "git blob id"
        return f"{f.path}: {what} differs from the hub's (same size, other bytes)"
    return None


def _digest(path: Path, kind: str) -> tuple[str | None, list[int] | None]:
    """(hex digest, the file's stat) read from one open regular file that did not change
    while it was read; (None, None) otherwise."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError:
        return None, None
    try:
        before = os.fstat(fd)
        if not stat_module.S_ISREG(before.st_mode):
            return None, None
        digest = (
            hashlib.sha256() if kind == "sha256" else hashlib.sha1(b"blob %d\0" % before.st_size)
        )
        while block := os.read(fd, 1 << 20):
            digest.update(block)
        after = os.fstat(fd)
    except OSError:
        return None, None
    finally:
        os.close(fd)
    if _key(before) != _key(after):
        return None, None
    return digest.hexdigest(), _key(before)


def sha256_file(path: Path) -> str:
    digest, _stat = _digest(path, "sha256")
    if digest is None:
        raise OSError(f"{path} is not a regular file, or changed while it was read")
    return digest


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
    if not isinstance(files, dict):
        return None
    for rel in listed:
        stat = _stat(path / str(rel))
        entry = files.get(rel)
        if stat is None or (entry and not (isinstance(entry, dict) and _same(entry, stat))):
            return None
    return [str(rel) for rel in listed]


def _rejected(cache: Path, model: ModelSpec, path: Path) -> bool:
    """Rejected before, and the file that failed is still as it was then."""
    rejected = _read(cache, model, path).get("rejected")
    return isinstance(rejected, dict) and _stat(path / str(rejected.get("file"))) == rejected.get(
        "stat"
    )


def _stat(path: Path) -> list[int] | None:
    """[size, mtime, ctime, inode] of a regular file (links followed: Hugging Face's
    snapshot entries link to blobs); None for anything else. A rewrite changes the ctime
    even when the writer puts the old mtime back."""
    try:
        st = path.stat()
    except (OSError, ValueError):
        return None
    return _key(st) if stat_module.S_ISREG(st.st_mode) else None


def _key(st: os.stat_result) -> list[int]:
    return [st.st_size, st.st_mtime_ns, st.st_ctime_ns, st.st_ino]


def _entry(stat: list[int]) -> dict[str, int]:
    return dict(zip(("size", "mtime_ns", "ctime_ns", "ino"), stat, strict=True))


def _same(entry: dict[str, Any], stat: list[int]) -> bool:
    return [entry.get(k) for k in ("size", "mtime_ns", "ctime_ns", "ino")] == stat


def _exists(path: Path) -> bool:
    try:
        return path.exists()
    except (OSError, ValueError):
        return False


def sidecar_path(cache: Path, model: ModelSpec, path: Path) -> Path:
    revision = model.revision or DEFAULT_REVISION.get(model.source, "")
    key = "\0".join((model.source, model.id or "", revision, str(path.resolve())))
    return cache / SIDECARS / f"{hashlib.sha256(key.encode()).hexdigest()[:24]}.json"


def _read(cache: Path, model: ModelSpec, path: Path) -> dict[str, Any]:
    raw = _read_small(sidecar_path(cache, model, path), SIDECAR_LIMIT)
    try:
        data = jsontext.loads(raw.decode()) if raw is not None else None
    except (ValueError, RecursionError):
        return {}
    return data if isinstance(data, dict) and data.get("path") == str(path) else {}


def _write(cache: Path, model: ModelSpec, path: Path, data: dict[str, Any]) -> None:
    """Best effort: a sidecar that cannot be written (the store is a file, the disk is
    full) only means the next check hashes again."""
    target = sidecar_path(cache, model, path)
    data["path"] = str(path)
    tmp = None
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=target.parent, suffix=".tmp")
        with os.fdopen(fd, "w") as handle:
            json.dump(data, handle, indent=1)
        os.replace(tmp, target)  # atomic: two pulls checking at once never see half a file
    except OSError:
        if tmp is not None:
            Path(tmp).unlink(missing_ok=True)
