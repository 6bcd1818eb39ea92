"""Random prompts of exactly `input_len` tokens as the server under test counts them, made
through the server's own tokenizer endpoint (llmdeploy loads no tokenizer).

What is counted: the prompt tokens of the request the bench really sends, i.e. what the
server reports as `usage.prompt_tokens`:
- /v1/completions: the prompt text plus the special tokens the server adds to it (a BOS,
  for models that have one);
- /v1/chat/completions: the whole chat-templated conversation of one user message, so the
  template's own tokens (`<|im_start|>user\\n … <|im_end|>\\n<|im_start|>assistant\\n`, 12
  on Qwen3) are part of the count and the message text is `input_len` minus them. (`vllm
  bench serve --dataset-name random` counts the text only; on its default
  /v1/completions and a model without BOS that is the same number.)

Tokenizer endpoints, tried in this order, once per server (every call carries the bench's
Authorization header — SGLang and llama-cpp-python guard them with the API key):
- vLLM (vllm/entrypoints/serve/tokenize/) and SGLang (srt/entrypoints/openai/
  serving_tokenize.py): `POST /tokenize` {model, prompt | messages} → {count, tokens};
  `POST /detokenize` {model, tokens} → {prompt} (vLLM) | {text} (SGLang). Messages are
  rendered exactly as for a chat completion (the server's default template kwargs
  included): the count is the server's own, for both endpoints.
- llama-cpp-python's server (llama_cpp/server/app.py): `POST /extras/tokenize` {input} →
  {tokens} and `/extras/detokenize` {tokens} → {text}, text only. What a request adds to
  its text (chat template, BOS) is measured by one 1-token request before the run — its
  usage.prompt_tokens minus the text's count — and taken as constant.
- none (transformers serve, most gateways): `input_len` words per prompt, with a warning.

How (≈ 2 round trips per prompt + a handful): one seeded stream of random words per prompt
set, tokenized in a few large calls; prompt i is the decoded window ids[i·t : i·t + t] of
that stream, t = input_len minus what the request adds. Each window's text is counted in
its final form; one that re-tokenizes to another length (a cut that merges on
re-encoding, a template boundary) is widened or narrowed by the difference, a few times,
then moved by a token. Windows are disjoint, so no two prompts share a prefix beyond the
template's: a prefix cache cannot flatter the run (as vLLM's random dataset).
"""

from __future__ import annotations

import asyncio
import math
import random
import time
from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Any

from llmdeploy.client.aio import Client

from .client import PATHS, Endpoint, RequestParams, build_body
from .prompts import WORDS, Prompt, PromptOrigin, random_prompts

PROBE_TEXT = "the first time"
SAMPLE_WORDS = 64  # the text whose count tells what a request adds to it
CHUNK_TOKENS = 8192  # about this many tokens of the word stream per tokenize call
IN_FLIGHT = 8  # tokenizer calls at once (the server's tokenizer is the limit, not us)
RESIZES = 4  # attempts at one window's length before it is moved
MOVES = 3


class TokenizerError(Exception):
    """The server's tokenizer failed while the prompts were being made."""


class TokenizerRefused(TokenizerError):
    """The server refused the tokenizer request itself (HTTP 401/403): a wrong API key."""


class _Failed(TokenizerError):
    def __init__(self, path: str, status: int, message: str) -> None:
        super().__init__(f"POST {path}: HTTP {status}: {message}")
        self.status = status


@dataclass
class PromptSet:
    """One level's prompts, and how they were made."""

    prompts: list[Prompt]
    origin: PromptOrigin


@dataclass
class _Counter:
    calls: int = 0  # round trips to the server for the prompts


