"""`bench --chart`: throughput and latency versus concurrency, as a PNG.

matplotlib is an optional extra (`pip install 'llmdeploy[bench]'`) and costs ≈0.4 s to
import, so it is imported here, only when a chart is asked for; `require()` lets the
command refuse before any load is sent.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from .metrics import Metrics

Series = Mapping[str, Sequence[tuple[int, Metrics]]]  # label -> (concurrency, figures)…

# (title, y label, [(metric, line style)]) of each panel
PANELS = (
    ("Output throughput", "tokens/s", [("output_tok_per_s", "-")]),
    ("Time to first token", "ms", [("median_ttft_ms", "-"), ("p99_ttft_ms", "--")]),
    ("Time per output token", "ms", [("median_tpot_ms", "-"), ("p99_tpot_ms", "--")]),
    ("End-to-end latency", "ms", [("median_e2el_ms", "-"), ("p99_e2el_ms", "--")]),
)


def require() -> None:
    """Raise ImportError unless matplotlib can be imported."""
    import matplotlib  # noqa: F401


def write(path: Path, series: Series, title: str = "") -> None:
    """Four panels (throughput, TTFT, TPOT, E2E latency) against concurrency; one color
    per series (an A/B comparison draws two), p50 solid and p99 dashed."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(11, 8), layout="constrained")
    FigureCanvasAgg(fig)
    if title:
        fig.suptitle(title)
    levels = sorted({c for points in series.values() for c, _ in points})
    for ax, (title, unit, lines) in zip(fig.subplots(2, 2).flat, PANELS, strict=True):
        for color, (label, points) in enumerate(series.items()):
            for metric, style in lines:
                _plot(ax, points, metric, style, f"C{color}", _legend(label, metric, len(lines)))
        ax.set_title(title)
        ax.set_xlabel("concurrency")
        ax.set_ylabel(unit)
        if levels and levels[-1] >= 4 * levels[0]:
            ax.set_xscale("log", base=2)
        ax.set_xticks(levels, [str(c) for c in levels])
        ax.set_ylim(bottom=0)  # from zero: a 2 % wobble must not look like a cliff
        ax.grid(True, alpha=0.3)
        if ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize="small")
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, format="png", dpi=100)


def _legend(label: str, metric: str, count: int) -> str:
    stat = metric.split("_", 1)[0].replace("median", "p50")
    parts = [p for p in (label, stat if count > 1 else "") if p]
    return " ".join(parts)


def _plot(ax: Any, points: Sequence[tuple[int, Metrics]], metric: str, *style: str) -> None:
    line, color, label = style
    xy = [(c, m[metric]) for c, m in sorted(points, key=lambda p: p[0])]
    xs = [c for c, v in xy if v is not None]
    ys = [v for _, v in xy if v is not None]
    if xs:
        ax.plot(xs, ys, line, color=color, marker="o", label=label or None)
