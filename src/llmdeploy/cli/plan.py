from __future__ import annotations

import os
from pathlib import Path

from llmdeploy import paths
from llmdeploy.engines import render
from llmdeploy.engines.exposure import exposure_warning
from llmdeploy.engines.planning import make_plan
from llmdeploy.hub.found import Found
from llmdeploy.output import err, out
from llmdeploy.profile import load as profile_load
from llmdeploy.profile import shipped
from llmdeploy.versions import parse_version, show


def run(argument: str, *, engine_version: str | None, as_json: bool) -> int:
    profile = profile_load.load(shipped.resolve(argument))
    version = _version(engine_version)
    plan = make_plan(profile, environ=os.environ, cache=paths.cache_dir(), version=version)
    warning = exposure_warning(profile)
    if warning:
        err(warning)
    launch = plan.launch
    effective = version or profile.engine.parsed_version
    shown_version = show(effective) if effective else "current"
    present = _exists(plan.model_path)
    if as_json:
        import json  # only here: `plan` without --json should not pay for it

        out(
            json.dumps(
                {
                    "name": profile.name,
                    "engine": profile.engine.type,
                    "engine_version": shown_version,
                    "model_path": str(plan.model_path),
                    "model_present": present,
                    "model_found_in": plan.found.where if plan.found else None,
                    "model_verified": plan.found.verified if plan.found else None,
                    "argv": render.masked_argv(launch),
                    "env": render.masked_env(launch),
                    "base_url": launch.base_url,
                    "health_url": launch.base_url + launch.health_path,
                    "command": render.shell_line(launch),
                },
                indent=2,
            )
        )
        return 0
    out(
        f"# {profile.name}: {profile.engine.type} {shown_version}, serves "
        f"{profile.served_model_name!r} at {launch.base_url}/v1"
    )
    out(f"# model: {plan.model_path}{_model_note(plan.found, present)}")
    if plan.port_was_auto:
        out("# port: auto; this is a free port now, `up` picks again")
    out(f"# ready when: GET {launch.health_path} answers 200")
    out(render.shell_line(launch))
    return 0


def _model_note(found: Found | None, present: bool) -> str:
    if found is None:
        return "" if present else " (not downloaded yet)"
    if found.verified:
        return f" (found in {found.where}, verified against the hub)"
    # plan never contacts a hub: pull (or up's pull) checks sizes and sha256 first
    return f" (found in {found.where}; unverified until pull/up checks it against the hub)"


def _exists(path: Path) -> bool:
    try:
        return path.exists()
    except OSError:  # e.g. a name longer than the file system allows: certainly not there
        return False


def _version(text: str | None) -> tuple[int, ...] | None:
    from llmdeploy.errors import InputError

    if text is None:
        return None
    try:
        if len(text) > 64:  # parse_version's int() would hit the int-str conversion limit
            raise ValueError(f"not a version number ({len(text)} characters)")
        return parse_version(text)
    except ValueError as exc:
        raise InputError(f"--engine-version: {exc}") from None
