"""The two streams: results on stdout, diagnostics on stderr."""

from __future__ import annotations

import sys


def out(text: str = "") -> None:
    print(text, flush=True)


def err(text: str) -> None:
    print(text, file=sys.stderr, flush=True)
