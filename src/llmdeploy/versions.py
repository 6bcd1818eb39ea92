"""Engine versions as comparable tuples: "0.10.1rc1" -> (0, 10, 1)."""

from __future__ import annotations

import re

Version = tuple[int, ...]
_LEADING = re.compile(r"^v?(\d+(?:\.\d+)*)")


def parse_version(text: str) -> Version:
    match = _LEADING.match(text.strip())
    if not match:
        raise ValueError(f"not a version number: {text!r} (expected e.g. 0.10.1)")
    return tuple(int(part) for part in match.group(1).split("."))


def at_least(version: Version | None, minimum: Version) -> bool:
    """Unknown version means "a current release": every feature is assumed present."""
    return version is None or version >= minimum


def show(version: Version) -> str:
    return ".".join(str(part) for part in version)
