"""Output of a run: a plain-text table for people, a JSON document for machines."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import asdict
from typing import Any

from .gates import Violation
from .metrics import LATENCIES, STATS, percentile
from .runner import BenchResult

_LABELS = {"ttft": "TTFT", "tpot": "TPOT", "itl": "ITL", "e2el": "E2E latency"}


def _num(value: float | None, fmt: str = ",.2f") -> str:
    return "n/a" if value is None else format(value, fmt)


def _load_line(result: BenchResult) -> str:
    load = result.load
    if load.rate is None:
        shape = f"closed loop, concurrency {load.concurrency}"
    else:
        kind = "Poisson" if load.burstiness == 1.0 else f"gamma (burstiness {load.burstiness:g})"
        cap = f", at most {load.max_concurrency} in flight" if load.max_concurrency else ""
        shape = f"open loop, {kind} arrivals at {load.rate:g} req/s{cap}, seed {load.seed}"
    limits = []
    if load.requests is not None:
        limits.append(f"{load.requests} requests")
    if load.duration is not None:
        limits.append(f"{load.duration:g} s")
    return f"load:     {shape}; {' or '.join(limits)}"


def input_counts(result: BenchResult) -> list[int]:
    """usage.prompt_tokens of every successful request that reported it."""
    return [r.prompt_tokens for r in result.records if r.ok and r.prompt_tokens is not None]


def _per_request(counts: list[int]) -> str:
    if not counts:
        return ""
    low, high = min(counts), max(counts)
    if low == high:
        return f"; {low:,} in per request"
    return f"; {low:,}-{high:,} in per request (median {percentile(counts, 50):,.0f})"


def input_warning(result: BenchResult) -> str | None:
    """Prompts made to --input-len tokens that the server counted otherwise."""
    origin, counts = result.origin, input_counts(result)
    if origin is None or origin.kind != "tokens" or not counts:
        return None
    off = [n for n in counts if n != origin.input_len]
    if not off:
        return None
    return (
        f"{len(off)} of {len(counts)} requests counted other than --input-len "
        f"{origin.input_len} input tokens ({min(off):,}-{max(off):,})"
    )


def top_errors(result: BenchResult, n: int = 3) -> list[tuple[str, int]]:
    """The most frequent error messages and how many requests hit each."""
    return Counter(r.error for r in result.records if r.error).most_common(n)


def format_table(
    result: BenchResult,
    metrics: Mapping[str, float | None],
    *,
    slos: Mapping[str, float] | None = None,
    violations: Iterable[Violation] = (),
) -> str:
    p = result.params
    mode = "streaming" if p.stream else "not streaming"
    lines = [
        f"target:   {result.base_url}  model {p.model}  /{p.endpoint}, {mode}, "
        f"max_tokens {p.max_tokens}{', ignore_eos' if p.ignore_eos else ''}",
        _load_line(result),
        "-" * 72,
        f"requests:   {_num(metrics['completed'], ',.0f')} completed, "
        f"{_num(metrics['failed'], ',.0f')} failed over {_num(metrics['duration_s'])} s "
        f"({result.connections} connections)",
        f"throughput: {_num(metrics['req_per_s'])} req/s, "
        f"{_num(metrics['output_tok_per_s'], ',.1f')} output tok/s, "
        f"{_num(metrics['total_tok_per_s'], ',.1f')} total tok/s",
        f"tokens:     {_num(metrics['input_tokens'], ',.0f')} in, "
        f"{_num(metrics['output_tokens'], ',.0f')} out (server usage)"
        f"{_per_request(input_counts(result))}",
    ]
    if result.origin is not None:
        lines.insert(2, f"prompts:  {result.origin.line()}")
    if slos:
        shown = ", ".join(f"{k} ≤ {v:g} ms" for k, v in slos.items())
        fraction = metrics["goodput_fraction"]
        lines.append(
            f"goodput:    {_num(None if fraction is None else fraction * 100, '.1f')} % of "
            f"requests, {_num(metrics['goodput_req_per_s'])} req/s  ({shown})"
        )
    if metrics["max_send_lag_ms"] is not None:
        lines.append(f"send lag:   max {_num(metrics['max_send_lag_ms'])} ms behind schedule")
    lines += ["", f"{'(ms)':<12}" + "".join(f"{s:>11}" for s in STATS)]
    for lat in LATENCIES:
        cells = "".join(f"{_num(metrics[f'{s}_{lat}_ms']):>11}" for s in STATS)
        lines.append(f"{_LABELS[lat]:<12}{cells}")
    if metrics["requests_without_usage"]:
        lines.append(
            f"\nwarning: {metrics['requests_without_usage']:.0f} responses carried no usage; "
            "token figures and TPOT are unavailable (the server ignores "
            "stream_options.include_usage? try without streaming)"
        )
    for warning in (result.origin and result.origin.warning, input_warning(result)):
        if warning:
            lines.append(f"warning: {warning}")
    for message, count in top_errors(result):
        lines.append(f"error (x{count}): {message}")
    for v in violations:
        lines.append(f"FAIL: {v}")
    return "\n".join(lines)


def to_json(
    result: BenchResult,
    metrics: Mapping[str, float | None],
    *,
    slos: Mapping[str, float] | None = None,
    violations: Iterable[Violation] = (),
) -> dict[str, Any]:
    """The whole run: settings, summary, gate outcome and every request's timings (ms
    figures in the summary; seconds, as measured, in the per-request records)."""
    params = asdict(result.params)
    params["extra_body"] = dict(result.params.extra_body)
    violations = list(violations)
    return {
        "base_url": result.base_url,
        "started_at": result.started_at,
        "params": params,
        "load": asdict(result.load),
        "prompts": result.origin.to_json() if result.origin is not None else None,
        "slos_ms": dict(slos or {}),
        "connections": result.connections,
        "summary": dict(metrics),
        "passed": not violations,
        "violations": [
            {"expression": v.gate.text, "metric": v.gate.metric, "value": v.value}
            for v in violations
        ],
        "requests": [r.to_json() for r in result.records],
    }