class _Tokenizer:
    """One server's tokenizer, over HTTP."""

    path = ""
    detokenize_path = ""

    def __init__(self, client: Client, model: str, counter: _Counter) -> None:
        self.client, self.model, self.counter = client, model, counter

    async def post(self, path: str, payload: dict[str, Any]) -> dict[str, Any]:
        self.counter.calls += 1
        response = await self.client.request("POST", path, payload)
        if response.status in (401, 403):
            raise TokenizerRefused(f"POST {path}: HTTP {response.status}: {response.error}")
        if response.status != 200:
            raise _Failed(path, response.status, response.error)
        try:
            data = response.json()
        except ValueError:
            data = None
        if not isinstance(data, dict):
            raise _Failed(path, 200, "not a JSON object")
        return data

    @staticmethod
    def ids(data: dict[str, Any], path: str) -> list[int]:
        tokens = data.get("tokens")
        if not isinstance(tokens, list) or not all(type(t) is int for t in tokens):
            raise _Failed(path, 200, "no token list in the answer")
        return tokens

    async def encode(self, text: str) -> list[int]:
        """The text's own tokens, without what the server adds (BOS)."""
        raise NotImplementedError

    async def decode(self, ids: list[int]) -> str:
        data = await self.post(self.detokenize_path, {"model": self.model, "tokens": ids})
        text = data.get("prompt", data.get("text"))  # vLLM says prompt, the others text
        if not isinstance(text, str):
            raise _Failed(self.detokenize_path, 200, "no text in the answer")
        return text

    async def count_text(self, text: str) -> int:
        """The text as a completion prompt: its tokens and the server's special ones."""
        raise NotImplementedError

    async def count_request(self, text: str, endpoint: Endpoint, chat_kwargs: Any) -> int | None:
        """Exactly what a request of `endpoint` carrying `text` counts, if the server can
        say (None: it tokenizes text only)."""
        return None


class _TokenizeEndpoint(_Tokenizer):
    """vLLM and SGLang: POST /tokenize and /detokenize, text or chat messages."""

    path, detokenize_path = "/tokenize", "/detokenize"

    async def encode(self, text: str) -> list[int]:
        payload = {"model": self.model, "prompt": text, "add_special_tokens": False}
        return self.ids(await self.post(self.path, payload), self.path)

    async def count_text(self, text: str) -> int:
        # add_special_tokens defaults to true for a prompt, as in a completion request
        data = await self.post(self.path, {"model": self.model, "prompt": text})
        return len(self.ids(data, self.path))

    async def count_request(self, text: str, endpoint: Endpoint, chat_kwargs: Any) -> int | None:
        if endpoint == "completions":
            return await self.count_text(text)
        payload: dict[str, Any] = {
            "model": self.model,
            "messages": [{"role": "user", "content": text}],
        }
        if chat_kwargs is not None:
            payload["chat_template_kwargs"] = chat_kwargs
        try:
            return len(self.ids(await self.post(self.path, payload), self.path))
        except _Failed as exc:
            if 400 <= exc.status < 500:  # a server that tokenizes text only (old SGLang)
                return None
            raise


class _ExtrasTokenize(_Tokenizer):
    """llama-cpp-python's server: POST /extras/tokenize and /extras/detokenize, text only;
    its tokenize always adds the model's BOS (and EOS, if the model adds one)."""

    path, detokenize_path = "/extras/tokenize", "/extras/detokenize"
    lead: list[int] | None = None  # what it adds in front of any text

    async def raw(self, text: str) -> list[int]:
        data = await self.post(self.path, {"model": self.model, "input": text})
        return self.ids(data, self.path)

    async def encode(self, text: str) -> list[int]:
        if self.lead is None:
            self.lead = await self.raw("")
        ids = await self.raw(text)
        n = len(self.lead)
        return ids[n:] if n and ids[:n] == self.lead else ids

    async def count_text(self, text: str) -> int:
        return len(await self.raw(text))


async def _connect(
    client: Client, model: str, counter: _Counter
) -> tuple[_Tokenizer | None, list[str]]:
    """The first tokenizer endpoint that encodes and decodes, and what the others answered."""
    tried: list[str] = []
    for kind in (_TokenizeEndpoint, _ExtrasTokenize):
        tok = kind(client, model, counter)
        try:
            ids = await tok.encode(PROBE_TEXT)
            if ids and (await tok.decode(ids)).strip():
                return tok, tried
            tried.append(f"POST {tok.path}: no tokens for {PROBE_TEXT!r}")
        except _Failed as exc:
            tried.append(str(exc))
    return None, tried


