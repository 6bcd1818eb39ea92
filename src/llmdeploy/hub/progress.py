"""Progress of a long wait measured from the outside (bytes on disk), shown as a
Rich bar on a terminal and as a plain line every `every` seconds elsewhere (CI logs).

Measuring the directory instead of hooking a hub client's own progress keeps this
independent of each client's internals, and counts resumed bytes honestly.
"""

from __future__ import annotations

import sys
import threading
import time
from collections.abc import Callable
from types import TracebackType
from typing import TextIO


def human_bytes(n: float) -> str:
    for unit in ("B", "KB", "MB", "GB", "TB"):
        if abs(n) < 1000 or unit == "TB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1000
    return f"{n:.1f} TB"


class ByteProgress:
    """`with ByteProgress(label, total, measure):` samples `measure()` in a thread."""

    def __init__(
        self,
        label: str,
        total: int,
        measure: Callable[[], int],
        *,
        stream: TextIO | None = None,
        every: float = 10.0,
        interval: float = 0.5,
        observe: Callable[[int, int], None] | None = None,
    ):
        self.label = label
        self.total = total
        self.measure = measure
        self.stream = stream or sys.stderr
        self.every = every
        self.interval = interval
        self.observe = observe  # told (done, total) at every sample: `up` records it
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._start = 0.0
        self._start_bytes = 0

    def __enter__(self) -> ByteProgress:
        self._start = time.monotonic()
        self._start_bytes = self.measure()
        self._thread.start()
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self._stop.set()
        self._thread.join()

    def line(self, done: int) -> str:
        elapsed = max(time.monotonic() - self._start, 1e-6)
        rate = (done - self._start_bytes) / elapsed
        left = max(self.total - done, 0)
        eta = f", ETA {left / rate:.0f} s" if rate > 0 and left else ""
        pct = 100 * done / self.total if self.total else 100.0
        return (
            f"{self.label}: {human_bytes(done)} of {human_bytes(self.total)} ({pct:.0f} %), "
            f"{human_bytes(rate)}/s{eta}"
        )

    def _sample(self) -> int:
        done = self.measure()
        if self.observe is not None:
            self.observe(done, self.total)
        return done

    def _run(self) -> None:
        if self.stream.isatty():
            self._run_rich()
            return
        last = time.monotonic()
        while not self._stop.wait(self.interval):
            done = self._sample()
            if time.monotonic() - last >= self.every:
                last = time.monotonic()
                print(self.line(done), file=self.stream, flush=True)
        print(self.line(self._sample()), file=self.stream, flush=True)

    def _run_rich(self) -> None:
        from rich.console import Console
        from rich.progress import (
            BarColumn,
            DownloadColumn,
            Progress,
            TimeRemainingColumn,
            TransferSpeedColumn,
        )

        columns = (BarColumn(), DownloadColumn(), TransferSpeedColumn(), TimeRemainingColumn())
        with Progress(*columns, console=Console(file=self.stream), transient=False) as bar:
            task = bar.add_task(self.label, total=self.total, completed=self._start_bytes)
            while not self._stop.wait(self.interval):
                bar.update(task, completed=self._sample())
            bar.update(task, completed=self._sample())
