"""One benchmark request, as measured: the record every metric is computed from."""

from __future__ import annotations

import itertools
from dataclasses import asdict, dataclass, field
from typing import Any


@dataclass
class RequestRecord:
    """Timings of one request. Times are seconds; `start` and `scheduled` are relative to
    the benchmark's origin, every other time is relative to this request's `start` (the
    moment its bytes were handed to the socket)."""

    index: int
    start: float
    stream: bool
    latency: float = 0.0  # arrival of the response's last byte (or the failure)
    ttft: float | None = None  # first token-bearing chunk (not chat's role announcement)
    chunk_times: list[float] = field(default_factory=list)  # every token-bearing chunk
    prompt_tokens: int | None = None  # from the server's usage, never guessed
    output_tokens: int | None = None  # from the server's usage, never guessed
    output_chars: int = 0
    finish_reason: str | None = None
    status: int | None = None  # HTTP status, None if no response head arrived
    error: str | None = None
    scheduled: float | None = None  # open loop: when the arrival process wanted it sent

    @property
    def ok(self) -> bool:
        return self.error is None

    @property
    def itl(self) -> list[float]:
        """Gaps between successive token-bearing chunks (inter-token latency)."""
        t = self.chunk_times
        return [b - a for a, b in itertools.pairwise(t)]

    @property
    def tpot(self) -> float | None:
        """Time per output token after the first: (e2e - ttft) / (output_tokens - 1).

        Uses the server-reported token count, so an output that ended early (EOS before
        max_tokens) is divided by what was really generated — dividing by the requested
        length is the bug of sglang issue #10746. Undefined (None) for ≤ 1 token, for
        missing usage, and without streaming (no first-token time)."""
        n = self.output_tokens
        if not self.ok or self.ttft is None or n is None or n <= 1:
            return None
        return (self.latency - self.ttft) / (n - 1)

    def to_json(self) -> dict[str, Any]:
        return {**asdict(self), "tpot": self.tpot}