async def _probe(client: Client, params: RequestParams, text: str) -> tuple[int | None, str]:
    """usage.prompt_tokens of one real request carrying `text` (1 token, not streamed)."""
    probe = replace(params, stream=False, max_tokens=1, ignore_eos=False)
    response = await client.request(
        "POST", PATHS[params.endpoint], build_body(Prompt(text=text), probe)
    )
    if response.status != 200:
        return None, f"HTTP {response.status}: {response.error}"
    try:
        usage = response.json().get("usage") or {}
    except (ValueError, AttributeError):
        usage = {}
    count = usage.get("prompt_tokens") if isinstance(usage, dict) else None
    if type(count) is not int:
        return None, "no usage.prompt_tokens in its answer"
    return count, ""


class _Builder:
    def __init__(
        self, tok: _Tokenizer, client: Client, params: RequestParams, input_len: int
    ) -> None:
        self.tok, self.client, self.params, self.input_len = tok, client, params, input_len
        self.exact = True  # the count of each prompt comes from the server (not a probe)
        self.added = 0  # tokens a request adds to its text's own tokens
        self.extra = 0  # probe mode: what a request adds to the server's count of its text
        self.counted_by = ""
        self.warning: str | None = None
        self.ratio = 1.0  # tokens per word of the word stream
        self.limit = asyncio.Semaphore(IN_FLIGHT)
        self.reported = 0  # calls already reported (the first set's include finding it)

    async def calibrate(self, rng: random.Random) -> None:
        """How many tokens a request adds to its text, and per word."""
        p, tok = self.params, self.tok
        sample = " ".join(rng.choices(WORDS, k=SAMPLE_WORDS))
        kwargs = p.extra_body.get("chat_template_kwargs")
        text_ids = await tok.encode(sample)
        self.ratio = max(len(text_ids), 1) / SAMPLE_WORDS
        total = await tok.count_request(sample, p.endpoint, kwargs)
        where = f"POST {tok.path}"
        if total is not None:
            self.added = total - len(text_ids)
            self.counted_by = f"{where}, chat template included" if p.endpoint == "chat" else where
            return
        self.exact = False
        text_count = await tok.count_text(sample)
        tok.counter.calls += 1
        total, why = await _probe(self.client, p, sample)
        if total is None:
            self.added = text_count - len(text_ids)
            self.counted_by = f"{where}, the text only"
            self.warning = (
                f"the {PATHS[p.endpoint]} request's own tokens (chat template) are not "
                f"counted: a 1-token probe request failed ({why}); the server counts more "
                "than --input-len"
            )
            return
        self.added, self.extra = total - len(text_ids), total - text_count
        self.counted_by = (
            f"{where} + {self.extra} tokens a {PATHS[p.endpoint]} request adds, "
            "measured by one 1-token request"
        )

    async def measure(self, text: str) -> int:
        """The count of a request carrying `text`: the server's own, or (probe mode) its
        count of the text plus what the probe showed a request adds to that."""
        async with self.limit:
            p = self.params
            if self.exact:
                kwargs = p.extra_body.get("chat_template_kwargs")
                total = await self.tok.count_request(text, p.endpoint, kwargs)
                assert total is not None
                return total
            return await self.tok.count_text(text) + self.extra

    async def decode(self, ids: list[int]) -> str:
        async with self.limit:
            return await self.tok.decode(ids)

    async def stream(self, rng: random.Random, tokens: int, first: bool = True) -> list[int]:
        """Token ids of a random word stream at least `tokens` long, tokenized in chunks
        of about CHUNK_TOKENS (concurrently)."""
        words = math.ceil((tokens * 1.1 + 16) / self.ratio)
        per_chunk = max(8, math.ceil(CHUNK_TOKENS / self.ratio))
        texts = []
        for at in range(0, words, per_chunk):
            lead = "" if first and at == 0 else " "  # chunks continue one text
            texts.append(lead + " ".join(rng.choices(WORDS, k=min(per_chunk, words - at))))

        async def one(text: str) -> list[int]:
            async with self.limit:
                return await self.tok.encode(text)

        ids = [i for chunk in await asyncio.gather(*(one(t) for t in texts)) for i in chunk]
        if len(ids) < tokens:  # fewer tokens per word than the sample had
            ids += await self.stream(rng, tokens - len(ids), first=False)
        return ids

    async def fit(self, ids: list[int], start: int, width: int) -> tuple[str, int]:
        """The text of a window of `ids` counting exactly input_len, or the closest."""
        best: tuple[int, str, int] | None = None  # (distance, text, count)
        for move in range(MOVES + 1):
            s, k = start + move, width
            for _ in range(RESIZES):
                k = max(1, min(k, len(ids) - s))
                text = await self.decode(ids[s : s + k])
                count = await self.measure(text)
                if count == self.input_len:
                    return text, count
                if best is None or abs(count - self.input_len) < best[0]:
                    best = (abs(count - self.input_len), text, count)
                step = self.input_len - count
                if k + step < 1 or (s + k >= len(ids) and step > 0):
                    break
                k += step
        assert best is not None
        return best[1], best[2]

    async def build(self, count: int, seed: int) -> PromptSet:
        rng = random.Random(seed)
        started = time.perf_counter()
        if not self.counted_by:
            await self.calibrate(random.Random(seed ^ 0x5EED))
        width = self.input_len - self.added
        if width < 1:
            what = "chat template" if self.params.endpoint == "chat" else "special tokens"
            raise ValueError(
                f"--input-len {self.input_len} leaves no room for a prompt: a "
                f"{PATHS[self.params.endpoint]} request counts {self.added} tokens of its "
                f"own ({what}); give at least {self.added + 1}"
            )
        ids = await self.stream(rng, count * width + width + 2 * (MOVES + RESIZES) + 64)
        fitted = await asyncio.gather(*(self.fit(ids, i * width, width) for i in range(count)))
        prompts = [Prompt(text=text) for text, _ in fitted]
        off = sum(1 for _, n in fitted if n != self.input_len)
        calls, self.reported = self.tok.counter.calls - self.reported, self.tok.counter.calls
        origin = PromptOrigin(
            "tokens",
            input_len=self.input_len,
            counted_by=self.counted_by,
            calls=calls,
            seconds=time.perf_counter() - started,
            off_target=off,
            warning=self.warning,
        )
        return PromptSet(prompts, origin)


