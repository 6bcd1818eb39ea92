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
from urllib.parse import urlsplit

from llmdeploy.client.http11 import ConnectionPool, HTTPConnection
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
    """Sends benchmark requests over a keep-alive pool to one OpenAI-compatible server.

    `base_url` is `http(s)://host:port`, with or without a trailing `/v1`."""

    def __init__(self, base_url: str, *, api_key: str | None = None, timeout: float = 600.0):
        url = urlsplit(base_url)
        if url.scheme not in ("http", "https") or not url.hostname:
            raise ValueError(f"base URL must be http(s)://host[:port], got {base_url!r}")
        tls = url.scheme == "https"
        self.base_url, self.timeout = base_url, timeout
        self.pool = ConnectionPool(url.hostname, url.port or (443 if tls else 80), tls=tls)
        prefix = url.path.rstrip("/").removesuffix("/v1")
        auth = f"Authorization: Bearer {api_key}\r\n" if api_key else ""
        self._heads = {
            (endpoint, stream): (
                f"POST {prefix}{path} HTTP/1.1\r\nHost: {url.netloc}\r\n"
                "User-Agent: llmdeploy-bench\r\nContent-Type: application/json\r\n"
                f"Accept: {'text/event-stream' if stream else 'application/json'}\r\n"
                f"{auth}Content-Length: "
            ).encode()
            for endpoint, path in PATHS.items()
            for stream in (True, False)
        }
        self.origin = time.perf_counter()  # records' `start` is relative to this

    async def check(self) -> None:
        """Fail fast, with the address, if the server cannot be reached at all."""
        try:
            self.pool.release(await self.pool.acquire())
        except (OSError, asyncio.TimeoutError) as e:
            why = str(e) or "timed out"
            raise ConnectionError(f"cannot connect to {self.base_url}: {why}") from e

    async def send(
        self, prompt: Prompt, params: RequestParams, index: int, scheduled: float | None = None
    ) -> RequestRecord:
        body = json.dumps(build_body(prompt, params), separators=(",", ":")).encode()
        data = self._heads[params.endpoint, params.stream] + b"%d\r\n\r\n" % len(body) + body
        rec = RequestRecord(index, 0.0, params.stream, scheduled=scheduled)
        for attempt in (0, 1):
            sink, conn, start = ResponseReader(params.stream, params.endpoint == "chat"), None, 0.0
            try:
                conn = await self.pool.acquire()
                start = time.perf_counter()  # connecting is not the server's latency
                await self._exchange(conn, data, sink)
            except (OSError, asyncio.TimeoutError) as e:
                stale = conn is not None and conn.responses > 0 and conn.received == 0
                if attempt == 0 and stale and isinstance(e, ConnectionError):
                    continue  # the server closed an idle keep-alive socket: just reconnect
                rec.start = (start or time.perf_counter()) - self.origin
                rec.latency = time.perf_counter() - start if start else 0.0
                rec.status = sink.status or None
                rec.error = f"{type(e).__name__}: {e}" if str(e) else type(e).__name__
                return rec
            break
        assert conn is not None
        end = conn.finished_at
        sink.finalize(end)
        rec.start, rec.latency = start - self.origin, end - start
        rec.status, rec.error = sink.status, sink.error
        rec.chunk_times = [t - start for t in sink.times]
        rec.ttft = rec.chunk_times[0] if rec.chunk_times else None
        rec.prompt_tokens = _count(sink.usage, "prompt_tokens")
        rec.output_tokens = _count(sink.usage, "completion_tokens")
        rec.output_chars, rec.finish_reason = sink.chars, sink.finish
        return rec

    async def _exchange(self, conn: HTTPConnection, data: bytes, sink: ResponseReader) -> None:
        done = conn.request(data, sink)
        timer = asyncio.get_running_loop().call_later(
            self.timeout, conn.abort, TimeoutError(f"no complete response in {self.timeout:g} s")
        )
        try:
            await done
        finally:
            timer.cancel()
            if not done.done():
                done.cancel()  # we were cancelled: nobody must wait on this socket again
            self.pool.release(conn)

    def close(self) -> None:
        self.pool.close()
