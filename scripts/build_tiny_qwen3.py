"""Build a tiny, random, deterministic Qwen3 model for tests on CPU engines.

    VENV/bin/python scripts/build_tiny_qwen3.py OUT_DIR

Run it with the vLLM venv's python (scripts/vllm_env.sh): it needs torch, transformers
and tokenizers. The result (~0.8 MB) is a real `Qwen3ForCausalLM` checkpoint that vLLM
serves: config, bf16 safetensors, a byte-level BPE tokenizer trained here on the text
below, Qwen3's own chat template (with `enable_thinking`) and a generation config.

Its weights are random, so its words are gibberish: assert on structure (which field
carries the text, JSON-schema output, streaming, usage), never on words. Two things
matter for the reasoning parser, as in the real Qwen3 tokenizer:
  * `<|im_start|>`, `<|im_end|>`, `<|endoftext|>` are special tokens;
  * `<think>`, `</think>` (and the tool-call tags) are ORDINARY added tokens: special
    tokens are stripped on decode, and the parser would then never see `</think>`.
Same input, same bytes: the seed is fixed and nothing depends on time or randomness.
"""

# ruff: noqa: E501  (the chat template below keeps Qwen3's own long lines)

import sys
from pathlib import Path

import torch
import transformers
from tokenizers import (
    AddedToken,
    Regex,
    Tokenizer,
    decoders,
    models,
    normalizers,
    pre_tokenizers,
    trainers,
)
from transformers import GenerationConfig, PreTrainedTokenizerFast, Qwen3Config, Qwen3ForCausalLM

SEED = 0
VOCAB_SIZE = 512  # tokenizer and embedding rows alike: a multiple of 64, every id decodable
SPECIAL = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]
ORDINARY_ADDED = [
    "<tool_call>",
    "</tool_call>",
    "<tool_response>",
    "</tool_response>",
    "<think>",
    "</think>",
]

# Training text for the BPE merges: a little English, JSON and chat-ish text.
CORPUS = [
    "The quick brown fox jumps over the lazy dog. A large language model predicts the next token.",
    "Hello! How can I help you today? Please answer in one short sentence.",
    "An inference server loads the model, listens on a port and answers requests over HTTP.",
    "The engine starts, warms up, reports that it is ready, and stops cleanly when it is told to.",
    "Let me think step by step about the question before I give the final answer.",
    '{"name": "get_weather", "arguments": {"city": "Paris", "unit": "celsius"}}',
    '{"answer": 42, "ok": true, "items": [1, 2, 3], "reason": null}',
    "def add(a, b):\n    return a + b\n\nprint(add(2, 3))\n",
    "Numbers 0 1 2 3 4 5 6 7 8 9 10 100 1000; punctuation , . ; : ! ? ( ) [ ] { } < > / \\ - _ = +",
    "system user assistant tool reasoning content completion chat message stream health metrics",
]

# Qwen3's chat template (Qwen/Qwen3-8B tokenizer_config.json): `enable_thinking=false`
# pre-fills an empty <think></think> block; otherwise the model opens its own.
CHAT_TEMPLATE = r"""{%- if tools %}
    {{- '<|im_start|>system\n' }}
    {%- if messages[0].role == 'system' %}
        {{- messages[0].content + '\n\n' }}
    {%- endif %}
    {{- "# Tools\n\nYou may call one or more functions to assist with the user query.\n\nYou are provided with function signatures within <tools></tools> XML tags:\n<tools>" }}
    {%- for tool in tools %}
        {{- "\n" }}
        {{- tool | tojson }}
    {%- endfor %}
    {{- "\n</tools>\n\nFor each function call, return a json object with function name and arguments within <tool_call></tool_call> XML tags:\n<tool_call>\n{\"name\": <function-name>, \"arguments\": <args-json-object>}\n</tool_call><|im_end|>\n" }}
{%- else %}
    {%- if messages[0].role == 'system' %}
        {{- '<|im_start|>system\n' + messages[0].content + '<|im_end|>\n' }}
    {%- endif %}
{%- endif %}
{%- set ns = namespace(multi_step_tool=true, last_query_index=messages|length - 1) %}
{%- for message in messages[::-1] %}
    {%- set index = (messages|length - 1) - loop.index0 %}
    {%- if ns.multi_step_tool and message.role == "user" and message.content is string and not(message.content.startswith('<tool_response>') and message.content.endswith('</tool_response>')) %}
        {%- set ns.multi_step_tool = false %}
        {%- set ns.last_query_index = index %}
    {%- endif %}
{%- endfor %}
{%- for message in messages %}
    {%- if message.content is string %}
        {%- set content = message.content %}
    {%- else %}
        {%- set content = '' %}
    {%- endif %}
    {%- if (message.role == "user") or (message.role == "system" and not loop.first) %}
        {{- '<|im_start|>' + message.role + '\n' + content + '<|im_end|>' + '\n' }}
    {%- elif message.role == "assistant" %}
        {%- set reasoning_content = '' %}
        {%- if message.reasoning_content is string %}
            {%- set reasoning_content = message.reasoning_content %}
        {%- else %}
            {%- if '</think>' in content %}
                {%- set reasoning_content = content.split('</think>')[0].rstrip('\n').split('<think>')[-1].lstrip('\n') %}
                {%- set content = content.split('</think>')[-1].lstrip('\n') %}
            {%- endif %}
        {%- endif %}
        {%- if loop.index0 > ns.last_query_index %}
            {%- if loop.last or (not loop.last and reasoning_content) %}
                {{- '<|im_start|>' + message.role + '\n<think>\n' + reasoning_content.strip('\n') + '\n</think>\n\n' + content.lstrip('\n') }}
            {%- else %}
                {{- '<|im_start|>' + message.role + '\n' + content }}
            {%- endif %}
        {%- else %}
            {{- '<|im_start|>' + message.role + '\n' + content }}
        {%- endif %}
        {%- if message.tool_calls %}
            {%- for tool_call in message.tool_calls %}
                {%- if (loop.first and content) or (not loop.first) %}
                    {{- '\n' }}
                {%- endif %}
                {%- if tool_call.function %}
                    {%- set tool_call = tool_call.function %}
                {%- endif %}
                {{- '<tool_call>\n{"name": "' }}
                {{- tool_call.name }}
                {{- '", "arguments": ' }}
                {%- if tool_call.arguments is string %}
                    {{- tool_call.arguments }}
                {%- else %}
                    {{- tool_call.arguments | tojson }}
                {%- endif %}
                {{- '}\n</tool_call>' }}
            {%- endfor %}
        {%- endif %}
        {{- '<|im_end|>\n' }}
    {%- elif message.role == "tool" %}
        {%- if loop.first or (messages[loop.index0 - 1].role != "tool") %}
            {{- '<|im_start|>user' }}
        {%- endif %}
        {{- '\n<tool_response>\n' }}
        {{- content }}
        {{- '\n</tool_response>' }}
        {%- if loop.last or (messages[loop.index0 + 1].role != "tool") %}
            {{- '<|im_end|>\n' }}
        {%- endif %}
    {%- endif %}
{%- endfor %}
{%- if add_generation_prompt %}
    {{- '<|im_start|>assistant\n' }}
    {%- if enable_thinking is defined and enable_thinking is false %}
        {{- '<think>\n\n</think>\n\n' }}
    {%- endif %}
{%- endif %}"""


