"""`llmdeploy bench`: load an OpenAI-compatible server, measure it, gate on the figures.

prompts (token_prompts: exactly N tokens, through the server's tokenizer) → runner (client
over llmdeploy.client) → records → metrics → gates / report.
"""

from __future__ import annotations

from .client import Endpoint, OpenAIClient, RequestParams, build_body
from .gates import Gate, Violation, evaluate, parse_gate, parse_gates
from .metrics import METRIC_NAMES, SLO_KEYS, compute, meets_slos, parse_slos, percentile
from .prompts import (
    Prompt,
    PromptOrigin,
    load_jsonl,
    load_prompts,
    load_sharegpt,
    random_prompts,
)
from .records import RequestRecord
from .report import format_table, to_json, top_errors
from .runner import Benchmark, BenchResult, LoadConfig, arrival_times, run, run_async

__all__ = [
    "METRIC_NAMES",
    "SLO_KEYS",
    "BenchResult",
    "Benchmark",
    "Endpoint",
    "Gate",
    "LoadConfig",
    "OpenAIClient",
    "Prompt",
    "PromptOrigin",
    "RequestParams",
    "RequestRecord",
    "Violation",
    "arrival_times",
    "build_body",
    "compute",
    "evaluate",
    "format_table",
    "load_jsonl",
    "load_prompts",
    "load_sharegpt",
    "meets_slos",
    "parse_gate",
    "parse_gates",
    "parse_slos",
    "percentile",
    "random_prompts",
    "run",
    "run_async",
    "to_json",
    "top_errors",
]
