"""Tool-call parsers: one canonical name in profiles, each engine's own spelling on its
command line (as reasoning.py does for reasoning parsers). The spellings differ between
engines: Qwen2.5/Qwen3's `<tool_call>{json}</tool_call>` format is vLLM's `hermes` and
SGLang's `qwen25`; gpt-oss is vLLM's `openai` and SGLang's `gpt-oss`.

Sources: vllm/tool_parsers/__init__.py (_TOOL_PARSERS_TO_REGISTER) and sglang
python/sglang/srt/function_call/function_call_parser.py (ToolCallParserEnum); every
spelling is checked against both parsers in tests/test_engine_contracts.py.
"""

from __future__ import annotations

from dataclasses import dataclass

from llmdeploy.versions import Version, at_least, show


@dataclass(frozen=True)
class Spelling:
    name: str
    since: Version | None = None  # first engine release that knows the parser


# canonical -> engine -> spelling
TABLE: dict[str, dict[str, Spelling]] = {
    "hermes": {"vllm": Spelling("hermes"), "sglang": Spelling("qwen25")},  # Qwen2.5, Qwen3
    "qwen3_coder": {"vllm": Spelling("qwen3_coder"), "sglang": Spelling("qwen3_coder")},
    "llama3_json": {"vllm": Spelling("llama3_json"), "sglang": Spelling("llama3")},
    "mistral": {"vllm": Spelling("mistral"), "sglang": Spelling("mistral")},
    "deepseek_v3": {"vllm": Spelling("deepseek_v3"), "sglang": Spelling("deepseekv3")},
    "deepseek_v31": {"vllm": Spelling("deepseek_v31"), "sglang": Spelling("deepseekv31")},
    "glm45": {"vllm": Spelling("glm45"), "sglang": Spelling("glm45")},
    "hunyuan": {"vllm": Spelling("hunyuan_a13b"), "sglang": Spelling("hunyuan")},
    "gpt_oss": {"vllm": Spelling("openai"), "sglang": Spelling("gpt-oss")},
    "kimi_k2": {"vllm": Spelling("kimi_k2"), "sglang": Spelling("kimi_k2")},
    "minimax_m2": {"vllm": Spelling("minimax_m2"), "sglang": Spelling("minimax-m2")},
    "pythonic": {"vllm": Spelling("pythonic"), "sglang": Spelling("pythonic")},
    "step3": {"vllm": Spelling("step3"), "sglang": Spelling("step3")},
}
NAMES: tuple[str, ...] = tuple(TABLE)
# Engine spellings people paste from engine docs, mapped to the canonical name.
_ALIASES = {s.name: canon for canon, engines in TABLE.items() for s in engines.values()}
# Engines with no tool-call parser to set, and why (what to do instead).
UNSUPPORTED = {
    "llamacpp": "llama-cpp-python has no tool-call parser (its function calling is a "
    "chat_format of its own: extra_args [--chat_format, chatml-function-calling])",
    "transformers": "transformers serve parses tool calls by model type without a setting, "
    "and rejects tool_choice; leave tools out",
    "command": "an engine of type command gets its tool flags in engine.command",
}


def supported(engine: str, version: Version | None) -> list[str]:
    return [
        canon
        for canon, engines in TABLE.items()
        if engine in engines
        and (engines[engine].since is None or at_least(version, engines[engine].since or ()))
    ]


def check(parser: str, engine: str, version: Version | None) -> None:
    """Raise ValueError("tools.parser: …") unless `engine` (at `version`) knows `parser`."""
    if parser not in TABLE:
        canon = _ALIASES.get(parser)
        import difflib  # only when the name is wrong

        close = [canon] if canon else difflib.get_close_matches(parser, NAMES, n=1)
        suggestion = f"; did you mean {close[0]}?" if close else ""
        raise ValueError(
            f"tools.parser: unknown parser {parser!r}{suggestion} (known: {', '.join(NAMES)})"
        )
    if engine in UNSUPPORTED:
        raise ValueError(f"tools: not for engine {engine}: {UNSUPPORTED[engine]}")
    known = supported(engine, version)
    if parser in known:
        return
    if engine not in TABLE[parser]:
        where = f"engine {engine}"
    else:
        since = TABLE[parser][engine].since or ()
        where = f"{engine} {show(version or ())} (needs {show(since)} or newer)"
    listed = ", ".join(known) if known else "none"
    raise ValueError(f"tools.parser: {parser} is not supported by {where}; it knows: {listed}")


def spelling(parser: str, engine: str) -> str:
    return TABLE[parser][engine].name
