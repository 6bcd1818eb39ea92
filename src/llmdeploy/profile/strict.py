"""What every part of a profile shares: models that refuse unknown keys and never change
once validated, and the way a user's value is quoted inside a one-line error."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict


class Strict(BaseModel):
    """A profile section: an unknown key is an error (a typo must not be ignored), and the
    validated object is frozen (one owner: the loader).

    defer_build: a section's validator is built when first used, not when its class is
    defined. Loading a profile uses only Profile's (which includes every section), so the
    other classes' validators were built for nothing at every start — `llmdeploy --help`
    243 -> 208 ms, `plan` 254 -> 239 ms (benchmarks/cli_speed.py, n=15, busy machine)."""

    model_config = ConfigDict(extra="forbid", frozen=True, defer_build=True)


def shown(value: object, limit: int = 60) -> str:
    """A user's value inside a one-line message: quoted, and never a screenful."""
    text = repr(value)
    return text if len(text) <= limit else text[:limit] + "…"