def build_tokenizer() -> PreTrainedTokenizerFast:
    """Byte-level BPE shaped like Qwen2/3's: NFC, GPT-4-style split, byte-level bytes."""
    tok = Tokenizer(models.BPE())
    tok.normalizer = normalizers.NFC()
    split = (
        r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}"
        r"| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"
    )
    tok.pre_tokenizer = pre_tokenizers.Sequence(
        [
            pre_tokenizers.Split(Regex(split), behavior="isolated"),
            pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
        ]
    )
    tok.decoder = decoders.ByteLevel()
    n_added = len(SPECIAL) + len(ORDINARY_ADDED)
    trainer = trainers.BpeTrainer(
        vocab_size=VOCAB_SIZE - n_added,
        show_progress=False,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
    )
    tok.train_from_iterator(CORPUS, trainer=trainer)
    # Added after training, so their ids follow the BPE vocabulary (as in Qwen3).
    tok.add_special_tokens([AddedToken(t, special=True, normalized=False) for t in SPECIAL])
    tok.add_tokens([AddedToken(t, special=False, normalized=False) for t in ORDINARY_ADDED])
    if tok.get_vocab_size() != VOCAB_SIZE:
        raise SystemExit(
            f"tokenizer has {tok.get_vocab_size()} tokens, want {VOCAB_SIZE}: add training text"
        )
    return PreTrainedTokenizerFast(
        tokenizer_object=tok,
        chat_template=CHAT_TEMPLATE,
        model_max_length=4096,
        bos_token=None,
        eos_token="<|im_end|>",
        pad_token="<|endoftext|>",
        unk_token=None,
        extra_special_tokens=["<|im_start|>", "<|im_end|>"],
        clean_up_tokenization_spaces=False,
        split_special_tokens=False,
    )


def main() -> None:
    if len(sys.argv) != 2:
        raise SystemExit(f"usage: {sys.argv[0]} OUT_DIR")
    out = Path(sys.argv[1])
    out.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(SEED)
    torch.use_deterministic_algorithms(True)
    transformers.utils.logging.disable_progress_bar()

    tokenizer = build_tokenizer()
    ids = {t: tokenizer.convert_tokens_to_ids(t) for t in SPECIAL}
    config = Qwen3Config(
        vocab_size=VOCAB_SIZE,
        hidden_size=128,
        intermediate_size=256,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        head_dim=32,
        max_position_embeddings=4096,
        rope_theta=1_000_000.0,
        tie_word_embeddings=True,
        bos_token_id=ids["<|endoftext|>"],
        eos_token_id=ids["<|im_end|>"],
        pad_token_id=ids["<|endoftext|>"],
    )
    model = Qwen3ForCausalLM(config).to(torch.bfloat16).eval()
    model.generation_config = GenerationConfig(  # Qwen3's own sampling defaults
        bos_token_id=ids["<|endoftext|>"],
        pad_token_id=ids["<|endoftext|>"],
        eos_token_id=[ids["<|im_end|>"], ids["<|endoftext|>"]],
        do_sample=True,
        temperature=0.6,
        top_k=20,
        top_p=0.95,
    )

    model.save_pretrained(out)
    tokenizer.save_pretrained(out)
    n_params = sum(p.numel() for p in model.parameters())
    print(f"tiny Qwen3 ({n_params} parameters, vocab {VOCAB_SIZE}) written to {out}")


if __name__ == "__main__":
    main()
