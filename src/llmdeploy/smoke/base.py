"""What every smoke check shares: the target it checks, its result, and how to read an
answer (which field carries the text). Checks live in checks.py and contract.py."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, Literal

Status = Literal["pass", "fail", "skip"]

# A parser that assumes the model always thinks puts everything in `reasoning` when
# thinking is switched off. What to use instead, by the parser that was configured.
BETTER_PARSER = {"deepseek_r1": "qwen3", "deepseek_v3": "qwen3", "granite": "qwen3"}
NULL_CONTENT = "content is null with thinking off; the text landed in reasoning"


def null_content_cause(parser: str | None) -> str:
    """Why answers asked for without thinking come back as reasoning only (smoke's chat
    and thinking-off, and `generate --no-thinking`)."""
    if parser is None:
        return (
            "thinking was not switched off (no reasoning.parser in the profile, so no "
            "chat_template_kwargs.enable_thinking was sent), or the engine's reasoning "
            "parser assumes the model always thinks"
        )
    better = BETTER_PARSER.get(parser, "qwen3")
    if better == parser:
        return (
            f"reasoning parser {parser} treats every answer as reasoning: it does not match "
            "this model or its chat template"
        )
    return f"reasoning parser {parser} is likely wrong for this model, try {better}"


@dataclass(frozen=True)
class Target:
    base_url: str  # http://host:port (no /v1)
    model: str
    engine: str = "unknown"
    api_key: str | None = None
    max_model_len: int | None = None
    reasoning_parser: str | None = None
    prompt_switches: bool = False
    sampling: dict[str, dict[str, float]] = field(default_factory=dict)  # thinking/non_thinking
    json_schema: bool = False  # the engine supports response_format json_schema
    engine_version: str | None = None  # the profile's engine.version, if it names one
    reasoning_field: str | None = None  # the field the profile pins (reasoning.field)
    tool_parser: str | None = None  # the profile's tools.parser: the tools check runs
    # What the checks saw, for the report (e.g. "reasoning_field"): filled while they run.
    seen: dict[str, str] = field(default_factory=dict, compare=False)


@dataclass(frozen=True)
class Check:
    id: str
    status: Status
    seconds: float
    detail: str
    cause: str | None = None  # the likely cause, for failures


CheckFn = Callable[[Target, Any], Awaitable[tuple[Status, str, str | None]]]


def text_of(message: Any) -> tuple[str | None, str | None]:
    """(content, reasoning) of a chat message; engines name the reasoning field
    `reasoning` (recent vLLM) or `reasoning_content` (older vLLM, SGLang)."""
    extra = getattr(message, "model_extra", None) or {}
    reasoning = extra.get("reasoning") or extra.get("reasoning_content")
    return message.content, reasoning


def delta_text(delta: Any) -> str:
    extra = getattr(delta, "model_extra", None) or {}
    return (delta.content or "") + (extra.get("reasoning") or extra.get("reasoning_content") or "")


def thinking_body(target: Target, on: bool) -> dict[str, Any]:
    body: dict[str, Any] = {"chat_template_kwargs": {"enable_thinking": on}}
    if target.engine == "sglang":
        body["separate_reasoning"] = True
    return body


def usage_problem(usage: Any, max_tokens: int) -> str | None:
    if usage is None:
        return "no usage in the response"
    if not usage.prompt_tokens or usage.prompt_tokens <= 0:
        return f"prompt_tokens is {usage.prompt_tokens}"
    if not 0 < usage.completion_tokens <= max_tokens:
        return f"completion_tokens {usage.completion_tokens} outside 1..{max_tokens}"
    if usage.total_tokens != usage.prompt_tokens + usage.completion_tokens:
        return "total_tokens is not prompt + completion"
    return None


def one_line(text: str, limit: int = 300) -> str:
    """Text from outside (an exception, a server's field) as one printable line: whitespace
    runs become one space, a lone surrogate (valid JSON, `"\\ud800"`, not encodable as
    UTF-8: printing it ended smoke with a traceback) its escape, at most `limit` chars."""
    text = " ".join(str(text).split())[:limit]
    return text.encode("utf-8", "backslashreplace").decode("utf-8")
