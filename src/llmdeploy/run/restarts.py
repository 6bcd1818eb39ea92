"""The restart policy as a pure function: every exit counts, also one after ready.

An engine that crashes a minute after each successful start would, with a counter that
resets on ready, restart forever; so restarts are counted within a sliding window
(`restart.window_s`), and the policy gives up once more than `max_restarts` fall in it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from llmdeploy.profile.model import Restart


@dataclass(frozen=True)
class Decision:
    restart: bool
    delay: float = 0.0
    in_window: int = 0  # restarts within the window, this one included
    why: str = ""


def decide(policy: Restart, earlier: Sequence[float], now: float) -> Decision:
    """Restart (after `delay`) or give up, given the times of earlier restarts."""
    if policy.policy != "on-failure":
        return Decision(False, why="restart policy is never")
    recent = [t for t in earlier if now - t < policy.window_s]
    count = len(recent) + 1
    if count > policy.max_restarts:
        return Decision(
            False,
            in_window=len(recent),
            why=f"gave up after {len(recent)} restart(s) within {policy.window_s:g} s "
            f"(restart.max_restarts: {policy.max_restarts})",
        )
    delay = min(policy.backoff_s * 2 ** (count - 1), policy.backoff_max_s)
    return Decision(True, delay, count)
