"""SIGINT, SIGTERM and SIGHUP for the commands that wait on the network (smoke, bench,
generate): each ends the command within a moment, with exit code 128+signum, however
busy the machine and wherever the command is.

The handlers only record (run/signals.SignalCapture); what happens next depends on where
the command is when the first signal comes:

- in synchronous code (reading inputs, importing the OpenAI client, between the levels
  of a sweep), `Interrupted` is raised there — a KeyboardInterrupt, so `finally` clauses
  run, above all the ones that take down a deployment the command brought up;
- inside `run(main)`, nothing is raised inside the event loop's machinery. The loop is
  woken through the signal wakeup fd and cancels the main task — again every
  RECANCEL s until it ends, so a library that swallows one cancellation (as
  asyncio.wait_for can on 3.10/3.11, python/cpython#86296) cannot keep the command
  going — and `run` raises `Interrupted` once the loop is closed, whatever the task did.

The signal is recorded before anything else, so none is lost: `check()` raises for a
signal that came at any moment before it.
"""

from __future__ import annotations

import asyncio
import gc
import signal
import socket
import sys
from collections.abc import Awaitable, Callable
from types import FrameType, TracebackType
from typing import TypeVar

from llmdeploy.run.signals import HANDLED, SignalCapture, exit_code

T = TypeVar("T")


class Interrupted(KeyboardInterrupt):
    """The command was told to stop by `signum`; exit with `code`."""

    def __init__(self, signum: int) -> None:
        super().__init__(signum)
        self.signum = signum
        self.reported = False  # the one line saying so has been printed

    @property
    def code(self) -> int:
        return exit_code(self.signum)

    @property
    def name(self) -> str:
        return signal.Signals(self.signum).name


def exiting() -> None:
    """The command is about to exit after a signal: skip the final garbage collection.
    With the OpenAI client loaded it takes ~150 ms of the 1 s budget (measured on 2
    shared cores). gc.freeze() moves every object to the permanent generation, which
    collections skip; objects freed by reference counting are finalized as usual, and
    our files and sockets are closed explicitly before this."""
    gc.freeze()


class Interrupts(SignalCapture):
    """Within the block, SIGINT, SIGTERM and SIGHUP interrupt the command (see above)."""

    signals: tuple[signal.Signals, ...] = HANDLED
    RECANCEL = 0.1  # s between cancellations of a main task that has not ended yet
    SETTLE = 0.5  # s the tasks left when the main one ends get to close their sockets

    def __init__(self) -> None:
        super().__init__()
        self._in_loop = False
        self._raised = False  # a second signal must not cut our own clean-up short
        self._cancelling = False

    def __enter__(self) -> Interrupts:
        # A signal the parent process set to be ignored stays ignored, as Python leaves an
        # ignored SIGINT: `nohup llmdeploy generate …` must outlive the hangup it was
        # started to outlive.
        self.signals = tuple(s for s in HANDLED if signal.getsignal(s) is not signal.SIG_IGN)
        self._unraisable = sys.unraisablehook
        sys.unraisablehook = self._swallowed
        return super().__enter__()

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        super().__exit__(kind, exc, tb)
        sys.unraisablehook = self._unraisable

    def _swallowed(self, info: sys.UnraisableHookArgs) -> None:
        """Python swallows what is raised in a finalizer (a __del__, a weakref callback
        such as importlib's module-lock clean-up) and prints it with a traceback. Ours
        is not printed; the signal stays recorded, so the next check() raises it."""
        if isinstance(info.exc_value, Interrupted):
            self._raised = False
            return
        self._unraisable(info)

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        super()._handle(signum, frame)
        if not self._in_loop and not self._raised and self.received is not None:
            self._raised = True
            raise Interrupted(self.received)

    def check(self) -> None:
        """Raise Interrupted if a signal has come: call it before starting anything new."""
        if self.received is not None:
            self._raised = True
            raise Interrupted(self.received)

    def run(self, main: Callable[[], Awaitable[T]]) -> T:
        """`main()` in a fresh event loop that a signal stops (see above)."""
        self.check()
        self._in_loop, self._cancelling = True, False
        try:
            result = self._drive(main)
        except BaseException:
            self._in_loop = False
            self.check()  # the interrupt, not what it caused (CancelledError) or cut short
            raise
        self._in_loop = False
        self.check()
        return result

    def _drive(self, main: Callable[[], Awaitable[T]]) -> T:
        # Not asyncio.run: its clean-up waits without limit for every task left, and its
        # own SIGINT handling would compete with ours.
        loop = asyncio.new_event_loop()
        try:
            return loop.run_until_complete(self._main(main))
        finally:
            try:
                _settle(loop, self.SETTLE)
            finally:
                loop.close()

    async def _main(self, main: Callable[[], Awaitable[T]]) -> T:
        loop = asyncio.get_running_loop()
        task = asyncio.current_task()
        assert task is not None
        with _Wakeup(loop, lambda signum: self._woken(signum, loop, task)):
            self.check()  # a signal before the loop ran: start nothing
            return await main()

    def _woken(self, signum: int, loop: asyncio.AbstractEventLoop, task: asyncio.Task[T]) -> None:
        if self.received is None and signum in self.signals:
            self.received = signum  # the Python-level handler may not have run yet
        if self.received is not None and not self._cancelling:
            self._cancelling = True
            self._cancel(loop, task)

    def _cancel(self, loop: asyncio.AbstractEventLoop, task: asyncio.Task[T]) -> None:
        if not task.done():
            task.cancel()
            loop.call_later(self.RECANCEL, self._cancel, loop, task)


class _Wakeup:
    """Signals into the loop at once: the C-level handler writes each signal's number to
    this socket (signal.set_wakeup_fd), whichever thread the kernel picked, and the loop
    is watching it. A Python-level handler alone runs only when the main thread next runs
    bytecode — after select() returns, which with no traffic can be minutes later."""

    def __init__(self, loop: asyncio.AbstractEventLoop, on_signal: Callable[[int], None]):
        self._loop, self._on_signal = loop, on_signal
        self._r, self._w = socket.socketpair()
        self._previous = -1

    def __enter__(self) -> None:
        self._r.setblocking(False)
        self._w.setblocking(False)
        self._previous = signal.set_wakeup_fd(self._w.fileno(), warn_on_full_buffer=False)
        self._loop.add_reader(self._r.fileno(), self._read)

    def _read(self) -> None:
        try:
            data = self._r.recv(4096)
        except (BlockingIOError, InterruptedError):
            return
        for signum in data:
            self._on_signal(signum)

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self._loop.remove_reader(self._r.fileno())
        signal.set_wakeup_fd(self._previous)
        self._r.close()
        self._w.close()


def _settle(loop: asyncio.AbstractEventLoop, grace: float) -> None:
    """Cancel the tasks left and give them `grace` seconds to finish (close sockets)."""
    tasks = [t for t in asyncio.all_tasks(loop) if not t.done()]
    for task in tasks:
        task.cancel()
    if tasks:
        loop.run_until_complete(asyncio.wait(tasks, timeout=grace))
    for task in tasks:
        if task.done() and not task.cancelled():
            task.exception()  # read, so that asyncio does not log it as never retrieved
    loop.run_until_complete(loop.shutdown_asyncgens())
