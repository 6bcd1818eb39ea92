"""Tool-call parsers: one canonical name in profiles, each engine's own spelling on its
command line (as reasoning.py does for reasoning parsers). The spellings differ between
engines: Qwen2.5/Qwen3's `<tool_call>{json}</tool_call>` format is vLLM's `hermes` and
SGLang's `qwen25`; gpt-oss is vLLM's `openai` and SGLang's `gpt-oss`.

Sources: vllm/tool_parsers/__init__.py (_TOOL_PARSERS_TO_REGISTER) and sglang
python/sglang/srt/function_call/function_call_parser.py (ToolCallParserEnum); every
spelling is checked against both parsers in tests/test_engine_contracts.py.
"""

from __future__ import annotations

from llmdeploy.engines.parsers import ParserTable, Spelling

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
# Engines with no tool-call parser to set, and why (what to do instead).
UNSUPPORTED = {
    "llamacpp": "llama-cpp-python has no tool-call parser (its function calling is a "
    "chat_format of its own: extra_args [--chat_format, chatml-function-calling])",
    "transformers": "transformers serve parses tool calls by model type without a setting, "
    "and rejects tool_choice; leave tools out",
    "command": "an engine of type command gets its tool flags in engine.command",
}

PARSERS = ParserTable("tools.parser", TABLE, UNSUPPORTED)
supported = PARSERS.supported
check = PARSERS.check
spelling = PARSERS.spelling
