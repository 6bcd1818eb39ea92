"""A lean HTTP/1.1 client on asyncio protocols: keep-alive connections, Content-Length,
chunked and read-until-close bodies, body bytes handed over as they arrive.

Why not aiohttp/httpx: a load generator must not be the bottleneck. A protocol callback
sees bytes the moment the event loop reads them and stamps them there, before any parsing,
and it costs a fraction of a general client's per-request work (see
benchmarks/bench_client_overhead.py). Only what an OpenAI-compatible server sends is
supported: no redirects, no compression, no proxies, no pipelining.
"""

from __future__ import annotations

import asyncio
import ssl
import time
from typing import Protocol

# Parser states.
_IDLE, _HEAD, _LENGTH, _CHUNK_SIZE, _CHUNK_DATA, _CHUNK_END, _TRAILER, _UNTIL_EOF = range(8)


class Sink(Protocol):
    """Receives one response: its status, then body pieces stamped with arrival time."""

    def head(self, status: int) -> None: ...
    def body(self, data: bytes, now: float) -> None: ...


class HTTPConnection(asyncio.Protocol):
    """One TCP connection carrying one request at a time."""

    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.closed = False
        self.reusable = True  # fresh, or the last response allowed another request
        self.responses = 0  # completed on this connection; > 0 means a reused socket
        self.received = 0  # bytes of the current response so far
        self.finished_at = 0.0  # perf_counter when the current response's last byte came
        self._buf = bytearray()
        self._state = _IDLE
        self._left = 0  # bytes left in the Content-Length body or the current chunk
        self._keep_alive = False
        self._sink: Sink | None = None
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
        self.received += len(data)
        self._buf += data
        try:
            self._parse(now)
        except (ValueError, IndexError) as e:
            self.abort(ConnectionError(f"malformed HTTP response: {e}"))

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        done = self._done
        if done is None or done.done():
            return
        if self._state == _UNTIL_EOF:  # a body without length ends when the server closes
            self._finish(time.perf_counter())
        else:
            n = self.received
            what = f"mid-response (after {n} bytes)" if n else "without responding"
            done.set_exception(ConnectionError(f"server closed the connection {what}"))

    # -- use ------------------------------------------------------------------------------
    def request(self, data: bytes, sink: Sink) -> asyncio.Future[None]:
        """Send a complete request; the future resolves when the response has ended."""
        assert self.transport is not None and self._done is None
        self._done = asyncio.get_running_loop().create_future()
        self._sink, self._state, self.received, self.reusable = sink, _HEAD, 0, False
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

    # -- parsing --------------------------------------------------------------------------
    def _parse(self, now: float) -> None:
        buf, pieces, finished = self._buf, [], False
        while buf and not finished:
            state = self._state
            if state == _HEAD:
                end = buf.find(b"\r\n\r\n")
                if end < 0:
                    break  # not `return`: pieces gathered so far must be delivered
                head = bytes(buf[:end])
                del buf[: end + 4]
                finished = self._head(head)
            elif state in (_LENGTH, _CHUNK_DATA):
                take = min(len(buf), self._left)
                pieces.append(bytes(buf[:take]))  # partial chunks too: SSE copes with halves
                del buf[:take]
                self._left -= take
                if self._left == 0:
                    if state == _LENGTH:
                        finished = True
                    else:
                        self._state = _CHUNK_END
            elif state == _CHUNK_SIZE:
                end = buf.find(b"\r\n")
                if end < 0:
                    break
                size = int(bytes(buf[:end]).split(b";", 1)[0], 16)
                del buf[: end + 2]
                self._state, self._left = (_TRAILER, 0) if size == 0 else (_CHUNK_DATA, size)
            elif state == _CHUNK_END:
                if len(buf) < 2:
                    break
                del buf[:2]
                self._state = _CHUNK_SIZE
            elif state == _TRAILER:
                end = buf.find(b"\r\n")
                if end < 0:
                    break
                finished = end == 0  # an empty line ends the trailers
                del buf[: end + 2]
            elif state == _UNTIL_EOF:
                pieces.append(bytes(buf))
                buf.clear()
            else:  # bytes after a complete response: not a server we can trust
                raise ValueError("unexpected bytes after the response")
        if pieces and self._sink is not None:
            self._sink.body(pieces[0] if len(pieces) == 1 else b"".join(pieces), now)
        if finished:
            self._finish(now)

    def _head(self, head: bytes) -> bool:
        """Parse status line and headers; True if the response is already complete."""
        lines = head.split(b"\r\n")
        version, status_text = lines[0].split(b" ", 2)[:2]
        status = int(status_text)
        if 100 <= status < 200:  # an interim response: the real one follows
            return False
        headers: dict[bytes, bytes] = {}
        for line in lines[1:]:
            name, _, value = line.partition(b":")
            headers[name.strip().lower()] = value.strip().lower()
        connection = headers.get(b"connection", b"")
        if version == b"HTTP/1.1":
            self._keep_alive = b"close" not in connection
        else:
            self._keep_alive = b"keep-alive" in connection
        assert self._sink is not None
        self._sink.head(status)
        if status in (204, 304):
            return True
        if b"chunked" in headers.get(b"transfer-encoding", b""):
            self._state = _CHUNK_SIZE
        elif b"content-length" in headers:
            self._left = int(headers[b"content-length"])
            self._state = _LENGTH
            return self._left == 0
        else:
            self._state, self._keep_alive = _UNTIL_EOF, False
        return False

    def _finish(self, now: float) -> None:
        self.finished_at = now
        self.responses += 1
        self.reusable = self._keep_alive and not self._buf and not self.closed
        self._state, self._sink = _IDLE, None
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

    async def acquire(self) -> HTTPConnection:
        while self._idle:
            conn = self._idle.pop()  # LIFO: the warmest socket, and idle ones age out
            if not conn.closed:
                return conn
        loop = asyncio.get_running_loop()
        _, conn = await asyncio.wait_for(
            loop.create_connection(HTTPConnection, self.host, self.port, ssl=self.ssl),
            self.connect_timeout,
        )
        self.opened += 1
        return conn

    def release(self, conn: HTTPConnection) -> None:
        if conn.reusable and not conn.closed:
            self._idle.append(conn)
        else:
            conn.close()

    def close(self) -> None:
        for conn in self._idle:
            conn.close()
        self._idle.clear()
