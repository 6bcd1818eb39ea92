from __future__ import annotations

import os
from pathlib import Path

from llmdeploy import paths
from llmdeploy.hub.clients import hub_for
from llmdeploy.hub.models import local_path
from llmdeploy.hub.progress import human_bytes
from llmdeploy.hub.pull import pull
from llmdeploy.output import err, out
from llmdeploy.profile import load as profile_load
from llmdeploy.profile import shipped


def run(arguments: list[str], *, offline: bool, cache_dir: Path | None) -> int:
    """Pull each profile's model; local and package models are only checked."""
    cache = cache_dir or paths.cache_dir()
    for argument in arguments:
        profile = profile_load.load(shipped.resolve(argument))
        model = profile.model
        if model.source in ("local", "package"):
            out(f"{profile.name}: {local_path(model, cache)} ({model.source}; nothing to pull)")
            continue
        hub = None if offline else hub_for(model.source, cache)
        result = pull(model, cache, hub=hub, offline=offline, note=err, environ=os.environ)
        if result.found:
            out(
                f"{profile.name}: {result.path} — found in {result.found}, {result.cached} "
                f"file(s) verified against the hub, nothing to fetch ({result.seconds:.1f} s)"
            )
            continue
        fetched = (
            f"fetched {result.fetched} file(s), {human_bytes(result.bytes_fetched)}"
            if result.fetched
            else "nothing to fetch"
        )
        out(
            f"{profile.name}: {result.path} — {fetched}, {result.cached} already verified "
            f"({result.seconds:.1f} s)"
        )
    return 0
