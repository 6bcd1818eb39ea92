"""`llmdeploy smoke`: the checks a person runs by hand on a fresh deployment, as one
command with stable check ids, made for CI.

Each check takes a `Target` and an async OpenAI client (async, so that a signal can
cancel a check mid-request) and returns a `Check`. Random-weight
test models say nothing meaningful, so checks assert structure — which field carries
the text, usage counts, stream shape, JSON validity — never words.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from llmdeploy import jsontext
from llmdeploy.client.aio import Client
from llmdeploy.smoke.base import (
    NULL_CONTENT,
    Check,
    CheckFn,
    Status,
    Target,
    delta_text,
    null_content_cause,
    one_line,
    text_of,
    thinking_body,
    usage_problem,
)
from llmdeploy.smoke.contract import check_reasoning_field, check_tools

__all__ = [
    "CHECKS",
    "NULL_CONTENT",
    "Check",
    "Target",
    "null_content_cause",
    "run_checks",
    "select",
]

# --- the checks ------------------------------------------------------------------------


async def check_models(target: Target, client: Any) -> tuple[Status, str, str | None]:
    models = (await client.models.list()).data
    ids = [m.id for m in models]
    if target.model not in ids:
        return "fail", f"{target.model!r} not among {ids}", "served_model_name differs"
    served = next(m for m in models if m.id == target.model)
    reported = (served.model_extra or {}).get("max_model_len")
    if target.max_model_len and reported and reported != target.max_model_len:
        return "fail", f"max_model_len {reported}, profile says {target.max_model_len}", None
    extra = f", max_model_len {reported}" if reported else ""
    return "pass", f"{target.model!r} listed{extra}", None


async def check_completion(target: Target, client: Any) -> tuple[Status, str, str | None]:
    reply = await client.completions.create(
        model=target.model, prompt="The capital of France is", max_tokens=8, temperature=0
    )
    choice = reply.choices[0]
    problem = usage_problem(reply.usage, 8)
    if not choice.text:
        problem = "empty text"
    if choice.finish_reason not in ("stop", "length"):
        problem = f"finish_reason {choice.finish_reason!r}"
    if problem:
        return "fail", problem, None
    return "pass", f"{reply.usage.completion_tokens} tokens, finish {choice.finish_reason}", None


# `transformers serve` validates requests strictly against the OpenAI schema and answers
# HTTP 422 "Unexpected fields" to the sampling extras other engines take (top_k, min_p).
STRICT_SCHEMA_ENGINES = {"transformers"}


def sampling_extras(target: Target, preset: dict[str, float]) -> dict[str, Any]:
    if target.engine in STRICT_SCHEMA_ENGINES:
        return {}
    return {"top_k": int(preset.get("top_k", 20)), "min_p": preset.get("min_p", 0)}


async def check_chat(target: Target, client: Any) -> tuple[Status, str, str | None]:
    preset = target.sampling.get("non_thinking", {})
    body = thinking_body(target, False) if target.reasoning_parser else {}
    reply = await client.chat.completions.create(
        model=target.model,
        messages=[{"role": "user", "content": "Say hello."}],
        max_tokens=16,
        temperature=preset.get("temperature", 0.7),
        top_p=preset.get("top_p", 0.8),
        extra_body={**body, **sampling_extras(target, preset)},
    )
    content, reasoning = text_of(reply.choices[0].message)
    problem = usage_problem(reply.usage, 16)
    if not content and reasoning:
        # A client reads `content`: an answer that is only reasoning is no answer.
        return "fail", NULL_CONTENT, null_content_cause(target.reasoning_parser)
    if not content:
        problem = f"no content (content {content!r})"
    if problem:
        return "fail", problem, None
    return "pass", f"{reply.usage.completion_tokens} tokens with the non-thinking preset", None


async def check_stream(target: Target, client: Any) -> tuple[Status, str, str | None]:
    body = thinking_body(target, False) if target.reasoning_parser else {}
    params: dict[str, Any] = dict(
        model=target.model,
        messages=[{"role": "user", "content": "Count to five."}],
        max_tokens=16,
        temperature=0,
        seed=0,
        extra_body=body,
    )
    start = time.monotonic()
    stream = await client.chat.completions.create(
        stream=True, stream_options={"include_usage": True}, **params
    )
    first: float | None = None
    pieces, finish, chunks, streamed_content = [], None, 0, False
    async for chunk in stream:
        chunks += 1
        for choice in chunk.choices:
            text = delta_text(choice.delta)
            if text and first is None:
                first = time.monotonic() - start
            pieces.append(text)
            streamed_content = streamed_content or bool(choice.delta.content)
            finish = choice.finish_reason or finish
    streamed = "".join(pieces)
    if first is None or not streamed:
        return "fail", f"{chunks} chunks and no text", None
    if finish not in ("stop", "length"):
        return "fail", f"stream ended without a finish reason ({finish!r})", None
    whole = await client.chat.completions.create(**params)
    content, reasoning = text_of(whole.choices[0].message)
    if content and not streamed_content:
        # The same text with the fields apart is equal below: a streaming client reading
        # delta.content would still get nothing, where the whole answer has content.
        off = " with thinking off" if target.reasoning_parser else ""
        return (
            "fail",
            f"the stream carries no content{off} (the text came as reasoning deltas); the "
            "whole answer has content",
            "the engine's reasoning parser splits a streamed answer otherwise than a whole "
            "one: streaming clients reading delta.content get nothing",
        )
    if (reasoning or "") + (content or "") != streamed:
        return (
            "fail",
            "streamed text differs from the non-streamed answer at temperature 0",
            ("the engine is not deterministic at temperature 0, or streaming drops text"),
        )
    return "pass", f"{chunks} chunks, TTFT {first * 1000:.0f} ms, same text as non-streamed", None


async def _ask_thinking(target: Target, client: Any, on: bool) -> tuple[str | None, str | None]:
    """(content, reasoning) of one non-streamed answer. Not streamed on purpose: a
    mismatched parser can still stream `content` deltas (vLLM's deepseek_r1 sees the
    `</think>` the template put in the prompt), which would hide the problem."""
    reply = await client.chat.completions.create(
        model=target.model,
        messages=[{"role": "user", "content": "What is 2 + 3?"}],
        max_tokens=32,
        temperature=0,
        extra_body=thinking_body(target, on),
    )
    return text_of(reply.choices[0].message)


async def check_thinking_on(target: Target, client: Any) -> tuple[Status, str, str | None]:
    content, reasoning = await _ask_thinking(target, client, True)
    if reasoning:
        tail = "" if content else " (content null: still thinking at max_tokens)"
        return "pass", f"reasoning separated, {len(reasoning)} chars{tail}", None
    if content and "<think>" in content:
        return (
            "fail",
            "the reasoning stays inside content (<think> … in the answer)",
            (
                f"no reasoning parser is active; set reasoning.parser (profile has "
                f"{target.reasoning_parser!r})"
            ),
        )
    return (
        "fail",
        "no reasoning returned with thinking on",
        ("the chat template ignores enable_thinking, or the reasoning parser does not match"),
    )


async def check_thinking_off(target: Target, client: Any) -> tuple[Status, str, str | None]:
    content, reasoning = await _ask_thinking(target, client, False)
    if content and not reasoning:
        return "pass", f"content {len(content)} chars, no reasoning", None
    if not content and reasoning:  # null or "": no client reading `content` gets an answer
        return "fail", NULL_CONTENT, null_content_cause(target.reasoning_parser)
    return "fail", f"content {content!r:.40}, reasoning {reasoning!r:.40}", None


async def check_switches(target: Target, client: Any) -> tuple[Status, str, str | None]:
    seen = {}
    for switch in ("/no_think", "/think"):
        reply = await client.chat.completions.create(
            model=target.model,
            messages=[{"role": "user", "content": f"What is 2 + 3? {switch}"}],
            max_tokens=256,
            temperature=0,
        )
        seen[switch] = text_of(reply.choices[0].message)
    _, no_reasoning = seen["/no_think"]
    _, think_reasoning = seen["/think"]
    if no_reasoning and no_reasoning.strip():
        return "fail", "/no_think still returned reasoning", "the model ignores /no_think"
    if not think_reasoning:
        return "fail", "/think returned no reasoning", "the model ignores /think"
    return "pass", "/no_think answers directly, /think reasons first", None


async def check_auth(target: Target, client: Any) -> tuple[Status, str, str | None]:
    # Not through the OpenAI client, which always sends a key: a raw request without one.
    http = Client(target.base_url, timeout=10, user_agent="llmdeploy-smoke")
    try:
        status = (await http.request("GET", "/v1/models")).status
    finally:
        http.close()
    if status in (401, 403):
        return "pass", f"a request without the key gets HTTP {status}", None
    return "fail", f"a request without the key got HTTP {status}", "the API key is not enforced"


SCHEMA = {
    "type": "object",
    "properties": {"answer": {"type": "integer"}, "ok": {"type": "boolean"}},
    "required": ["answer", "ok"],
    "additionalProperties": False,
}


async def check_json_schema(target: Target, client: Any) -> tuple[Status, str, str | None]:
    body = thinking_body(target, False) if target.reasoning_parser else {}
    # Temperature 1 with a fixed seed, not 0: under a JSON grammar a weak model's greedy
    # choice can be whitespace forever ("{" + spaces up to max_tokens); sampling ends it.
    reply = await client.chat.completions.create(
        model=target.model,
        messages=[{"role": "user", "content": "Answer in JSON: what is 2 + 3, and is it odd?"}],
        max_tokens=200,
        temperature=1.0,
        seed=1,
        response_format={
            "type": "json_schema",
            "json_schema": {"name": "answer", "schema": SCHEMA},
        },
        extra_body=body,
    )
    content, reasoning = text_of(reply.choices[0].message)
    if not content and reasoning:
        return (
            "fail",
            "content is null; the JSON landed in reasoning",
            (f"reasoning parser {target.reasoning_parser} does not match the model"),
        )
    try:
        value = jsontext.loads(content or "")
    except ValueError:
        return "fail", f"not JSON: {content!r:.60}", "structured output is not enforced"
    if not (isinstance(value, dict) and set(value) == {"answer", "ok"}):
        return "fail", f"JSON does not match the schema: {value!r:.60}", None
    answer, ok = value["answer"], value["ok"]
    if not (isinstance(answer, int) and not isinstance(answer, bool) and isinstance(ok, bool)):
        return "fail", f"JSON value types do not match the schema: {value!r:.60}", None
    return "pass", f"valid JSON matching the schema: {' '.join((content or '').split())}", None


# id -> (function, why it is skipped for a target, or None when it applies)
CHECKS: dict[str, tuple[CheckFn, Callable[[Target], str | None]]] = {
    "models": (check_models, lambda t: None),
    "completion": (check_completion, lambda t: None),
    "chat": (check_chat, lambda t: None),
    "stream": (check_stream, lambda t: None),
    "thinking-on": (check_thinking_on, lambda t: None if t.reasoning_parser else "no parser"),
    "thinking-off": (check_thinking_off, lambda t: None if t.reasoning_parser else "no parser"),
    "reasoning-field": (
        check_reasoning_field,
        lambda t: None if t.reasoning_parser else "no parser",
    ),
    "think-switches": (
        check_switches,
        lambda t: None if t.prompt_switches else "reasoning.prompt_switches is off",
    ),
    "auth": (check_auth, lambda t: None if t.api_key else "no API key configured"),
    "json-schema": (
        check_json_schema,
        lambda t: None if t.json_schema else f"not declared for engine {t.engine}",
    ),
    "tools": (check_tools, lambda t: None if t.tool_parser else "no tools in the profile"),
}


async def run_checks(
    target: Target, client: Any, selected: list[str], results: list[Check] | None = None
) -> list[Check]:
    """Run the checks in order, appending each to `results` as it ends (a caller that is
    interrupted still knows what was done). A cancellation is not a check's failure: it
    is not an Exception, so it goes through."""
    results = [] if results is None else results
    for check_id in selected:
        function, skip = CHECKS[check_id]
        reason = skip(target)
        if reason:
            results.append(Check(check_id, "skip", 0.0, reason))
            continue
        start = time.monotonic()
        try:
            status, detail, cause = await function(target, client)
        except Exception as exc:  # an API error is this check's failure, not the run's
            status, detail, cause = "fail", f"{type(exc).__name__}: {one_line(str(exc))}", None
        # A detail may quote what the server sent (a max_model_len, a version): one line.
        detail = one_line(detail, 500)
        cause = None if cause is None else one_line(cause, 500)
        results.append(Check(check_id, status, time.monotonic() - start, detail, cause))
    return results


def select(only: list[str], skip: list[str]) -> list[str]:
    """Check ids to run, in their fixed order; unknown ids raise ValueError."""
    unknown = sorted((set(only) | set(skip)) - set(CHECKS))
    if unknown:
        raise ValueError(f"unknown check id(s) {', '.join(unknown)}; known: {', '.join(CHECKS)}")
    return [c for c in CHECKS if (not only or c in only) and c not in skip]
