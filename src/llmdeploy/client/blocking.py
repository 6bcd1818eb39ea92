"""The blocking client: the same requests from synchronous code — readiness polls while
an engine starts, the health column of `status`. Plain sockets and parser.py; no asyncio
(importing it costs a command that only polls ~50 ms) and no http.client (~30 ms, and a
second HTTP parser to trust)."""

from __future__ import annotations

import socket
import time
import weakref
from typing import Any

from .base import Collect, Response, Server, encode_json
from .parser import ResponseParser, Sink

_READ = 65536


class BlockingConnection(ResponseParser):
    """One socket carrying one request at a time, every wait bounded by a deadline."""

    def __init__(self, sock: socket.socket) -> None:
        super().__init__()
        self.sock = sock
        self.closed = False

    def exchange(self, data: bytes, sink: Sink, deadline: float) -> None:
        self.expect(sink)
        self._bound(deadline)
        self.sock.sendall(data)
        while True:
            self._bound(deadline)
            chunk = self.sock.recv(_READ)
            now = time.perf_counter()
            if not chunk:
                self.close()
                if self.feed_eof(now):  # a body without length ends this way
                    return
                n = self.received
                what = f"mid-response (after {n} bytes)" if n else "without responding"
                raise ConnectionError(f"server closed the connection {what}")
            try:
                if self.feed(chunk, now):
                    return
            except (ValueError, IndexError) as e:
                raise ConnectionError(f"malformed HTTP response: {e}") from None

    def _bound(self, deadline: float) -> None:
        left = deadline - time.monotonic()
        if left <= 0:
            raise TimeoutError("no complete response in time")
        self.sock.settimeout(left)

    def close(self) -> None:
        self.closed = True
        self.sock.close()


class BlockingClient:
    """Requests to one server from synchronous code, keeping one idle keep-alive
    connection for the next request (a readiness poll asks many times a second).
    `timeout` bounds each whole request, connecting included. Failures are OSError
    (ConnectionError, TimeoutError); an HTTP error status is a Response."""

    def __init__(
        self,
        base_url: str,
        *,
        api_key: str | None = None,
        timeout: float = 10.0,
        user_agent: str = "llmdeploy",
    ) -> None:
        self.server = Server.parse(base_url, api_key=api_key, user_agent=user_agent)
        self.timeout = timeout
        self.opened = 0  # sockets opened in total (tests: reuse)
        self._idle: list[BlockingConnection] = []
        # Callers that never call close() (a probe dropped after use) still release the
        # socket when the client is collected, without a ResourceWarning.
        self._finalizer = weakref.finalize(self, _close_all, self._idle)

    def request(
        self, method: str, path: str, payload: Any = None, *, body: bytes | None = None
    ) -> Response:
        """One request: a JSON `payload`, or raw JSON `body` bytes, or none."""
        if payload is not None:
            body = encode_json(payload)
        data = self.server.encode(method, path, body)
        deadline = time.monotonic() + self.timeout
        for attempt in (0, 1):
            if attempt:  # the reused socket was closed by the server: so were the others
                while self._idle:
                    self._idle.pop().close()
            conn = self._idle.pop() if self._idle else self._connect(deadline)
            sink = Collect()
            try:
                conn.exchange(data, sink, deadline)
            except ConnectionError:
                conn.close()
                # A reused socket the server closed while idle fails before any byte of
                # the response: send once more on a fresh one.
                if attempt == 0 and conn.responses > 0 and conn.received == 0:
                    continue
                raise
            except BaseException:
                conn.close()  # a timeout or an interrupt leaves the socket mid-response
                raise
            if conn.reusable:
                self._idle.append(conn)
            else:
                conn.close()
            return sink.response()
        raise AssertionError("unreachable")

    def _connect(self, deadline: float) -> BlockingConnection:
        left = deadline - time.monotonic()
        if left <= 0:
            raise TimeoutError("no connection in time")
        sock = socket.create_connection((self.server.host, self.server.port), timeout=left)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        if self.server.tls:
            import ssl  # only for https: ~9 ms

            try:
                sock = ssl.create_default_context().wrap_socket(
                    sock, server_hostname=self.server.host
                )
            except BaseException:
                sock.close()
                raise
        self.opened += 1
        return BlockingConnection(sock)

    def close(self) -> None:
        self._finalizer()


def _close_all(connections: list[BlockingConnection]) -> None:
    for conn in connections:
        conn.close()
    connections.clear()
