"""A server's own tokenizer endpoint, over HTTP, for token_prompts.py — and what none of
its answers may do to the bench (they come from a server we do not trust):

- take long: each call has its own deadline, the smaller of --timeout and
  TOKENIZER_TIMEOUT (a tokenizer answers in milliseconds; --timeout is sized for a
  generation, 600 s by default — a server trickling its answer must not hold the bench
  that long per call);
- be large: an answer is read up to ANSWER_LIMIT bytes, then dropped;
- be nonsense: a token list is a list of whole numbers ≥ 0, no longer than its text has
  bytes (plus what a server adds: special tokens, a chat template), agreeing with the
  `count` beside it;
- end the command other than in one line: a failure is a TokenizerError naming the
  endpoint (transport failures included: a reset, a timeout).

Endpoints, tried in this order (every call carries the bench's Authorization header —
SGLang and llama-cpp-python guard them with the API key):
- vLLM (vllm/entrypoints/serve/tokenize/) and SGLang (srt/entrypoints/openai/
  serving_tokenize.py): `POST /tokenize` {model, prompt | messages} → {count, tokens,
  max_model_len}; `POST /detokenize` {model, tokens} → {prompt} (vLLM) | {text} (SGLang).
  Messages are rendered exactly as for a chat completion (the server's default template
  kwargs included): the count is the server's own, for both endpoints.
- llama-cpp-python's server (llama_cpp/server/app.py): `POST /extras/tokenize` {input} →
  {tokens} and `/extras/detokenize` {tokens} → {text}, text only.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

from llmdeploy.client.aio import Client
from llmdeploy.client.base import Collect, Response, encode_json

from .client import PATHS, Endpoint, RequestParams, build_body
from .prompts import Prompt

PROBE_TEXT = "the first time"
TOKENIZER_TIMEOUT = 30.0  # s for one tokenizer call, at most
ANSWER_LIMIT = 64 << 20  # bytes of one answer (1M tokens of JSON are ≈ 8 MB)
TEXT_SLACK = 16  # tokens a server may add to a text's bytes (BOS, EOS)
CHAT_SLACK = 16384  # … to a chat message's (a template, a default system prompt, tools)
MAX_ID = 1 << 32  # token ids are below this (vocabularies are far smaller)


class TokenizerError(Exception):
    """The server's tokenizer failed while the prompts were being made."""


class TokenizerRefused(TokenizerError):
    """The server refused the tokenizer request itself (HTTP 401/403): a wrong API key."""


class Unusable(TokenizerError):
    """An answer no tokenizer gives (an error status, a malformed body): while looking
    for the endpoint, a sign the server has none."""

    def __init__(self, path: str, status: int, message: str) -> None:
        super().__init__(f"POST {path}: HTTP {status}: {message}")
        self.status = status


@dataclass
class Counter:
    calls: int = 0  # round trips to the server for the prompts


class _Capped(Collect):
    """A whole response, refused past `limit` bytes (the parser turns the ValueError
    into a dropped connection)."""

    __slots__ = ("limit", "over")

    def __init__(self, limit: int) -> None:
        super().__init__()
        self.limit, self.over = limit, False

    def body(self, data: bytes, now: float) -> None:
        if len(self.data) + len(data) > self.limit:
            self.over = True
            raise ValueError(f"an answer larger than {self.limit >> 20} MiB")
        self.data += data


async def fetch(client: Client, path: str, payload: Any) -> Response:
    """POST `payload`; the whole answer, at most ANSWER_LIMIT bytes. TokenizerError for
    any failure to get one (refused, reset, timed out, too large), naming `path`."""
    sink = _Capped(ANSWER_LIMIT)
    try:
        await client.exchange(client.server.encode("POST", path, encode_json(payload)), sink)
    except OSError as exc:
        why = f"an answer larger than {ANSWER_LIMIT >> 20} MiB" if sink.over else str(exc)
        raise TokenizerError(f"POST {path}: {why or type(exc).__name__}") from None
    return sink.response()


