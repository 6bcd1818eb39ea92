"""Reasoning parsers: one canonical name in profiles, each engine's own spelling
on its command line. The spellings differ between engines (vLLM `deepseek_r1`,
SGLang `deepseek-r1`; vLLM `hunyuan_a13b`, SGLang `hunyuan`), which is a common
way to end up with `content: null` answers.
"""

from __future__ import annotations

from llmdeploy.engines.parsers import ParserTable, Spelling

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

PARSERS = ParserTable("reasoning.parser", TABLE, {})
supported = PARSERS.supported
check = PARSERS.check
spelling = PARSERS.spelling
