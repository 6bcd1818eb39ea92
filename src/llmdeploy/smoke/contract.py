"""Smoke checks of what clients build on: the name of the reasoning field (a rename
breaks every client that reads the old one) and tool calls."""

from __future__ import annotations

from typing import Any

from llmdeploy import jsontext
from llmdeploy.client.aio import Client
from llmdeploy.smoke.base import (
    Status,
    Target,
    null_content_cause,
    one_line,
    text_of,
    thinking_body,
)

REASONING_FIELDS = ("reasoning", "reasoning_content")


def _texts(obj: Any) -> dict[str, str]:
    """The reasoning fields of a message or delta that carry text (null, "" and absent
    carry none), with their text (as text, whatever the server put there)."""
    extra = getattr(obj, "model_extra", None) or {}
    return {name: str(extra[name]) for name in REASONING_FIELDS if extra.get(name)}


async def _fields_used(target: Target, client: Any) -> tuple[dict[str, str], dict[str, str]]:
    """The reasoning fields that carry text with thinking on, and their text: in a whole
    answer, and in a streamed one (its deltas put together). Clients read either, so the
    two are kept apart: a field used by one mode only fails the clients of the other."""
    params: dict[str, Any] = dict(
        model=target.model,
        messages=[{"role": "user", "content": "What is 2 + 3?"}],
        max_tokens=16,
        temperature=0,
        extra_body=thinking_body(target, True),
    )
    reply = await client.chat.completions.create(**params)
    whole = _texts(reply.choices[0].message)
    streamed: dict[str, str] = {}
    stream = await client.chat.completions.create(stream=True, **params)
    async for chunk in stream:
        for choice in chunk.choices:
            for name, text in _texts(choice.delta).items():
                streamed[name] = streamed.get(name, "") + text
    return whole, streamed


def _names(fields: dict[str, str]) -> str:
    return " and ".join(sorted(fields)) or "no reasoning field"


async def engine_version(target: Target) -> str:
    """`ENGINE VERSION` as the server reports it (vLLM and SGLang answer /version), else
    as the profile names it, else `ENGINE (version unknown)`."""
    http = Client(target.base_url, api_key=target.api_key, timeout=10, user_agent="llmdeploy")
    try:
        answer = await http.request("GET", "/version")
        version = answer.json().get("version") if answer.status == 200 else None
    except (OSError, ValueError, AttributeError):
        version = None
    finally:
        http.close()
    # what a server says goes into a one-line report: one line, and short
    version = one_line(str(version), 40) if version else target.engine_version
    return f"{target.engine} {version}" if version else f"{target.engine} (version unknown)"


async def check_reasoning_field(target: Target, client: Any) -> tuple[Status, str, str | None]:
    whole, streamed = await _fields_used(target, client)
    if not whole and not streamed:
        return (
            "fail",
            "no reasoning or reasoning_content field with thinking on",
            "the reasoning parser does not match the model (see thinking-on)",
        )
    names = _names({**whole, **streamed})
    if set(whole) != set(streamed):
        names = f"{_names(whole)} (streamed: {_names(streamed)})"
    target.seen["reasoning_field"] = names
    for mode, fields in (("whole", whole), ("streamed", streamed)):
        if len(set(fields.values())) > 1:
            return (
                "fail",
                f"reasoning and reasoning_content carry different text ({mode} answer): "
                "clients reading one get another reasoning than clients reading the other",
                "the engine fills both names, not with the same text",
            )
    pinned = target.reasoning_field
    if pinned is None:
        return "pass", f"the engine answers under {names} (reasoning.field does not pin one)", None
    if pinned in whole and pinned in streamed:
        return "pass", f"the engine answers under {pinned}, as reasoning.field pins", None
    version = await engine_version(target)
    if pinned not in whole and pinned not in streamed:
        used = _names({**whole, **streamed})
        client_reads = f"message.{pinned}"
    else:
        mode, fields = ("whole", whole) if pinned not in whole else ("streamed", streamed)
        used = f"{_names(fields)} ({mode})"
        client_reads = f"delta.{pinned}" if mode == "streamed" else f"message.{pinned}"
    return (
        "fail",
        f"{version} answers under {used}, not {pinned} as reasoning.field pins: clients "
        f"reading {client_reads} get nothing",
        f"the engine renamed the field ({pinned} → {_names({**whole, **streamed})}); update "
        "the clients and reasoning.field, or pin the engine version",
    )


