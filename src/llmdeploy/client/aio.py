"""The asynchronous client: what bench, generate and smoke's raw requests use.

Every wait in here ends by a timer or by cancellation, never by a primitive that can
swallow a cancellation (no asyncio.wait_for: see http11.ConnectionPool._connect), so a
signal that cancels the command's main task always gets through.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

from .base import Collect, Response, Server, Timing, encode_json
from .http11 import ConnectionPool, HTTPConnection
from .parser import Sink


class Client:
    """Requests to one server over keep-alive HTTP/1.1 connections (as many as there are
    requests in flight). Failures are OSError: ConnectionError (refused, reset, closed,
    malformed) or TimeoutError (`timeout` s for a whole response, `connect_timeout` s to
    connect); an HTTP error status is a Response, not an exception."""

    def __init__(
        self,
        base_url: str,
        *,
        api_key: str | None = None,
        timeout: float = 600.0,
        connect_timeout: float = 10.0,
        user_agent: str = "llmdeploy",
    ) -> None:
        self.server = Server.parse(base_url, api_key=api_key, user_agent=user_agent)
        self.timeout = timeout
        self.pool = ConnectionPool(
            self.server.host, self.server.port, tls=self.server.tls, connect_timeout=connect_timeout
        )

    async def check(self) -> None:
        """Fail fast, naming the address, if the server cannot be reached at all."""
        try:
            self.pool.release(await self.pool.acquire())
        except OSError as e:
            why = str(e) or "timed out"
            raise ConnectionError(f"cannot connect to {self.server.base_url}: {why}") from e

    async def request(self, method: str, path: str, payload: Any = None) -> Response:
        """One request with an optional JSON body; the whole response."""
        body = None if payload is None else encode_json(payload)
        sink = Collect()
        await self.exchange(self.server.encode(method, path, body), sink)
        return sink.response()

    async def exchange(self, data: bytes, sink: Sink, timing: Timing | None = None) -> None:
        """Send one complete request (see Server.head/encode); its response goes to `sink`
        as it arrives (an SSE reader stamps every event). `timing`, if given, gets when
        the request left — after connecting, which is not the server's latency — and
        when the last byte came."""
        for attempt in (0, 1):
            conn = await self.pool.acquire(fresh=attempt > 0)
            if timing is not None:
                timing.sent = time.perf_counter()
            try:
                await self._once(conn, data, sink)
            except ConnectionError:
                # A reused socket the server closed while idle fails before any byte of
                # the response: send once more on a fresh one.
                if attempt == 0 and conn.responses > 0 and conn.received == 0:
                    continue
                raise
            if timing is not None:
                timing.ended = conn.finished_at
            return

    async def _once(self, conn: HTTPConnection, data: bytes, sink: Sink) -> None:
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
