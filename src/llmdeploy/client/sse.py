"""Reading one OpenAI-API response as it arrives: an SSE stream of chunks (token-bearing
ones are stamped with their arrival time), or a whole JSON body; usage and errors either
way."""

from __future__ import annotations

from typing import Any

from llmdeploy import jsontext

from .base import error_text

_TEXT_FIELDS = ("content", "reasoning_content", "reasoning")  # engines differ on the name


class ResponseReader:
    """Sink for one response: SSE events as they arrive, or the whole JSON body."""

    __slots__ = (
        "_data", "_raw", "_tail", "chars", "chat", "error", "events", "finish", "status", "stream",
        "times", "usage",
    )  # fmt: skip

    def __init__(self, stream: bool, chat: bool) -> None:
        self.stream, self.chat, self.status = stream, chat, 0
        self.times: list[float] = []  # perf_counter of each token-bearing chunk
        self.usage: Any = None
        self.finish: str | None = None
        self.error: str | None = None
        self.chars = self.events = 0
        self._tail = b""
        self._data: list[bytes] = []
        self._raw = bytearray()

    def head(self, status: int) -> None:
        self.status = status

    def body(self, data: bytes, now: float) -> None:
        if not self.stream or self.status != 200 or len(self._raw) < 200:
            self._raw += data  # a stream keeps its start, to show if it was not SSE
            if not self.stream or self.status != 200:
                return
        lines = (self._tail + data).split(b"\n") if self._tail else data.split(b"\n")
        self._tail = lines.pop()  # an incomplete last line waits for the next read
        for line in lines:
            self._line(line, now)

    def _line(self, line: bytes, now: float) -> None:
        if line.endswith(b"\r"):  # sse-starlette (llama.cpp, SGLang) ends lines with CRLF
            line = line[:-1]
        if not line:  # a blank line dispatches the event
            if self._data:
                self._event(b"\n".join(self._data), now)
                self._data = []
        elif line.startswith(b"data:"):
            self._data.append(line[6:] if line[5:6] == b" " else line[5:])
        # comments (": ping") and event:/id:/retry: fields carry nothing we measure

    def _event(self, payload: bytes, now: float) -> None:
        self.events += 1
        if payload == b"[DONE]":
            return
        try:
            obj = jsontext.loads(payload)
        except ValueError:
            self.error = f"malformed SSE data: {payload[:120]!r}"
            return
        if not isinstance(obj, dict):
            return
        if "error" in obj or obj.get("object") == "error":  # vLLM reports failures in-stream
            self.error = "error in stream: " + error_text(payload)
            return
        self._choice(obj, now)

    def _choice(self, obj: dict[str, Any], now: float | None) -> None:
        if obj.get("usage"):  # the last usage wins (continuous usage stats send many)
            self.usage = obj["usage"]
        choices = obj.get("choices")
        if not choices or not isinstance(choices[0], dict):
            return
        choice = choices[0]
        if self.chat:
            part = choice.get("delta" if now is not None else "message") or {}
            fields = [v for k in _TEXT_FIELDS if isinstance(v := part.get(k), str)]
            chars = sum(len(v) for v in fields)
            text = chars > 0 or bool(part.get("tool_calls"))
            empty = bool(fields) and "role" not in part  # not the role announcement
        else:
            chars = len(choice.get("text") or "")
            text, empty = chars > 0, isinstance(choice.get("text"), str)
        # A chunk whose text is empty still carries a token — vLLM streams one per token
        # and holds back bytes of an incomplete UTF-8 character — and vLLM's benchmark
        # stamps it (TTFT, ITL); an empty chunk that only ends the stream does not.
        text = text or (empty and not choice.get("finish_reason"))
        self.chars += chars
        if text and now is not None:
            self.times.append(now)
        if choice.get("finish_reason"):
            self.finish = choice["finish_reason"]

    def finalize(self, now: float) -> None:
        """After the body ended: flush a stream's last event, or read the JSON body."""
        if self.status != 200:
            self.error = f"HTTP {self.status}: {error_text(bytes(self._raw))}"
        elif self.stream:
            if self._tail:
                self._line(self._tail, now)
            self._line(b"", now)
            if not self.events:
                self.error = f"asked to stream, got no SSE events: {bytes(self._raw[:120])!r}"
        else:
            try:
                obj = jsontext.loads(self._raw)
            except ValueError:
                self.error = f"response is not JSON: {bytes(self._raw[:120])!r}"
                return
            if isinstance(obj, dict):
                self._choice(obj, None)
