"""Pure functions from request records to the benchmark's figures.

Definitions follow vLLM's benchmark_serving (so numbers are comparable): percentiles
interpolate linearly (numpy's default); TTFT/TPOT/E2EL are per request, ITL pools every
gap between token-bearing chunks of every request; throughputs divide by the run's wall
duration; latencies are over successful requests only.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Mapping, Sequence
from statistics import fmean

from .records import RequestRecord

STATS = ("mean", "median", "p90", "p99")
LATENCIES = ("ttft", "tpot", "itl", "e2el")
SLO_KEYS = ("ttft", "tpot", "e2el")

Metrics = dict[str, float | None]

METRIC_NAMES: tuple[str, ...] = (
    "requests",
    "completed",
    "failed",
    "error_rate",
    "duration_s",
    "req_per_s",
    "input_tokens",
    "output_tokens",
    "input_tok_per_s",
    "output_tok_per_s",
    "total_tok_per_s",
    "requests_without_usage",
    *(f"{stat}_{lat}_ms" for lat in LATENCIES for stat in STATS),
    "goodput_req_per_s",
    "goodput_fraction",
    "max_send_lag_ms",
)


def percentile(values: Sequence[float], q: float) -> float:
    """The q-th percentile (0-100), linear interpolation between closest ranks."""
    if not values:
        raise ValueError("percentile of no values")
    xs = sorted(values)
    pos = (len(xs) - 1) * q / 100
    lo = math.floor(pos)
    hi = min(lo + 1, len(xs) - 1)
    return xs[lo] + (xs[hi] - xs[lo]) * (pos - lo)


def summarize(values: Sequence[float]) -> dict[str, float | None]:
    """mean, median, p90, p99 of `values` (None for each when there are none)."""
    if not values:
        return dict.fromkeys(STATS)
    return {
        "mean": fmean(values),
        "median": percentile(values, 50),
        "p90": percentile(values, 90),
        "p99": percentile(values, 99),
    }


_SLO = re.compile(r"^\s*([a-z0-9]+)\s*=\s*(\d+(?:\.\d*)?|\.\d+)\s*(ms|s)?\s*$")


def parse_slos(text: str) -> dict[str, float]:
    """`"ttft=500ms,tpot=50ms,e2el=2s"` → limits in ms (a bare number means ms)."""
    slos: dict[str, float] = {}
    for part in text.split(","):
        m = _SLO.match(part)
        if m is None:
            raise ValueError(f"bad SLO {part.strip()!r} in {text!r}: expected NAME=NUMBER[ms|s]")
        name, number, unit = m.groups()
        if name not in SLO_KEYS:
            raise ValueError(f"unknown SLO {name!r} in {text!r}; known: {', '.join(SLO_KEYS)}")
        slos[name] = float(number) * (1000.0 if unit == "s" else 1.0)
    return slos


def meets_slos(rec: RequestRecord, slos: Mapping[str, float]) -> bool:
    """Whether a request met every given SLO (limits in ms, met when ≤). A figure that
    could not be measured fails its SLO — except TPOT of a streamed output of ≤ 1 token,
    which has no time per output token and counts as met (as vLLM counts it as 0)."""
    if not rec.ok:
        return False
    for name, limit in slos.items():
        if name == "ttft":
            value = rec.ttft
        elif name == "tpot":
            value = rec.tpot
            one_token = rec.output_tokens is not None and rec.output_tokens <= 1
            if value is None and rec.stream and one_token:
                continue
        else:
            value = rec.latency
        if value is None or value * 1000 > limit:
            return False
    return True


def _rate(amount: float | None, duration: float) -> float | None:
    return amount / duration if amount is not None and duration > 0 else None


def _total(values: Iterable[int | None]) -> int | None:
    """The sum, or None if any is unknown: a partial token count would understate."""
    total = 0
    for v in values:
        if v is None:
            return None
        total += v
    return total


def compute(
    records: Sequence[RequestRecord],
    duration_s: float,
    slos: Mapping[str, float] | None = None,
) -> Metrics:
    """Every figure in METRIC_NAMES from a run's records. Figures that cannot be known
    (no successful request, no usage from the server, no SLOs given) are None.

    Goodput counts requests meeting every SLO (`slos`, ms): `goodput_fraction` is over all
    requests, failed ones included (a failure meets no SLO); `goodput_req_per_s` divides
    that count by the duration."""
    ok = [r for r in records if r.ok]
    inputs = _total(r.prompt_tokens for r in ok) if ok else None
    outputs = _total(r.output_tokens for r in ok) if ok else None
    both = inputs + outputs if inputs is not None and outputs is not None else None
    out: Metrics = {
        "requests": len(records),
        "completed": len(ok),
        "failed": len(records) - len(ok),
        "error_rate": (len(records) - len(ok)) / len(records) if records else None,
        "duration_s": duration_s,
        "req_per_s": _rate(len(ok), duration_s),
        "input_tokens": inputs,
        "output_tokens": outputs,
        "input_tok_per_s": _rate(inputs, duration_s),
        "output_tok_per_s": _rate(outputs, duration_s),
        "total_tok_per_s": _rate(both, duration_s),
        "requests_without_usage": sum(r.output_tokens is None for r in ok),
    }
    samples: dict[str, list[float]] = {
        "ttft": [r.ttft for r in ok if r.ttft is not None],
        "tpot": [t for r in ok if (t := r.tpot) is not None],
        "itl": [gap for r in ok for gap in r.itl],
        "e2el": [r.latency for r in ok],
    }
    for lat, values in samples.items():
        for stat, value in summarize(values).items():
            out[f"{stat}_{lat}_ms"] = None if value is None else value * 1000
    good = sum(meets_slos(r, slos) for r in records) if slos else None
    out["goodput_req_per_s"] = _rate(good, duration_s)
    out["goodput_fraction"] = good / len(records) if good is not None and records else None
    lags = [r.start - r.scheduled for r in records if r.scheduled is not None]
    out["max_send_lag_ms"] = max(lags) * 1000 if lags else None
    assert tuple(out) == METRIC_NAMES
    return out
