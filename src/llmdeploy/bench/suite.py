"""Several runs as one benchmark: a concurrency sweep, or the same sweep on two deployments
(A/B). One `Run` per measured level; tables and the JSON document over all of them."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from .gates import Gate, Violation, evaluate
from .metrics import Metrics, compute
from .report import to_json, top_errors
from .runner import BenchResult, LoadConfig


@dataclass(frozen=True)
class Run:
    """One measured level: `side` names the deployment in an A/B comparison."""

    side: str | None
    concurrency: int | None
    result: BenchResult
    metrics: Metrics
    violations: list[Violation]
    complete: bool = True  # False: a signal cut this level short; its records are partial

    @property
    def title(self) -> str:
        return level_title(self.side, self.result.load)

    @property
    def all_failed(self) -> bool:
        return not self.metrics["completed"]


def level_title(side: str | None, load: LoadConfig) -> str:
    """`concurrency 4`, `10 req/s, at most 4 in flight`; prefixed with the A/B side."""
    if load.rate is None:
        level = f"concurrency {load.concurrency}"
    else:
        cap = f", at most {load.max_concurrency} in flight" if load.max_concurrency else ""
        level = f"{load.rate:g} req/s{cap}"
    return f"{side}, {level}" if side else level


def measured(
    side: str | None,
    concurrency: int | None,
    result: BenchResult,
    slos: Mapping[str, float],
    gates: Iterable[Gate],
    *,
    complete: bool = True,
) -> Run:
    metrics = compute(result.records, result.duration, slos or None)
    return Run(side, concurrency, result, metrics, evaluate(gates, metrics), complete)


def _cell(value: float | None, fmt: str = ",.1f") -> str:
    return "n/a" if value is None else format(value, fmt)


# (heading, metric, format) of the one-line-per-level sweep summary
_SWEEP_COLUMNS = (
    ("req/s", "req_per_s", ",.2f"),
    ("out tok/s", "output_tok_per_s", ",.1f"),
    ("TTFT p50", "median_ttft_ms", ",.1f"),
    ("TTFT p99", "p99_ttft_ms", ",.1f"),
    ("TPOT p50", "median_tpot_ms", ",.2f"),
    ("TPOT p99", "p99_tpot_ms", ",.2f"),
    ("E2E p50", "median_e2el_ms", ",.1f"),
    ("E2E p99", "p99_e2el_ms", ",.1f"),
    ("failed", "failed", ",.0f"),
)


def sweep_table(runs: Sequence[Run], slos: Mapping[str, float] | None = None) -> str:
    """One line per level: throughput and latency (ms) side by side, to see the knee."""
    columns = list(_SWEEP_COLUMNS)
    if slos:
        columns.append(("goodput/s", "goodput_req_per_s", ",.2f"))
    first = max(len("level"), *(len(r.title) for r in runs))
    lines = [f"{'level':<{first}}" + "".join(f"{h:>11}" for h, _, _ in columns)]
    for r in runs:
        cells = "".join(f"{_cell(r.metrics[m], f):>11}" for _, m, f in columns)
        lines.append(f"{r.title:<{first}}{cells}")
    return "\n".join([*lines, "(latencies in ms)"])


# Rows of the A/B table: throughputs first (higher is better), then latencies (lower is).
COMPARE_ROWS = (
    ("req_per_s", ",.2f"),
    ("output_tok_per_s", ",.1f"),
    ("total_tok_per_s", ",.1f"),
    ("mean_ttft_ms", ",.1f"),
    ("median_ttft_ms", ",.1f"),
    ("p99_ttft_ms", ",.1f"),
    ("median_tpot_ms", ",.2f"),
    ("p99_tpot_ms", ",.2f"),
    ("median_itl_ms", ",.2f"),
    ("median_e2el_ms", ",.1f"),
    ("p99_e2el_ms", ",.1f"),
    ("failed", ",.0f"),
)


def ratio(a: float | None, b: float | None) -> float | None:
    """b / a, or None when either is unknown or a is 0."""
    return None if a is None or b is None or a == 0 else b / a


def compare_table(
    a: Sequence[Run], b: Sequence[Run], slos: Mapping[str, float] | None = None
) -> str:
    """A and B side by side, level by level, with the ratio B/A of every figure."""
    name_a, name_b = a[0].side or "A", b[0].side or "B"
    rows = list(COMPARE_ROWS) + ([("goodput_req_per_s", ",.2f")] if slos else [])
    width = max(len(m) for m, _ in rows)
    cols = max(14, len(name_a) + 2, len(name_b) + 2)
    blocks = []
    for run_a, run_b in zip(a, b, strict=True):
        level = run_a.title.removeprefix(f"{run_a.side}, ")
        lines = [
            f"{level:<{width}}{name_a:>{cols}}{name_b:>{cols}}{'B/A':>9}",
        ]
        for metric, fmt in rows:
            va, vb = run_a.metrics[metric], run_b.metrics[metric]
            r = ratio(va, vb)
            shown = "n/a" if r is None else f"{r:.2f}x"
            lines.append(
                f"{metric:<{width}}{_cell(va, fmt):>{cols}}{_cell(vb, fmt):>{cols}}{shown:>9}"
            )
        blocks.append("\n".join(lines))
    return "\n\n".join(blocks)


def violation_lines(runs: Iterable[Run], several: bool) -> list[str]:
    """Every failed gate with its figure; prefixed with the level when there are several."""
    return [f"{r.title}: {v}" if several else str(v) for r in runs for v in r.violations]


def failure_line(run: Run) -> str:
    errors = top_errors(run.result, 1)
    why = f": {errors[0][0]}" if errors else ""
    return f"every request failed ({run.title}){why}"


def document(
    runs: Sequence[Run], slos: Mapping[str, float] | None = None, *, interrupted: bool = False
) -> dict[str, Any]:
    """The JSON of the whole benchmark: one entry per run, each with every request. An
    interrupted benchmark (its last run may be cut short: not `complete`) has not passed."""
    entries = []
    for r in runs:
        entry = to_json(r.result, r.metrics, slos=slos, violations=r.violations)
        entries.append(
            {"side": r.side, "concurrency": r.concurrency, "complete": r.complete, **entry}
        )
    passed = not interrupted and not any(r.violations for r in runs)
    return {"passed": passed, "interrupted": interrupted, "runs": entries}
