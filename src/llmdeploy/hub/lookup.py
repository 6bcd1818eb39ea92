"""Which copy of a hub model the engine is given, decided offline (`plan`, `up`).

llmdeploy's own complete snapshot first (a pull finished there: nothing to decide), then
a copy found in another cache (hub/found.py), else llmdeploy's own path, where a pull will
put it. `hub.models.local_path` stays the machine-independent answer (Kubernetes manifests
must not name this machine's caches).
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

from llmdeploy.hub import found, models, pull
from llmdeploy.profile.source import ModelSpec


def serving_path(
    model: ModelSpec, cache: Path, environ: Mapping[str, str]
) -> tuple[Path, found.Found | None]:
    """(the path handed to the engine, the found copy it lies in, if any)."""
    if model.source in ("local", "package") or pull.is_complete(model, cache):
        return models.local_path(model, cache), None
    copy = found.find_existing(model, cache, environ)
    if copy is None:
        return models.local_path(model, cache), None
    return (copy.path / model.path if model.path else copy.path), copy


def ready_offline(model: ModelSpec, cache: Path, environ: Mapping[str, str]) -> bool:
    """Servable without asking the hub: our own complete snapshot, or a found copy
    verified before whose files have not changed since."""
    if pull.is_complete(model, cache):
        return True
    copy = found.find_existing(model, cache, environ)
    return copy is not None and copy.verified
