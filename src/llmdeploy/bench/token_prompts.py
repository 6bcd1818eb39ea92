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

Tokenizer endpoints (tokenizer.py): vLLM's and SGLang's `POST /tokenize` count the request
exactly (chat messages included); llama-cpp-python's `/extras/tokenize` counts text only —
what a request adds to its text (chat template, BOS) is measured by one 1-token request
before the run (its usage.prompt_tokens minus the text's count) and taken as constant;
none (transformers serve, most gateways): `input_len` words per prompt, with a warning.

How (≈ 2 round trips per prompt + a handful): one seeded stream of random words per prompt
set, tokenized in a few large calls (in batches of about BATCH_TOKENS, so memory stays
bounded whatever the set's size); prompt i is the decoded window ids[i·t : i·t + t] of
that stream, t = input_len minus what the request adds. Each window's text is counted in
its final form; one that re-tokenizes to another length (a cut that merges on
re-encoding, a template boundary) is widened or narrowed by the difference, a few times,
then moved by a token. Windows are disjoint, so no two prompts share a prefix beyond the
template's: a prefix cache cannot flatter the run (as vLLM's random dataset).

Bounds, whatever the server answers: at most 2·(MOVES+1)·RESIZES = 32 calls a prompt,
STREAM_ROUNDS tries at a stream long enough; a prompt closer than `tolerance` to
input_len is kept (the report counts it "not exact"), one further off means the server's
tokenizer does not count consistently: an error, not a run on wrong prompts. input_len is
at most the server's max_model_len where it says it, and MAX_INPUT_LEN anyway.
"""

from __future__ import annotations

import asyncio
import math
import random
import time
from collections.abc import Awaitable, Sequence
from dataclasses import dataclass
from typing import TypeVar

from llmdeploy.client.aio import Client

from .client import PATHS, RequestParams
from .prompts import WORDS, Prompt, PromptOrigin, random_prompts
from .tokenizer import (
    TOKENIZER_TIMEOUT,
    Counter,
    Tokenizer,
    TokenizerError,
    TokenizerRefused,
    connect,
    probe,
)

__all__ = ["PromptSet", "TokenizerError", "TokenizerRefused", "build", "build_sync"]

T = TypeVar("T")

SAMPLE_WORDS = 64  # the text whose count tells what a request adds to it
CHUNK_TOKENS = 8192  # about this many tokens of the word stream per tokenize call
BATCH_TOKENS = 1 << 20  # about this many tokens of the stream in memory at once
IN_FLIGHT = 8  # tokenizer calls at once (the server's tokenizer is the limit, not us)
RESIZES = 4  # attempts at one window's length before it is moved
MOVES = 3
STREAM_ROUNDS = 4  # tokenize calls for more of the stream, when the last came up short
RATIO = (0.5, 16.0)  # tokens per word assumed, at least and at most (a byte per token)
MAX_INPUT_LEN = 1 << 20  # tokens: a server that does not say its max_model_len


def tolerance(input_len: int) -> int:
    """How far from input_len a prompt may count (0.1%, at least 1 token): a real
    tokenizer's cut that merges on re-encoding is a token or two, and the loop corrects it
    nearly always; further off, the server counts one text differently from call to call."""
    return max(1, input_len // 1000)


@dataclass
class PromptSet:
    """One level's prompts, and how they were made."""

    prompts: list[Prompt]
    origin: PromptOrigin


async def _all(aws: Sequence[Awaitable[T]]) -> list[T]:
    """asyncio.gather, but a failure cancels the others (and waits for them, so none
    writes to a connection after the client is closed)."""
    tasks = [asyncio.ensure_future(a) for a in aws]
    try:
        return list(await asyncio.gather(*tasks))
    except BaseException:
        for task in tasks:
            task.cancel()
        if tasks:
            await asyncio.wait(tasks)
        raise


class _Builder:
    def __init__(
        self, tok: Tokenizer, client: Client, params: RequestParams, input_len: int
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
        self.ratio = _clamp(len(text_ids) / SAMPLE_WORDS)
        total = await tok.count_request(sample, p.endpoint, kwargs, probing=True)
        where = f"POST {tok.path}"
        if total is not None:
            self.added = total - len(text_ids)
            self.counted_by = f"{where}, chat template included" if p.endpoint == "chat" else where
            return
        self.exact = False
        text_count = await tok.count_text(sample)
        tok.counter.calls += 1
        total, why = await probe(self.client, p, sample)
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
                assert total is not None  # only a probing call answers None
                return total
            return await self.tok.count_text(text) + self.extra

    async def decode(self, ids: list[int]) -> str:
        async with self.limit:
            return await self.tok.decode(ids)

    async def stream(self, rng: random.Random, tokens: int, first: bool) -> list[int]:
        """Token ids of a random word stream at least `tokens` long. A server that
        answers fewer tokens than words promise gets STREAM_ROUNDS tries, then an error
        (asking again for the rest, unbounded, is what a one-token tokenizer exploits)."""
        ids: list[int] = []
        words = 0
        for _ in range(STREAM_ROUNDS):
            more = math.ceil(((tokens - len(ids)) * 1.1 + 16) / self.ratio)
            got = await self.chunks(rng, more, first=first and not ids)
            ids, words = ids + got, words + more
            if len(ids) >= tokens:
                return ids
            self.ratio = _clamp(len(got) / more)
        raise TokenizerError(
            f"POST {self.tok.path}: {len(ids)} tokens for {words} words, in "
            f"{STREAM_ROUNDS} tries at {tokens}; that is no tokenizer of text"
        )

    async def chunks(self, rng: random.Random, words: int, first: bool) -> list[int]:
        """`words` random words tokenized in chunks of about CHUNK_TOKENS (concurrently)."""
        per_chunk = max(8, math.ceil(CHUNK_TOKENS / self.ratio))
        texts = []
        for at in range(0, words, per_chunk):
            lead = "" if first and at == 0 else " "  # chunks continue one text
            texts.append(lead + " ".join(rng.choices(WORDS, k=min(per_chunk, words - at))))

        async def one(text: str) -> list[int]:
            async with self.limit:
                return await self.tok.encode(text)

        return [i for chunk in await _all([one(t) for t in texts]) for i in chunk]

    async def fit(self, ids: list[int], start: int, width: int) -> tuple[str, int]:
        """The text of a window of `ids` counting exactly input_len, or the closest (at
        most (MOVES + 1) · RESIZES tries of 2 calls)."""
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
        if best[0] > tolerance(self.input_len):
            raise TokenizerError(
                f"the server's tokenizer does not count consistently (POST {self.tok.path}, "
                f"{self.tok.detokenize_path}): the closest of the texts cut to "
                f"{self.input_len} tokens counted {best[2]}"
            )
        return best[1], best[2]

    async def prompts(self, count: int, width: int, rng: random.Random) -> list[tuple[str, int]]:
        """`count` fitted windows, from streams of about BATCH_TOKENS at a time."""
        per_batch = max(1, BATCH_TOKENS // width)
        margin = width + 2 * (MOVES + RESIZES) + 64  # a window may widen and move
        fitted: list[tuple[str, int]] = []
        while len(fitted) < count:
            n = min(per_batch, count - len(fitted))
            ids = await self.stream(rng, n * width + margin, first=not fitted)
            fitted += await _all([self.fit(ids, i * width, width) for i in range(n)])
        return fitted

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
        fitted = await self.prompts(count, width, rng)
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
        return PromptSet([Prompt(text=text) for text, _ in fitted], origin)


def _clamp(ratio: float) -> float:
    return min(max(ratio, RATIO[0]), RATIO[1])


def _check_length(input_len: int, tok: Tokenizer | None) -> None:
    """ValueError for an input_len no prompt can have: more than the server's context
    (where it says it), or than llmdeploy makes prompts of."""
    limit = tok.max_model_len if tok is not None else None
    if limit is not None and input_len > limit:
        raise ValueError(
            f"--input-len {input_len} is more than the server's max_model_len ({limit})"
        )
    if input_len > MAX_INPUT_LEN:
        raise ValueError(
            f"--input-len {input_len} is more than llmdeploy makes prompts of "
            f"({MAX_INPUT_LEN} tokens)"
        )


def _words(
    base_url: str,
    input_len: int,
    sets: Sequence[tuple[int, int]],
    tried: list[str],
    spent: tuple[int, float],  # tokenizer calls, seconds
) -> list[PromptSet]:
    """`input_len` random words a prompt, and the warning that says so."""
    why = "; ".join(tried) or "no answer"
    origin = PromptOrigin(
        "words",
        input_len=input_len,
        calls=spent[0],
        seconds=spent[1],
        warning=(
            f"{base_url} has no tokenizer endpoint ({why}): --input-len {input_len} "
            f"counts words, not tokens; the report shows what the server counted"
        ),
    )
    return [PromptSet(random_prompts(n, input_len, seed=seed), origin) for n, seed in sets]


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

    Raises ConnectionError (unreachable), TokenizerRefused (HTTP 401/403: the API key),
    TokenizerError (a tokenizer request failed, timed out — after min(timeout,
    TOKENIZER_TIMEOUT) s — or answered what no tokenizer does), ValueError (`input_len`
    below what a request adds by itself, or above what the server takes)."""
    if input_len < 1 or any(count < 1 for count, _ in sets):
        raise ValueError("random prompts need count ≥ 1 and input length ≥ 1")
    agent = "llmdeploy-bench"
    client = Client(base_url, api_key=api_key, timeout=timeout, user_agent=agent)
    quick = min(timeout, TOKENIZER_TIMEOUT)
    tok_client = Client(base_url, api_key=api_key, timeout=quick, user_agent=agent)
    try:
        await client.check()
        started, counter = time.perf_counter(), Counter()
        tok, tried = await connect(tok_client, params.model, counter)
        _check_length(input_len, tok)
        if tok is None:
            seconds = time.perf_counter() - started
            return _words(base_url, input_len, sets, tried, (counter.calls, seconds))
        builder = _Builder(tok, client, params, input_len)
        return [await builder.build(count, seed) for count, seed in sets]
    finally:
        client.close()
        tok_client.close()


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
