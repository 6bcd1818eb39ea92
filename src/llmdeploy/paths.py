"""Where llmdeploy keeps things: XDG base directories, overridable per variable."""

from __future__ import annotations

import os
from pathlib import Path


def _xdg(variable: str, fallback: str) -> Path:
    value = os.environ.get(variable)
    return Path(value) if value else Path.home() / fallback


def state_dir() -> Path:
    """Registry of deployments, their logs and locks."""
    own = os.environ.get("LLMDEPLOY_STATE_DIR")
    return Path(own) if own else _xdg("XDG_STATE_HOME", ".local/state") / "llmdeploy"


def cache_dir() -> Path:
    """Downloaded model weights."""
    own = os.environ.get("LLMDEPLOY_CACHE")
    return Path(own) if own else _xdg("XDG_CACHE_HOME", ".cache") / "llmdeploy"
