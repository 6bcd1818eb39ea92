"""What both clients share: the server's address and request heads (`Server`), one whole
response (`Response`), and how a server's error body reads as one line."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

from llmdeploy import jsontext


def error_text(raw: bytes) -> str:
    """The message of an error body, at most 300 characters.

    {"error": {"message": …}} (OpenAI, new vLLM), {"object": "error", "message": …} (old
    vLLM), {"error": "…"}, FastAPI's {"detail": …}; anything else is shown raw."""
    try:
        obj = jsontext.loads(raw)
    except ValueError:
        obj = None
    if isinstance(obj, dict):
        err = obj.get("error", obj)
        message = err.get("message", err.get("detail")) if isinstance(err, dict) else err
        if isinstance(message, str):
            return message[:300]
    return raw[:300].decode("utf-8", "replace").strip() or "(empty body)"


@dataclass(frozen=True)
class Server:
    """One OpenAI-compatible server: `http(s)://host[:port][/prefix]`, with or without a
    trailing `/v1` (paths given to the clients start with `/v1/…` or are the engine's own,
    like `/health`)."""

    base_url: str
    host: str
    port: int
    tls: bool
    prefix: str  # the URL's path without /v1, put before every request path
    netloc: str
    api_key: str | None = field(default=None, repr=False)  # never in a repr or a log
    user_agent: str = "llmdeploy"

    @classmethod
    def parse(
        cls, base_url: str, *, api_key: str | None = None, user_agent: str = "llmdeploy"
    ) -> Server:
        url = urlsplit(base_url)
        if url.scheme not in ("http", "https") or not url.hostname:
            raise ValueError(f"base URL must be http(s)://host[:port], got {base_url!r}")
        tls = url.scheme == "https"
        return cls(
            base_url=base_url,
            host=url.hostname,
            port=url.port or (443 if tls else 80),
            tls=tls,
            prefix=url.path.rstrip("/").removesuffix("/v1"),
            netloc=url.netloc,
            api_key=api_key,
            user_agent=user_agent,
        )

    def head(self, method: str, path: str, *, accept: str = "application/json") -> bytes:
        """A request with a JSON body, up to `Content-Length: `: the caller appends the
        length, a blank line and the body. Built once per kind of request — the bench
        sends thousands of them."""
        start = self._start(method, path, accept)
        return f"{start}Content-Type: application/json\r\nContent-Length: ".encode()

    def encode(self, method: str, path: str, body: bytes | None = None) -> bytes:
        """One complete request (no body: no Content-Type, Content-Length 0)."""
        if body is not None:
            return self.head(method, path) + b"%d\r\n\r\n" % len(body) + body
        start = self._start(method, path, "application/json")
        return f"{start}Content-Length: 0\r\n\r\n".encode()

    def _start(self, method: str, path: str, accept: str) -> str:
        auth = f"Authorization: Bearer {self.api_key}\r\n" if self.api_key else ""
        # Accept-Encoding: the parser reads identity bodies only; say so rather than hope.
        return (
            f"{method} {self.prefix}{path} HTTP/1.1\r\nHost: {self.netloc}\r\n"
            f"User-Agent: {self.user_agent}\r\nAccept: {accept}\r\n"
            f"Accept-Encoding: identity\r\n{auth}"
        )


def encode_json(payload: Any) -> bytes:
    return json.dumps(payload, separators=(",", ":"), ensure_ascii=False).encode()


@dataclass(frozen=True)
class Response:
    """A whole response: status and body."""

    status: int  # 0 never comes from a client: no answer is an OSError
    body: bytes = b""

    def json(self) -> Any:
        """The body as JSON (ValueError if it is not)."""
        return jsontext.loads(self.body)

    @property
    def error(self) -> str:
        """The server's message, for an error status."""
        return error_text(self.body)


class Collect:
    """Sink that keeps a whole response in memory."""

    __slots__ = ("data", "status")

    def __init__(self) -> None:
        self.status, self.data = 0, bytearray()

    def head(self, status: int) -> None:
        self.status = status

    def body(self, data: bytes, now: float) -> None:
        self.data += data

    def response(self) -> Response:
        return Response(self.status, bytes(self.data))


@dataclass
class Timing:
    """When a request left and its response ended (perf_counter); 0.0 until then."""

    sent: float = 0.0
    ended: float = 0.0
