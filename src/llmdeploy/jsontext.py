"""JSON from outside (servers, files, peers) parsed so that every failure is a ValueError.

The stdlib raises RecursionError — not a ValueError — for a document nested deeper than
the interpreter's recursion limit (`[[[[…`, a few thousand bytes), so every `except
ValueError` around json.loads let a hostile server's answer or prompts file end a command
with a traceback. Parse untrusted JSON through `loads` instead.
"""

from __future__ import annotations

import json
from typing import Any


def loads(data: str | bytes | bytearray) -> Any:
    try:
        return json.loads(data)
    except RecursionError:
        # A JSONDecodeError, so callers that show `.msg` / `.lineno` keep working.
        raise json.JSONDecodeError("nested too deeply", "", 0) from None
