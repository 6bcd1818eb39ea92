"""HTTP/1.1 response framing without I/O: bytes in as they arrive, status and body pieces
out to a sink. The asyncio connection (http11.py) and the blocking one (blocking.py) both
feed it, so there is one parser to trust and to test.

Only what an OpenAI-compatible server sends is supported: Content-Length, chunked and
read-until-close bodies, interim 1xx responses; no compression (we ask for identity), no
pipelining (one request at a time per connection).
"""

from __future__ import annotations

from typing import Protocol

# Parser states.
_IDLE, _HEAD, _LENGTH, _CHUNK_SIZE, _CHUNK_DATA, _CHUNK_END, _TRAILER, _UNTIL_EOF = range(8)


class Sink(Protocol):
    """Receives one response: its status, then body pieces stamped with arrival time."""

    def head(self, status: int) -> None: ...
    def body(self, data: bytes, now: float) -> None: ...


class ResponseParser:
    """The framing state of one connection. `expect(sink)` after writing a request, then
    `feed()` every read; either returns True once the response is complete. Malformed
    input raises ValueError or IndexError."""

    def __init__(self) -> None:
        self.reusable = True  # fresh, or the last response allowed another request
        self.responses = 0  # completed on this connection; > 0 means a reused socket
        self.received = 0  # bytes of the current response so far
        self.finished_at = 0.0  # perf_counter when the current response's last byte came
        self._buf = bytearray()
        self._state = _IDLE
        self._left = 0  # bytes left in the Content-Length body or the current chunk
        self._keep_alive = False
        self._sink: Sink | None = None

    def expect(self, sink: Sink) -> None:
        """A request was written: what arrives next is its response, for `sink`."""
        self._sink, self._state, self.received, self.reusable = sink, _HEAD, 0, False

    def feed(self, data: bytes, now: float) -> bool:
        self.received += len(data)
        self._buf += data
        return self._parse(now)

    def feed_eof(self, now: float) -> bool:
        """The server closed the connection: True if that ended the response (a body
        without a length ends that way); False if the response is cut short."""
        if self._state != _UNTIL_EOF:
            return False
        self._keep_alive = False
        self._complete(now)
        return True

    def _parse(self, now: float) -> bool:
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
            self._complete(now)
        return finished

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

    def _complete(self, now: float) -> None:
        self.finished_at = now
        self.responses += 1
        self.reusable = self._keep_alive and not self._buf
        self._state, self._sink = _IDLE, None
