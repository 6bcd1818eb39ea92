"""Signal handlers that only record: the main loop acts on the signal, then the
command exits 128+signum. Installed for the duration of a `with` block."""

from __future__ import annotations

import signal
from types import FrameType, TracebackType
from typing import Any, TypeVar

HANDLED = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)
_T = TypeVar("_T", bound="SignalCapture")


class SignalCapture:
    """Records the first of SIGINT, SIGTERM, SIGHUP in `received`, and how many came:
    a second one means "stop waiting, kill now" (`escalated`)."""

    signals: tuple[signal.Signals, ...] = HANDLED

    def __init__(self) -> None:
        self.received: int | None = None
        self.count = 0
        self._previous: dict[int, Any] = {}

    def _handle(self, signum: int, _frame: FrameType | None) -> None:
        self.count += 1
        if self.received is None:
            self.received = signum

    @property
    def escalated(self) -> bool:
        return self.count >= 2

    def __enter__(self: _T) -> _T:
        for signum in self.signals:
            if signum == signal.SIGHUP and signal.getsignal(signum) == signal.SIG_IGN:
                continue  # started under `nohup`: a hang-up must not stop the deployment
            self._previous[signum] = signal.signal(signum, self._handle)
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        for signum, handler in self._previous.items():
            signal.signal(signum, handler)


def exit_code(signum: int) -> int:
    return 128 + signum
