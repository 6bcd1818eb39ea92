"""Where benchmark prompts come from: seeded random text, a JSONL file, or ShareGPT JSON.

No tokenizer is loaded (the server's usage is the truth about token counts). Random
prompts are made of common English words; token_prompts.py cuts them to an exact number
of tokens through the server's own tokenizer endpoint. Where the server has none, a
prompt is `input_len` words (`random_prompts`), ≈ 1.3-3 tokens each depending on the
vocabulary, plus the chat template's tokens.
"""

from __future__ import annotations

import json
import random
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from llmdeploy import jsontext

_VOCABULARY = """
the of and to in is was for on are with as be at by this had not but from or have an they
which one you were her all she there would their we him been has when who will more no if
out so said what up its about into than them can only other new some could time these two
may then do first any my now such like our over man me even most made after also did many
before must through back years where much your way well down should because each just
those people how too little state good very make world still own see men work long get
here between both life being under never day same another know while last might us great
old year off come since against go came right used take three
"""
WORDS: tuple[str, ...] = tuple(_VOCABULARY.split())


@dataclass(frozen=True)
class Prompt:
    """One request's input: plain text, or a chat message list (as the file gave it)."""

    text: str | None = None
    messages: tuple[dict[str, Any], ...] | None = None
    max_tokens: int | None = None  # a per-prompt output length overriding the run's

    def as_messages(self) -> list[dict[str, Any]]:
        if self.messages is not None:
            return list(self.messages)
        return [{"role": "user", "content": self.text or ""}]

    def as_text(self) -> str:
        """For /v1/completions: a message list is flattened to its text contents."""
        if self.text is not None:
            return self.text
        parts = [m.get("content") for m in self.messages or ()]
        return "\n".join(p for p in parts if isinstance(p, str))


@dataclass(frozen=True)
class PromptOrigin:
    """How a run's prompts were made, for the report: `tokens` (exactly `input_len` tokens
    each as the server counts them, `counted_by` says how), `words` (`input_len` words:
    the server has no tokenizer endpoint) or `file`."""

    kind: Literal["tokens", "words", "file"]
    input_len: int | None = None
    counted_by: str | None = None  # e.g. "POST /tokenize, chat template included"
    path: str | None = None  # kind "file"
    calls: int = 0  # round trips to the server's tokenizer (and probes)
    seconds: float = 0.0  # building them took
    off_target: int = 0  # prompts the server's tokenizer would not let be exactly input_len
    warning: str | None = None  # why the prompts are not what --input-len asked for

    def line(self) -> str:
        """The table's `prompts:` line."""
        if self.kind == "file":
            return f"from {self.path}"
        if self.kind == "words":
            return f"{self.input_len} random words each (not tokens: no tokenizer endpoint)"
        off = f", {self.off_target} not exact" if self.off_target else ""
        return (
            f"{self.input_len} tokens each as the server counts them ({self.counted_by}; "
            f"built in {self.seconds:.2f} s, {self.calls} tokenizer calls{off})"
        )

    def to_json(self) -> dict[str, Any]:
        return {k: v for k, v in self.__dict__.items() if v is not None}


def random_prompts(count: int, input_len: int, seed: int = 0) -> list[Prompt]:
    """`count` prompts of `input_len` random words; the same seed gives the same prompts."""
    if count < 1 or input_len < 1:
        raise ValueError("random prompts need count ≥ 1 and input length ≥ 1")
    rng = random.Random(seed)
    return [Prompt(text=" ".join(rng.choices(WORDS, k=input_len))) for _ in range(count)]


def _positive_int(value: object, where: str) -> int | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{where}: max_tokens must be a positive integer, got {value!r}")
    return value


def load_jsonl(path: str | Path) -> list[Prompt]:
    """One JSON object a line: `{"prompt": "..."}` or `{"messages": [...]}`, optionally
    with `"max_tokens"`. Blank lines are skipped."""
    prompts: list[Prompt] = []
    with open(path, encoding="utf-8") as f:
        for lineno, line in enumerate(f, 1):
            if line.strip():
                prompts.append(parse_jsonl_line(line, f"{path}:{lineno}")[0])
    if not prompts:
        raise ValueError(f"{path}: no prompts")
    return prompts


def parse_jsonl_line(line: str, where: str) -> tuple[Prompt, dict[str, Any]]:
    """One line of a prompts file: the Prompt, and the object it came from (for fields
    like `generate`'s `id`). ValueError names `where` (file:line)."""
    try:
        obj = jsontext.loads(line)
    except json.JSONDecodeError as e:
        raise ValueError(f"{where}: not JSON ({e.msg})") from None
    if not isinstance(obj, dict):
        raise ValueError(f"{where}: expected an object with 'prompt' or 'messages'")
    limit = _positive_int(obj.get("max_tokens"), where)
    if isinstance(obj.get("prompt"), str):
        return Prompt(text=obj["prompt"], max_tokens=limit), obj
    messages = obj.get("messages")
    if isinstance(messages, list) and messages:
        if not all(isinstance(m, dict) and "role" in m for m in messages):
            raise ValueError(f"{where}: every message needs a 'role'")
        return Prompt(messages=tuple(messages), max_tokens=limit), obj
    raise ValueError(f"{where}: expected a string 'prompt' or a 'messages' list")


def load_sharegpt(path: str | Path) -> list[Prompt]:
    """A ShareGPT-style JSON list of `{"conversations": [{"from": ..., "value": ...}]}`:
    each conversation's first human turn. Conversations without one are skipped."""
    with open(path, encoding="utf-8") as f:
        try:
            data = jsontext.loads(f.read())
        except json.JSONDecodeError as e:
            raise ValueError(f"{path}: not JSON ({e.msg}, line {e.lineno})") from None
    if not isinstance(data, list):
        raise ValueError(f"{path}: expected a JSON list of conversations")
    prompts: list[Prompt] = []
    for item in data:
        turns = item.get("conversations") if isinstance(item, dict) else None
        for turn in turns if isinstance(turns, list) else ():
            if (
                isinstance(turn, dict)
                and turn.get("from") in ("human", "user")
                and isinstance(turn.get("value"), str)
                and turn["value"].strip()
            ):
                prompts.append(Prompt(text=turn["value"]))
                break
    if not prompts:
        raise ValueError(f"{path}: no conversation with a human turn")
    return prompts


def load_prompts(path: str | Path) -> list[Prompt]:
    """By file type: `.jsonl` is JSONL, anything else is read as ShareGPT JSON."""
    return load_jsonl(path) if str(path).endswith(".jsonl") else load_sharegpt(path)