class Tokenizer:
    """One server's tokenizer, over HTTP."""

    path = ""
    detokenize_path = ""

    def __init__(self, client: Client, model: str, counter: Counter) -> None:
        self.client, self.model, self.counter = client, model, counter
        self.max_model_len: int | None = None  # if the server says it

    async def post(self, path: str, payload: dict[str, Any]) -> dict[str, Any]:
        self.counter.calls += 1
        response = await fetch(self.client, path, payload)
        if response.status in (401, 403):
            raise TokenizerRefused(f"POST {path}: HTTP {response.status}: {response.error}")
        if response.status != 200:
            raise Unusable(path, response.status, response.error)
        try:
            data = response.json()
        except ValueError:
            data = None
        if not isinstance(data, dict):
            raise Unusable(path, 200, "not a JSON object")
        limit = data.get("max_model_len")
        if type(limit) is int and limit > 0:
            self.max_model_len = limit
        return data

    def ids(self, data: dict[str, Any], text: str, slack: int = TEXT_SLACK) -> list[int]:
        """The answer's token list, checked against the text it is the tokens of."""
        tokens = data.get("tokens")
        if not isinstance(tokens, list) or not all(
            type(t) is int and 0 <= t < MAX_ID for t in tokens
        ):
            raise Unusable(self.path, 200, "no token list in the answer")
        count = data.get("count", len(tokens))
        if count != len(tokens):
            raise Unusable(self.path, 200, f"count {count!r} for a list of {len(tokens)} tokens")
        size = len(text.encode())
        if len(tokens) > size + slack:
            raise Unusable(self.path, 200, f"{len(tokens)} tokens for {size} bytes of text")
        return tokens

    async def encode(self, text: str) -> list[int]:
        """The text's own tokens, without what the server adds (BOS)."""
        raise NotImplementedError

    async def decode(self, ids: list[int]) -> str:
        data = await self.post(self.detokenize_path, {"model": self.model, "tokens": ids})
        text = data.get("prompt", data.get("text"))  # vLLM says prompt, the others text
        if not isinstance(text, str):
            raise Unusable(self.detokenize_path, 200, "no text in the answer")
        return text

    async def count_text(self, text: str) -> int:
        """The text as a completion prompt: its tokens and the server's special ones."""
        raise NotImplementedError

    async def count_request(
        self, text: str, endpoint: Endpoint, chat_kwargs: Any, *, probing: bool = False
    ) -> int | None:
        """Exactly what a request of `endpoint` carrying `text` counts, if the server can
        say (None, while `probing` only: it tokenizes text only)."""
        return None


class TokenizeEndpoint(Tokenizer):
    """vLLM and SGLang: POST /tokenize and /detokenize, text or chat messages."""

    path, detokenize_path = "/tokenize", "/detokenize"

    async def encode(self, text: str) -> list[int]:
        payload = {"model": self.model, "prompt": text, "add_special_tokens": False}
        return self.ids(await self.post(self.path, payload), text)

    async def count_text(self, text: str) -> int:
        # add_special_tokens defaults to true for a prompt, as in a completion request
        data = await self.post(self.path, {"model": self.model, "prompt": text})
        return len(self.ids(data, text))

    async def count_request(
        self, text: str, endpoint: Endpoint, chat_kwargs: Any, *, probing: bool = False
    ) -> int | None:
        if endpoint == "completions":
            return await self.count_text(text)
        payload: dict[str, Any] = {
            "model": self.model,
            "messages": [{"role": "user", "content": text}],
        }
        if chat_kwargs is not None:
            payload["chat_template_kwargs"] = chat_kwargs
        try:
            return len(self.ids(await self.post(self.path, payload), text, CHAT_SLACK))
        except Unusable as exc:
            # While calibrating, a 4xx is a server that tokenizes text only (old SGLang);
            # later it is a server that stopped doing what it did a moment ago.
            if probing and 400 <= exc.status < 500:
                return None
            raise


class ExtrasTokenize(Tokenizer):
    """llama-cpp-python's server: POST /extras/tokenize and /extras/detokenize, text only;
    its tokenize always adds the model's BOS (and EOS, if the model adds one)."""

    path, detokenize_path = "/extras/tokenize", "/extras/detokenize"
    lead: list[int] | None = None  # what it adds in front of any text

    async def raw(self, text: str) -> list[int]:
        data = await self.post(self.path, {"model": self.model, "input": text})
        return self.ids(data, text)

    async def encode(self, text: str) -> list[int]:
        if self.lead is None:
            self.lead = await self.raw("")
        ids = await self.raw(text)
        n = len(self.lead)
        return ids[n:] if n and ids[:n] == self.lead else ids

    async def count_text(self, text: str) -> int:
        return len(await self.raw(text))


async def connect(
    client: Client, model: str, counter: Counter
) -> tuple[Tokenizer | None, list[str]]:
    """The first tokenizer endpoint that encodes and decodes, and what the others answered.
    An unusable answer moves on to the next; a transport failure or refusal raises."""
    tried: list[str] = []
    for kind in (TokenizeEndpoint, ExtrasTokenize):
        tok = kind(client, model, counter)
        try:
            ids = await tok.encode(PROBE_TEXT)
            if ids and (await tok.decode(ids)).strip():
                return tok, tried
            tried.append(f"POST {tok.path}: no tokens for {PROBE_TEXT!r}")
        except Unusable as exc:
            tried.append(str(exc))
    return None, tried


async def probe(client: Client, params: RequestParams, text: str) -> tuple[int | None, str]:
    """usage.prompt_tokens of one real request carrying `text` (1 token, not streamed)."""
    request = replace(params, stream=False, max_tokens=1, ignore_eos=False)
    path = PATHS[params.endpoint]
    response = await fetch(client, path, build_body(Prompt(text=text), request))
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
