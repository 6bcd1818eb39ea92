"""The OpenAI-API side of the benchmark: request bodies in, one record per request out.
Token counts come from the server's `usage` only (streams ask for it with
`stream_options.include_usage`); a server that sends none leaves them None."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from llmdeploy.client.aio import Client
from llmdeploy.client.base import Timing
from llmdeploy.client.sse import ResponseReader

from .prompts import Prompt
from .records import RequestRecord

Endpoint = Literal["chat", "completions"]
PATHS: dict[Endpoint, str] = {"chat": "/v1/chat/completions", "completions": "/v1/completions"}


@dataclass(frozen=True)
class RequestParams:
    """What every request of a run asks for."""

    model: str
    endpoint: Endpoint = "chat"
    stream: bool = True
    max_tokens: int | None = 128
    ignore_eos: bool = False
    temperature: float | None = None
    extra_body: Mapping[str, Any] = field(default_factory=dict)  # merged last, verbatim


def build_body(prompt: Prompt, params: RequestParams) -> dict[str, Any]:
    body: dict[str, Any] = {"model": params.model, "stream": params.stream}
    if params.endpoint == "chat":
        body["messages"] = prompt.as_messages()
    else:
        body["prompt"] = prompt.as_text()
    max_tokens = prompt.max_tokens or params.max_tokens
    if max_tokens is not None:
        body["max_tokens"] = max_tokens
    if params.stream:
        body["stream_options"] = {"include_usage": True}
    if params.temperature is not None:
        body["temperature"] = params.temperature
    if params.ignore_eos:  # only when asked: strict servers (api.openai.com) reject it
        body["ignore_eos"] = True
    body.update(params.extra_body)
    return body


def _count(usage: Any, key: str) -> int | None:
    value = usage.get(key) if isinstance(usage, dict) else None
    return value if isinstance(value, int) and not isinstance(value, bool) else None


class OpenAIClient:
    """Sends benchmark requests to one OpenAI-compatible server through the HTTP layer's
    keep-alive pool (llmdeploy.client), one record per request.

    `base_url` is `http(s)://host:port`, with or without a trailing `/v1`."""

    def __init__(self, base_url: str, *, api_key: str | None = None, timeout: float = 600.0):
        self.http = Client(base_url, api_key=api_key, timeout=timeout, user_agent="llmdeploy-bench")
        self.base_url, self.timeout, self.pool = base_url, timeout, self.http.pool
        # Request heads are built once: the body and its length are all that change.
        self._heads = {
            (endpoint, stream): self.http.server.head(
                "POST", path, accept="text/event-stream" if stream else "application/json"
            )
            for endpoint, path in PATHS.items()
            for stream in (True, False)
        }
        self.origin = time.perf_counter()  # records' `start` is relative to this

    async def check(self) -> None:
        """Fail fast, with the address, if the server cannot be reached at all."""
        await self.http.check()

    async def connect(self, count: int) -> None:
        """Have `count` connections open and idle, so that the first `count` requests
        leave together instead of one per finished TCP handshake."""
        conns = await asyncio.gather(*(self.pool.acquire() for _ in range(count)))
        for conn in conns:
            self.pool.release(conn)

    async def send(
        self, prompt: Prompt, params: RequestParams, index: int, scheduled: float | None = None
    ) -> RequestRecord:
        body = json.dumps(build_body(prompt, params), separators=(",", ":")).encode()
        data = self._heads[params.endpoint, params.stream] + b"%d\r\n\r\n" % len(body) + body
        rec = RequestRecord(index, 0.0, params.stream, scheduled=scheduled)
        sink, timing = ResponseReader(params.stream, params.endpoint == "chat"), Timing()
        try:
            await self.http.exchange(data, sink, timing)
        except OSError as e:  # the layer's failures: refused, reset, timed out, malformed
            now, start = time.perf_counter(), timing.sent
            rec.start = (start or now) - self.origin
            rec.latency = now - start if start else 0.0
            rec.status = sink.status or None
            rec.error = f"{type(e).__name__}: {e}" if str(e) else type(e).__name__
            return rec
        start, end = timing.sent, timing.ended
        sink.finalize(end)
        rec.start, rec.latency = start - self.origin, end - start
        rec.status, rec.error = sink.status, sink.error
        rec.chunk_times = [t - start for t in sink.times]
        rec.ttft = rec.chunk_times[0] if rec.chunk_times else None
        rec.prompt_tokens = _count(sink.usage, "prompt_tokens")
        rec.output_tokens = _count(sink.usage, "completion_tokens")
        rec.output_chars, rec.finish_reason = sink.chars, sink.finish
        return rec

    def close(self) -> None:
        self.http.close()
