"""Where a profile's weights are on this machine.

Hub models live at a path llmdeploy chooses (`<cache>/<source>/<owner>/<name>/<revision>`),
independent of each hub client's own cache layout, so that `plan` can name it
before anything is downloaded.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

from llmdeploy.errors import NotFoundError
from llmdeploy.profile.source import ModelSpec

DEFAULT_REVISION = {"modelscope": "master", "huggingface": "main"}


def cache_root(model: ModelSpec, default: Path) -> Path:
    """The profile's own cache_dir wins over LLMDEPLOY_CACHE / the XDG default."""
    return Path(model.cache_dir).expanduser() if model.cache_dir else default


def snapshot_dir(model: ModelSpec, cache: Path) -> Path:
    """Where a hub model's files are kept: one directory per source/id/revision."""
    owner, name = (model.id or "/").split("/")
    revision = model.revision or DEFAULT_REVISION[model.source]
    return cache_root(model, cache) / model.source / owner / name / revision


def local_path(model: ModelSpec, cache: Path) -> Path:
    """The path handed to the engine. Pure except for locating an installed package."""
    if model.source == "local":
        return Path(model.path or "")
    if model.source == "package":
        return _package_file(model.id or "", model.path or "")
    snapshot = snapshot_dir(model, cache)
    return snapshot / model.path if model.path else snapshot


def _package_file(package: str, relative: str) -> Path:
    # find_spec locates the package without importing it (a model package may be large).
    spec = importlib.util.find_spec(package) if package.isidentifier() else None
    if spec is None or not spec.submodule_search_locations:
        raise NotFoundError(
            f"model package {package!r} is not installed",
            hint=f"pip install {package.replace('_', '-')}",
        )
    return Path(next(iter(spec.submodule_search_locations))) / relative


def require_present(path: Path, model: ModelSpec) -> None:
    if path.exists():
        return
    what = model.id or model.path
    raise NotFoundError(
        f"model {what} is not at {path}",
        hint="download it first (llmdeploy pull) or point model.path at the files",
    )
