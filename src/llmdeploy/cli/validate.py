from __future__ import annotations

from pathlib import Path

from llmdeploy.engines.exposure import exposure_warning
from llmdeploy.errors import ProfileError
from llmdeploy.output import err, out
from llmdeploy.profile import load as profile_load
from llmdeploy.profile import shipped


def run(arguments: list[str]) -> int:
    """Validate each profile; report every file, fail if any is bad."""
    failed = 0
    for argument in arguments:
        path: Path = shipped.resolve(argument)
        try:
            profile = profile_load.load(path)
        except ProfileError as exc:
            failed += 1
            err(f"error: {exc.message}" + (f" ({exc.hint})" if exc.hint else ""))
            continue
        out(f"ok: {path} ({profile.name}: {profile.engine.type}, {profile.served_model_name})")
        # Valid, yet worth a look: a server other machines can reach (exit code unchanged).
        warning = exposure_warning(profile)
        if warning:
            err(warning.replace("warning: ", f"warning: {path}: ", 1))
    return 2 if failed else 0
