"""The profiles that ship with llmdeploy (package data; `profiles/` in the repository)."""

from __future__ import annotations

from pathlib import Path

SHIPPED_DIR = Path(__file__).parent.parent / "profiles"


def shipped() -> list[Path]:
    return sorted(SHIPPED_DIR.glob("*.yaml"))


def resolve(argument: str) -> Path:
    """A profile argument is a file path, or the name of a shipped profile."""
    path = Path(argument)
    if _exists(path) or path.suffix in (".yaml", ".yml") or "/" in argument:
        return path
    candidate = SHIPPED_DIR / f"{argument}.yaml"
    return candidate if _exists(candidate) else path


def _exists(path: Path) -> bool:
    try:
        return path.exists()
    except OSError:  # a name too long for the file system: loading reports it, once
        return False


def summary(path: Path) -> str:
    """The first comment line of a profile: what it is and what it needs."""
    with open(path, encoding="utf-8") as handle:
        for line in handle:
            if line.startswith("#"):
                return line.lstrip("# ").rstrip()
    return ""
