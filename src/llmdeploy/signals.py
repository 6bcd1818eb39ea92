"""Signal handlers that only record: the main loop acts on the signal, then the
command exits 128+signum. Installed for the duration of a `with` block."""

from __future__ import annotations

import signal
from types import FrameType, TracebackType
from typing import Any

HANDLED = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)


class SignalCapture:
    def __init__(self) -> None:
        self.received: int | None = None
        self._previous: dict[int, Any] = {}

    def _record(self, signum: int, _frame: FrameType | None) -> None:
        if self.received is None:
            self.received = signum

    def __enter__(self) -> SignalCapture:
        for signum in HANDLED:
            self._previous[signum] = signal.signal(signum, self._record)
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        for signum, handler in self._previous.items():
            signal.signal(signum, handler)


def exit_code(signum: int) -> int:
    return 128 + signum


class Interruptible:
    """Within the block SIGTERM and SIGHUP raise KeyboardInterrupt, as Ctrl-C does, so
    that `finally` clauses run — above all the ones that take down a deployment a command
    brought up for itself (`bench --compare`, `generate PROFILE`). `code` is the exit
    code for the first signal (130 for Ctrl-C)."""

    def __init__(self) -> None:
        self.received: int | None = None
        self._previous: dict[int, Any] = {}

    def _raise(self, signum: int, _frame: FrameType | None) -> None:
        if self.received is None:
            self.received = signum
        raise KeyboardInterrupt

    @property
    def code(self) -> int:
        return exit_code(self.received or signal.SIGINT)

    def __enter__(self) -> Interruptible:
        for signum in (signal.SIGTERM, signal.SIGHUP):
            self._previous[signum] = signal.signal(signum, self._raise)
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        for signum, handler in self._previous.items():
            signal.signal(signum, handler)
