"""What every part of a profile shares: models that refuse unknown keys and never change
once validated, and the way a user's value is quoted inside a one-line error."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict


class Strict(BaseModel):
    """A profile section: an unknown key is an error (a typo must not be ignored), and the
    validated object is frozen (one owner: the loader)."""

    model_config = ConfigDict(extra="forbid", frozen=True)


def shown(value: object, limit: int = 60) -> str:
    """A user's value inside a one-line message: quoted, and never a screenful."""
    text = repr(value)
    return text if len(text) <= limit else text[:limit] + "…"