async def build(
    base_url: str,
    params: RequestParams,
    *,
    input_len: int,
    sets: Sequence[tuple[int, int]],
    api_key: str | None = None,
    timeout: float = 600.0,
) -> list[PromptSet]:
    """One prompt set per (count, seed) in `sets`, each prompt exactly `input_len` tokens
    as the server at `base_url` counts a `params.endpoint` request (see the module's
    docstring) — or, where the server has no tokenizer endpoint, `input_len` random words
    with the same seed, their origin carrying the warning to show.

    Raises OSError (ConnectionError: unreachable; TimeoutError), TokenizerRefused (HTTP
    401/403: the API key), TokenizerError (a tokenizer request failed after it was
    found), ValueError (`input_len` below what a request adds by itself)."""
    if input_len < 1 or any(count < 1 for count, _ in sets):
        raise ValueError("random prompts need count ≥ 1 and input length ≥ 1")
    client = Client(base_url, api_key=api_key, timeout=timeout, user_agent="llmdeploy-bench")
    try:
        await client.check()
        started = time.perf_counter()
        counter = _Counter()
        tok, tried = await _connect(client, params.model, counter)
        if tok is None:
            why = "; ".join(tried) or "no answer"
            warning = (
                f"{base_url} has no tokenizer endpoint ({why}): --input-len {input_len} "
                f"counts words, not tokens; the report shows what the server counted"
            )
            seconds = time.perf_counter() - started
            return [
                PromptSet(
                    random_prompts(count, input_len, seed=seed),
                    PromptOrigin(
                        "words",
                        input_len=input_len,
                        calls=counter.calls,
                        seconds=seconds,
                        warning=warning,
                    ),
                )
                for count, seed in sets
            ]
        builder = _Builder(tok, client, params, input_len)
        return [await builder.build(count, seed) for count, seed in sets]
    finally:
        client.close()


def build_sync(
    base_url: str,
    params: RequestParams,
    *,
    input_len: int,
    sets: Sequence[tuple[int, int]],
    api_key: str | None = None,
    timeout: float = 600.0,
) -> list[PromptSet]:
    """`build` in a fresh event loop, for scripts and tests."""
    return asyncio.run(
        build(base_url, params, input_len=input_len, sets=sets, api_key=api_key, timeout=timeout)
    )
