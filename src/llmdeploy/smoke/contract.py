"""Smoke checks of what clients build on: the name of the reasoning field (a rename
breaks every client that reads the old one) and tool calls."""

from __future__ import annotations

from typing import Any

from llmdeploy import jsontext
from llmdeploy.client.aio import Client
from llmdeploy.smoke.base import Status, Target, null_content_cause, text_of, thinking_body

REASONING_FIELDS = ("reasoning", "reasoning_content")


def _fields_with_text(obj: Any) -> set[str]:
    extra = getattr(obj, "model_extra", None) or {}
    return {name for name in REASONING_FIELDS if extra.get(name)}


async def _fields_used(target: Target, client: Any) -> set[str]:
    """The reasoning fields that carry text with thinking on, in a whole answer and in a
    streamed one (clients read either)."""
    params: dict[str, Any] = dict(
        model=target.model,
        messages=[{"role": "user", "content": "What is 2 + 3?"}],
        max_tokens=16,
        temperature=0,
        extra_body=thinking_body(target, True),
    )
    reply = await client.chat.completions.create(**params)
    used = _fields_with_text(reply.choices[0].message)
    stream = await client.chat.completions.create(stream=True, **params)
    async for chunk in stream:
        for choice in chunk.choices:
            used |= _fields_with_text(choice.delta)
    return used


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
    version = version or target.engine_version
    return f"{target.engine} {version}" if version else f"{target.engine} (version unknown)"


async def check_reasoning_field(target: Target, client: Any) -> tuple[Status, str, str | None]:
    used = await _fields_used(target, client)
    if not used:
        return (
            "fail",
            "no reasoning or reasoning_content field with thinking on",
            "the reasoning parser does not match the model (see thinking-on)",
        )
    names = " and ".join(sorted(used))
    target.seen["reasoning_field"] = names
    pinned = target.reasoning_field
    if pinned is None:
        return "pass", f"the engine answers under {names} (reasoning.field does not pin one)", None
    if pinned in used:
        return "pass", f"the engine answers under {pinned}, as reasoning.field pins", None
    version = await engine_version(target)
    return (
        "fail",
        f"{version} answers under {names}, not {pinned} as reasoning.field pins: clients "
        f"reading message.{pinned} get nothing",
        f"the engine renamed the field ({pinned} → {names}); update the clients and "
        f"reasoning.field, or pin the engine version",
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
    if call.function.name != "get_weather":
        return "fail", f"tool_calls names {call.function.name!r}, not get_weather", None
    problem = _schema_problem(call.function.arguments)
    if problem:
        return (
            "fail",
            problem,
            "the function's schema (strict: true) is not enforced as a grammar under a "
            "named tool_choice",
        )
    return "pass", f"get_weather({' '.join(call.function.arguments.split())})", None
