"""A lean HTTP/1.1 client on asyncio protocols: keep-alive connections, body bytes handed
over as they arrive.

Why not aiohttp/httpx: a load generator must not be the bottleneck. A protocol callback
sees bytes the moment the event loop reads them and stamps them there, before any parsing,
and it costs a fraction of a general client's per-request work (see
benchmarks/bench_client_overhead.py). The framing itself is parser.py's.
"""

from __future__ import annotations

import asyncio
import ssl
import time

from .parser import ResponseParser, Sink


class HTTPConnection(ResponseParser, asyncio.Protocol):
    """One TCP connection carrying one request at a time."""

    def __init__(self) -> None:
        ResponseParser.__init__(self)
        self.transport: asyncio.Transport | None = None
        self.closed = False
        self._done: asyncio.Future[None] | None = None

    # -- asyncio callbacks -------------------------------------------------------------
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        now = time.perf_counter()  # stamp first: parsing must not delay the arrival time
        if self._done is None:  # nothing asked for: a confused server; drop the socket
            self.close()
            return
        try:
            finished = self.feed(data, now)
        except (ValueError, IndexError) as e:
            self.abort(ConnectionError(f"malformed HTTP response: {e}"))
            return
        if finished:
            self._resolve()

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        done = self._done
        if done is None or done.done():
            return
        if self.feed_eof(time.perf_counter()):  # a body without length ends this way
            self._resolve()
        else:
            n = self.received
            what = f"mid-response (after {n} bytes)" if n else "without responding"
            done.set_exception(ConnectionError(f"server closed the connection {what}"))

    # -- use ------------------------------------------------------------------------------
    def request(self, data: bytes, sink: Sink) -> asyncio.Future[None]:
        """Send a complete request; the future resolves when the response has ended."""
        assert self.transport is not None and self._done is None
        self._done = asyncio.get_running_loop().create_future()
        self.expect(sink)
        self.transport.write(data)
        return self._done

    def abort(self, exc: BaseException) -> None:
        """Fail the response in flight (timeouts, parse errors) and drop the socket."""
        if self._done is not None and not self._done.done():
            self._done.set_exception(exc)
        self.closed = True
        if self.transport is not None:
            self.transport.abort()

    def close(self) -> None:
        self.closed = True
        if self.transport is not None:
            self.transport.close()

    def _resolve(self) -> None:
        done, self._done = self._done, None
        if done is not None and not done.done():
            done.set_result(None)


class ConnectionPool:
    """Idle keep-alive connections to one server. It opens a connection only when none is
    idle, so it never holds more sockets than the peak number of requests in flight —
    the pool is sized to the concurrency by construction."""

    def __init__(
        self, host: str, port: int, *, tls: bool = False, connect_timeout: float = 10.0
    ) -> None:
        self.host, self.port, self.connect_timeout = host, port, connect_timeout
        self.ssl: ssl.SSLContext | None = ssl.create_default_context() if tls else None
        self.opened = 0  # sockets opened in total (tests: ≤ concurrency)
        self._idle: list[HTTPConnection] = []

    async def acquire(self, *, fresh: bool = False) -> HTTPConnection:
        """An idle connection, or a new one. `fresh`: a reused one just turned out closed
        by the server — the other idle ones likely were too (an idle timeout, a restart):
        drop them all and connect anew."""
        if fresh:
            for conn in self._idle:
                conn.close()
            self._idle.clear()
        while self._idle:
            conn = self._idle.pop()  # LIFO: the warmest socket, and idle ones age out
            if not conn.closed:
                return conn
        conn = await self._connect()
        self.opened += 1
        return conn

    async def _connect(self) -> HTTPConnection:
        # Not asyncio.wait_for: on Python 3.10 and 3.11 it returns the result, swallowing
        # our own cancellation, when both land in the same loop iteration
        # (python/cpython#86296) — a Ctrl-C lost while a connection opens. asyncio.wait
        # neither absorbs the caller's cancellation nor cancels what it waits on.
        loop = asyncio.get_running_loop()
        task = loop.create_task(
            loop.create_connection(HTTPConnection, self.host, self.port, ssl=self.ssl)
        )
        try:
            await asyncio.wait((task,), timeout=self.connect_timeout)
        except BaseException:
            _discard(task)
            raise
        if not task.done():
            _discard(task)
            raise TimeoutError(f"no connection in {self.connect_timeout:g} s")
        return task.result()[1]

    def release(self, conn: HTTPConnection) -> None:
        if conn.reusable and not conn.closed:
            self._idle.append(conn)
        else:
            conn.close()

    def close(self) -> None:
        for conn in self._idle:
            conn.close()
        self._idle.clear()


def _discard(task: asyncio.Task[tuple[asyncio.BaseTransport, HTTPConnection]]) -> None:
    """Give up on a connection attempt: stop it, or close what it opened in the meantime
    (and read its error, so asyncio does not log one that was never retrieved)."""

    def drop(done: asyncio.Task[tuple[asyncio.BaseTransport, HTTPConnection]]) -> None:
        if not done.cancelled() and done.exception() is None:
            done.result()[1].close()

    task.add_done_callback(drop)
    task.cancel()