# `strict: true` asks for arguments held to the schema, as in OpenAI's API. Without it a
# named tool_choice guarantees only the call's envelope: vLLM 0.32 (hermes and every
# parser with a structural tag) constrains `<tool_call>{"name": …, "arguments": ` and
# leaves the arguments free JSON (tool_parsers/structural_tag_registry.py,
# resolve_tool_strictness: a tool without `strict` counts as non-strict), so random
# weights write an open-ended key until max_tokens. Closed sets (enums), so that under
# the schema even random weights end the arguments soon.
WEATHER = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "The weather forecast for a city.",
        "strict": True,
        "parameters": {
            "type": "object",
            "properties": {
                "city": {"type": "string", "enum": ["Paris", "Berlin", "Tokyo"]},
                "days": {"type": "integer", "enum": [1, 2, 3, 4, 5, 6, 7]},
            },
            "required": ["city", "days"],
            "additionalProperties": False,
        },
    },
}
# The grammar still lets JSON whitespace in anywhere: at temperature 1 the tiny random
# Qwen3 (a 512-token byte-level vocabulary) took 53-156 tokens for the whole call over
# 100 seeds on vLLM 0.32 CPU (median 82); greedy is whitespace up to the limit.
MAX_TOKENS = 256


def _schema_problem(arguments: str) -> str | None:
    """Why the arguments do not match WEATHER's parameters, or None."""
    try:
        value = jsontext.loads(arguments)
    except ValueError:
        return f"arguments are not JSON: {arguments!r:.60}"
    properties = WEATHER["function"]["parameters"]["properties"]  # type: ignore[index]
    if not isinstance(value, dict) or set(value) != set(properties):
        return f"arguments do not match the schema: {value!r:.60}"
    for key, rule in properties.items():
        if value[key] not in rule["enum"] or isinstance(value[key], bool):
            return f"arguments do not match the schema: {key} = {value[key]!r:.30}"
    return None


def _cut_cause(target: Target, usage: Any) -> str:
    """Why a forced call ended at finish `length`: max_tokens, or the context (vLLM and
    SGLang lower max_tokens to what is left of max_model_len after the prompt, which
    carries every tool's definition)."""
    completion = getattr(usage, "completion_tokens", None) or 0
    prompt = getattr(usage, "prompt_tokens", None) or 0
    if usage is None or completion >= MAX_TOKENS:
        return f"the call was cut at max_tokens ({MAX_TOKENS}) before the parser could read it"
    limit = f"max_model_len {target.max_model_len}" if target.max_model_len else "the context"
    return (
        f"the call was cut at the context limit: the prompt with the tool definition took "
        f"{prompt} tokens, leaving {completion} of {limit} for the call; raise "
        f"resources.max_model_len"
    )


async def check_tools(target: Target, client: Any) -> tuple[Status, str, str | None]:
    body = thinking_body(target, False) if target.reasoning_parser else {}
    reply = await client.chat.completions.create(
        model=target.model,
        messages=[{"role": "user", "content": "What is the weather in Paris for 3 days?"}],
        tools=[WEATHER],
        tool_choice={"type": "function", "function": {"name": "get_weather"}},
        max_tokens=MAX_TOKENS,
        temperature=1.0,  # as for json-schema: greedy whitespace could fill max_tokens
        seed=1,
        extra_body=body,
    )
    message = reply.choices[0].message
    calls = message.tool_calls or []
    if not calls:
        finish = reply.choices[0].finish_reason
        content, reasoning = text_of(message)
        cause = f"tool calling is not enabled on the engine (tools.parser {target.tool_parser})"
        if finish == "length":
            cause = _cut_cause(target, reply.usage)
        elif not content and reasoning:
            # The tool parser reads only content: a call the reasoning parser took is lost.
            landed = "the call landed in reasoning with thinking off"
            return "fail", f"no tool_calls; {landed}", null_content_cause(target.reasoning_parser)
        return "fail", f"no tool_calls (finish {finish}); content {content!r:.40}", cause
    call = calls[0]
    function = getattr(call, "function", None)
    if function is None:
        return "fail", f"tool_calls[0] has no function: {call!r:.60}", None
    if function.name != "get_weather":
        return "fail", f"tool_calls names {function.name!r:.40}, not get_weather", None
    if not isinstance(function.arguments, str):
        # OpenAI's arguments are JSON in a string: a client's json.loads fails on anything else
        return "fail", f"arguments are not a JSON string: {function.arguments!r:.60}", None
    problem = _schema_problem(function.arguments)
    if problem:
        return (
            "fail",
            problem,
            "the function's schema (strict: true) is not enforced as a grammar under a "
            "named tool_choice",
        )
    return "pass", f"get_weather({' '.join(function.arguments.split())})", None
