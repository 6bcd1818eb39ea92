"""Reasoning parsers: one canonical name in profiles, each engine's own spelling
on its command line. The spellings differ between engines (vLLM `deepseek_r1`,
SGLang `deepseek-r1`; vLLM `hunyuan_a13b`, SGLang `hunyuan`), which is a common
way to end up with `content: null` answers.
"""

from __future__ import annotations

from dataclasses import dataclass

from llmdeploy.versions import Version, at_least, show


@dataclass(frozen=True)
class Spelling:
    name: str
    since: Version | None = None  # first engine release that knows the parser


# canonical -> engine -> spelling. Sources: vllm/reasoning/__init__.py,
# sglang python/sglang/srt/parser/reasoning_parser.py (see ../shared/ENGINES.md).
TABLE: dict[str, dict[str, Spelling]] = {
    "qwen3": {"vllm": Spelling("qwen3", (0, 8, 5)), "sglang": Spelling("qwen3")},
    "deepseek_r1": {"vllm": Spelling("deepseek_r1", (0, 7, 1)), "sglang": Spelling("deepseek-r1")},
    "deepseek_v3": {"vllm": Spelling("deepseek_v3", (0, 10, 2)), "sglang": Spelling("deepseek-v3")},
    "hunyuan": {"vllm": Spelling("hunyuan_a13b", (0, 9, 2)), "sglang": Spelling("hunyuan")},
    "glm45": {"vllm": Spelling("glm45", (0, 10, 0)), "sglang": Spelling("glm45")},
    "gpt_oss": {"vllm": Spelling("openai_gptoss", (0, 10, 2)), "sglang": Spelling("gpt-oss")},
    "granite": {"vllm": Spelling("granite", (0, 8, 3))},
    "mistral": {"vllm": Spelling("mistral", (0, 10, 0)), "sglang": Spelling("mistral")},
    "kimi_k2": {"vllm": Spelling("kimi_k2", (0, 11, 0)), "sglang": Spelling("kimi_k2")},
    "minimax_m2": {"vllm": Spelling("minimax_m2", (0, 11, 1))},
    "step3": {"vllm": Spelling("step3", (0, 10, 2)), "sglang": Spelling("step3")},
}
NAMES: tuple[str, ...] = tuple(TABLE)
# Engine spellings people paste from engine docs, mapped to the canonical name.
_ALIASES = {s.name: canon for canon, engines in TABLE.items() for s in engines.values()}


def supported(engine: str, version: Version | None) -> list[str]:
    return [
        canon
        for canon, engines in TABLE.items()
        if engine in engines
        and (engines[engine].since is None or at_least(version, engines[engine].since or ()))
    ]


def check(parser: str, engine: str, version: Version | None) -> None:
    """Raise ValueError("reasoning.parser: …") unless `engine` (at `version`) knows `parser`."""
    if parser not in TABLE:
        canon = _ALIASES.get(parser)
        import difflib  # only when the name is wrong: loading any profile imports this module

        close = [canon] if canon else difflib.get_close_matches(parser, NAMES, n=1)
        suggestion = f"; did you mean {close[0]}?" if close else ""
        raise ValueError(
            f"reasoning.parser: unknown parser {parser!r}{suggestion} (known: {', '.join(NAMES)})"
        )
    known = supported(engine, version)
    if parser in known:
        return
    if engine not in TABLE[parser]:
        where = f"engine {engine}"
    else:
        since = TABLE[parser][engine].since or ()
        where = f"{engine} {show(version or ())} (needs {show(since)} or newer)"
    listed = ", ".join(known) if known else "none"
    raise ValueError(f"reasoning.parser: {parser} is not supported by {where}; it knows: {listed}")


def spelling(parser: str, engine: str) -> str:
    return TABLE[parser][engine].name
