"""Model hubs behind one small interface (`pull.Hub`): list a repository's files
with sizes and hashes, download some of them into a directory.

Clients are imported when first used (they take ~0.2 s and are an extra:
`pip install 'llmdeploy[hub]'`), and their exceptions become llmdeploy's here.
"""

from __future__ import annotations

import glob
import logging
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from llmdeploy.errors import HubError, IntegrityError, LlmdeployError, NotFoundError
from llmdeploy.hub.models import DEFAULT_REVISION
from llmdeploy.hub.pull import Hub, RemoteFile
from llmdeploy.profile.source import ModelSpec


def hub_for(source: str, cache: Path) -> Hub:
    if source == "modelscope":
        return ModelScopeHub(cache)
    if source == "huggingface":
        return HuggingFaceHub()
    raise NotFoundError(f"no hub for model source {source!r}")


class ModelScopeHub:
    """ModelScope's own client library, `modelscope-hub` (what `modelscope.snapshot_download`
    runs since 1.38, without modelscope's 70 MB of model code): resumes a partial file with
    Range requests, checks sha256 itself, retries 5xx with backoff."""

    name = "modelscope"
    verifies_sha256 = True

    def __init__(self, cache: Path):
        # The client keeps per-file locks under cache_dir even when writing to local_dir;
        # keep them in our cache instead of ~/.cache/modelscope.
        self.lock_dir = cache / ".modelscope"

    def list_files(self, model: ModelSpec) -> list[RemoteFile]:
        api = _modelscope("modelscope_hub").HubApi()
        with _translated(model, self.name):
            entries = api.list_repo_files(model.id, "model", revision=_revision(model))
        return [RemoteFile(e.path, e.size, e.sha256) for e in entries if not e.is_dir]

    def download(self, model: ModelSpec, target: Path, files: list[RemoteFile]) -> None:
        client = _modelscope("modelscope_hub.compat.snapshot_download")
        with _translated(model, self.name):
            client.snapshot_download(
                model.id,
                revision=_revision(model),
                local_dir=str(target),
                cache_dir=str(self.lock_dir),
                # exact paths, escaped: the client matches patterns with fnmatch
                allow_patterns=[glob.escape(f.path) for f in files],
            )


class HuggingFaceHub:
    """`huggingface_hub` (honours HF_ENDPOINT mirrors). LFS files carry a sha256, which
    we check ourselves; small git files have none published, only their git blob id."""

    name = "huggingface"
    verifies_sha256 = False

    def list_files(self, model: ModelSpec) -> list[RemoteFile]:
        hf = _import("huggingface_hub")
        with _translated(model, self.name):
            tree = hf.HfApi().list_repo_tree(model.id, revision=_revision(model), recursive=True)
            return [
                RemoteFile(
                    e.path,
                    int(e.size),
                    e.lfs.sha256 if e.lfs else None,
                    None if e.lfs else getattr(e, "blob_id", None),  # git's sha1 of the file
                )
                for e in tree
                if hasattr(e, "size")
            ]

    def download(self, model: ModelSpec, target: Path, files: list[RemoteFile]) -> None:
        hf = _import("huggingface_hub")
        with _translated(model, self.name):
            hf.snapshot_download(
                model.id,
                revision=_revision(model),
                local_dir=str(target),
                allow_patterns=[glob.escape(f.path) for f in files],
            )


def _revision(model: ModelSpec) -> str:
    return model.revision or DEFAULT_REVISION[model.source]


def _modelscope(module: str) -> Any:
    # Our own progress display replaces the client's tqdm bars; a file may take longer
    # than the client's default one-hour budget (read at import time).
    os.environ.setdefault("TQDM_DISABLE", "1")
    os.environ.setdefault("MODELSCOPE_DOWNLOAD_TOTAL_TIMEOUT", str(7 * 24 * 3600))
    # Its INFO lines duplicate our progress; its warnings (retries, hash mismatches) stay.
    logging.getLogger("modelscope_hub").setLevel(logging.WARNING)
    return _import(module)


def _import(name: str) -> Any:
    import importlib

    try:
        return importlib.import_module(name)
    except ImportError:
        raise HubError(
            f"the {name.split('.')[0]} client is not installed",
            hint="pip install 'llmdeploy[hub]'",
        ) from None


@contextmanager
def _translated(model: ModelSpec, hub: str) -> Iterator[None]:
    """Hub clients' exceptions -> llmdeploy's typed errors, named by model and hub."""
    try:
        yield
    except LlmdeployError:
        raise
    except Exception as exc:  # every client failure becomes one line, never a traceback
        raise _translate(exc, f"{model.id} (revision {_revision(model)}) on {hub}") from None


def _translate(exc: Exception, what: str) -> Exception:
    text = " ".join(str(exc).split())[:300]
    status = getattr(getattr(exc, "response", None), "status_code", None)
    name = type(exc).__name__
    if status == 404 or name in (
        "NotExistError",
        "NotFoundError",
        "RepositoryNotFoundError",
        "RevisionNotFoundError",
        "EntryNotFoundError",
    ):
        return NotFoundError(f"{what}: not found (check the id and revision)")
    if name in ("FileDownloadError", "FileIntegrityError") and "mismatch" in text.lower():
        return IntegrityError(f"{what}: {text}")
    if name in ("ConnectionError", "NetworkError", "RequestTimeoutError") or "Connection" in text:
        endpoint = os.environ.get("MODELSCOPE_ENDPOINT") or os.environ.get("HF_ENDPOINT") or "hub"
        return HubError(
            f"{what}: cannot reach {endpoint}: {text}",
            hint="check the network, or use --offline with a filled cache",
        )
    return HubError(f"{what}: {name}: {text}")
