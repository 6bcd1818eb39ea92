"""What a foreground `up` shows: the engine's log lines as they come, and one live
status line (elapsed time) kept at the bottom of a terminal. Without a terminal
(CI logs) the status becomes a plain line every `plain_every` seconds."""

from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import TextIO

from llmdeploy.files import open_regular


class Console:
    def __init__(self, stream: TextIO | None = None, *, plain_every: float = 10.0):
        self.stream = stream or sys.stderr
        self.tty = self.stream.isatty()
        self.plain_every = plain_every
        self._status = ""
        self._last_plain = 0.0

    def line(self, text: str) -> None:
        if self.tty and self._status:
            self.stream.write("\r\033[K")
        self.stream.write(text + "\n")
        if self.tty and self._status:
            self.stream.write(self._status)
        self.stream.flush()

    def status(self, text: str) -> None:
        if self.tty:
            self._status = text
            self.stream.write("\r\033[K" + text)
            self.stream.flush()
        elif time.monotonic() - self._last_plain >= self.plain_every:
            self._last_plain = time.monotonic()
            self.line(text)

    def clear_status(self) -> None:
        if self.tty and self._status:
            self.stream.write("\r\033[K")
            self.stream.flush()
        self._status = ""


class LogFollower:
    """New complete lines of a growing file, from where the last call stopped."""

    def __init__(self, path: Path, *, from_end: bool = False, offset: int = 0):
        self.path = path
        self.offset = path.stat().st_size if from_end and path.exists() else offset
        self._partial = b""

    def read(self) -> list[str]:
        try:
            with open_regular(self.path, "rb") as handle:  # a FIFO there must not block us
                handle.seek(self.offset)
                data = handle.read(1_000_000)
        except OSError:
            return []
        self.offset += len(data)
        data = self._partial + data
        *lines, self._partial = data.split(b"\n")
        return [line.decode(errors="replace").rstrip("\r") for line in lines]
