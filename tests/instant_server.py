"""An instant OpenAI-compatible server for benchmarking the benchmark client: asyncio,
standard library only, HTTP/1.1 keep-alive, `/v1/chat/completions` and `/v1/completions`
with SSE streaming (chunked, like uvicorn) and `stream_options.include_usage`.

It answers from precomputed bytes so that it costs far less CPU than the client under
test. Token counts are deterministic (prompt: its words; output: max_tokens, or fewer
with --eos-after) and totalled at GET /stats so tests can check the client's sums;
/stats also counts the connections accepted (keep-alive reuse shows there).
--ttft-ms/--itl-ms pace streams token by token; a non-streamed answer comes whole after
the same time (ttft + itl per further token), as from a real engine. GET /v1/models
lists --model-name.

--tokenizer vllm|sglang adds that engine's POST /tokenize and /detokenize (SGLang's
guarded by --api-key, vLLM's not), with a deterministic tokenizer (`Tokenizer`) that, like
BPE, segments a word by the whole word, so a cut word re-tokenizes to another length; the
prompt tokens of usage are then counted by it (chat: the message trimmed, in a 5-token
template; completions: BOS + text). /stats adds the tokenizer calls and the distinct
prompt texts seen.

--script FILE answers scripted, hostile or broken things (first matching rule wins; no
rule matches: the behaviour above). FILE is a JSON list of rules:
  {"match": {"path": "/v1/chat/completions", "stream": false, "thinking": false,
             "tools": true, "text": "substring of the prompt"},
   every key optional; path defaults to /v1/chat/completions, thinking is the request's
   chat_template_kwargs.enable_thinking (null: not sent), tools: a tool_choice was sent;
   one of:
   "message": {...}          a non-streamed chat completion carrying this message
                             (+ "repeat": N: its content N times over — a huge answer)
   "deltas": [{...}, ...]    a streamed chat completion: one chunk per delta
   "json": obj               HTTP 200 with this JSON body (any path, e.g. /version)
   "body": "text"            HTTP 200, this body as bytes (each char a byte: \\u00ff is
                             0xff), declared application/json
   and optionally "status": N (the status line), "finish_reason" (default "stop"),
   "cut": N (send only the first N bytes of the whole response, then close the socket).}
/stats adds "scripted": answers given by a rule.

Run: python tests/instant_server.py --port 0   (prints "listening on HOST:PORT")
"""

from __future__ import annotations

import argparse
import asyncio
import json
import re
import signal
from typing import Any

_CHUNKED_END = b"0\r\n\r\n"
_SSE_HEAD = (
    b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nTransfer-Encoding: chunked\r\n\r\n"
)


def _chunk(event: dict[str, Any] | str) -> bytes:
    text = event if isinstance(event, str) else json.dumps(event, separators=(",", ":"))
    data = f"data: {text}\n\n".encode()
    return b"%x\r\n%s\r\n" % (len(data), data)


def _json_response(status: int, obj: object, close: bool = False) -> bytes:
    body = json.dumps(obj).encode()
    reason = {200: "OK", 401: "Unauthorized", 404: "Not Found", 500: "Internal Server Error"}
    conn = "Connection: close\r\n" if close else ""
    return (
        f"HTTP/1.1 {status} {reason.get(status, 'Error')}\r\nContent-Type: application/json\r\n"
        f"{conn}Content-Length: {len(body)}\r\n\r\n"
    ).encode() + body


class Tokenizer:
    """Deterministic and, like BPE, not additive at arbitrary cuts: a word (with its
    leading space) is cut into pieces of 2 characters if the word has an even number of
    letters, else of 3 — so a window ending inside "between" ("bet","wee","n") decodes to
    "betwee", which is 3 pieces ("be","tw","ee"), not 2. Ids are handed out as pieces are
    first seen (stable for the server's life). BOS is 1; a chat is, per message,
    [2, 3] + the message's content, trimmed, + [4], then [5, 6] for the assistant's turn."""

    BOS = 1
    _WORD = re.compile(r" *[^ ]+| +")

    def __init__(self) -> None:
        self.pieces: list[str] = []
        self.ids: dict[str, int] = {}

    def encode(self, text: str) -> list[int]:
        out = []
        for word in self._WORD.findall(text):
            letters = word.lstrip(" ")
            lead = word[: len(word) - len(letters)]
            size = 2 if len(letters) % 2 == 0 else 3
            cut = [letters[i : i + size] for i in range(0, len(letters), size)] or [""]
            cut[0] = lead + cut[0]
            out += [self._id(piece) for piece in cut]
        return out

    def _id(self, piece: str) -> int:
        if piece not in self.ids:
            self.ids[piece] = 10 + len(self.pieces)
            self.pieces.append(piece)
        return self.ids[piece]

    def decode(self, ids: list[int]) -> str:
        return "".join(self.pieces[i - 10] for i in ids if i >= 10)

    def prompt(self, text: str, special: bool = True) -> list[int]:
        return ([self.BOS] if special else []) + self.encode(text)

    def chat(self, messages: list[dict[str, Any]]) -> list[int]:
        out = []
        for m in messages:
            out += [2, 3, *self.encode(str(m.get("content") or "").strip()), 4]
        return [*out, 5, 6]


class Server:
    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.stats = {
            "requests": 0, "prompt_tokens": 0, "completion_tokens": 0, "failed": 0,
            "connections": 0, "tokenize": 0, "detokenize": 0, "distinct_prompts": 0,
        }  # fmt: skip
        self._frames: dict[tuple[str, bool, str], bytes] = {}
        self.tokenizer = Tokenizer() if args.tokenizer != "none" else None
        self._seen: set[str] = set()
        self.rules: list[dict[str, Any]] = []
        if args.script:
            with open(args.script, encoding="utf-8") as handle:
                self.rules = json.load(handle)
            self.stats["scripted"] = 0

    def tokenize(self, path: str, headers: dict[str, str], body: bytes) -> bytes:
        """vLLM's and SGLang's POST /tokenize and /detokenize (their answers' shapes)."""
        a, tok = self.args, self.tokenizer
        assert tok is not None
        if (
            a.tokenizer == "sglang"
            and a.api_key
            and (headers.get("authorization") != f"Bearer {a.api_key}")
        ):
            return _json_response(401, {"error": "Unauthorized"})
        req = json.loads(body)
        if path == "/detokenize":
            self.stats["detokenize"] += 1
            text = tok.decode(req["tokens"])
            return _json_response(200, {"prompt" if a.tokenizer == "vllm" else "text": text})
        self.stats["tokenize"] += 1
        if req.get("messages") is not None:
            ids = tok.chat(req["messages"])
        else:
            ids = tok.prompt(req["prompt"], req.get("add_special_tokens", True))
        return _json_response(200, {"count": len(ids), "max_model_len": 4096, "tokens": ids})

    def frame(self, model: str, chat: bool, field: str) -> bytes:
        """One token's SSE chunk, built once per (model, endpoint, field)."""
        key = (model, chat, field)
        if key not in self._frames:
            obj = "chat.completion.chunk" if chat else "text_completion"
            choice: dict[str, Any] = {"index": 0, "finish_reason": None}
            if chat:
                choice["delta"] = {field: "tok "}
            else:
                choice["text"] = "tok "
            event = {"id": "x", "object": obj, "created": 0, "model": model, "choices": [choice]}
            self._frames[key] = _chunk(event)
        return self._frames[key]

    def handle(self, method: str, path: str, headers: dict[str, str], body: bytes) -> Any:
        """Bytes to send, or a list of (delay_s, bytes) for a paced stream."""
        a = self.args
        if method == "GET" and path == "/stats":
            return _json_response(200, self.stats)
        if self.rules and (rule := self.rule(method, path, body)) is not None:
            self.stats["scripted"] += 1
            return self.scripted(rule, path, body)
        if method == "GET" and path == "/health":
            return _json_response(200, {})
        if method == "GET" and path == "/v1/models":
            if a.api_key and headers.get("authorization") != f"Bearer {a.api_key}":
                return _json_response(401, {"error": {"message": "invalid API key"}})
            listed = {"id": a.model_name, "object": "model", "owned_by": "instant"}
            return _json_response(200, {"object": "list", "data": [listed]})
        if method == "POST" and path in ("/tokenize", "/detokenize") and self.tokenizer:
            return self.tokenize(path, headers, body)
        if path not in ("/v1/chat/completions", "/v1/completions"):
            return _json_response(404, {"error": {"message": f"no route {path}"}})
        if a.api_key and headers.get("authorization") != f"Bearer {a.api_key}":
            return _json_response(401, {"error": {"message": "invalid API key"}})
        self.stats["requests"] += 1
        if a.fail_every and self.stats["requests"] % a.fail_every == 0:
            self.stats["failed"] += 1
            return _json_response(500, {"error": {"message": "injected failure"}})
        req = json.loads(body)
        chat = path.endswith("chat/completions")
        if chat:
            text = " ".join(str(m.get("content", "")) for m in req["messages"])
        else:
            text = req["prompt"]
        if text not in self._seen:
            self._seen.add(text)
            self.stats["distinct_prompts"] += 1
        if self.tokenizer is None:
            prompt = len(text.split())
        elif chat:
            prompt = len(self.tokenizer.chat(req["messages"]))
        else:
            prompt = len(self.tokenizer.prompt(text))
        n = int(req.get("max_tokens") or a.default_max_tokens)
        if a.eos_after is not None and not req.get("ignore_eos"):
            n = min(n, a.eos_after)
        finish = "length" if n == int(req.get("max_tokens") or a.default_max_tokens) else "stop"
        usage = {"prompt_tokens": prompt, "completion_tokens": n, "total_tokens": prompt + n}
        self.stats["prompt_tokens"] += prompt
        self.stats["completion_tokens"] += n
        model = str(req.get("model", "instant"))
        if not req.get("stream"):
            out = "tok " * n  # the same text as the stream's deltas put together
            message: dict[str, Any] = {"role": "assistant", "content": out}
            if chat and a.tool_calls == "context" and isinstance(req.get("tool_choice"), dict):
                # vLLM lowers max_tokens to what the prompt left of max_model_len: the
                # call is cut at finish length with fewer tokens than were asked for.
                n = min(n, 20)
                usage = {"prompt_tokens": 490, "completion_tokens": n, "total_tokens": 490 + n}
                out = '<tool_call>{"name": "get_weather", "arguments": {"'
                message = {"role": "assistant", "content": out}
                finish = "length"
            elif chat and a.tool_calls != "ignore" and isinstance(req.get("tool_choice"), dict):
                message = {"role": "assistant", "content": None,
                           "tool_calls": [tool_call(req, a.tool_calls)]}  # fmt: skip
            choice = {"index": 0, "finish_reason": finish}
            choice.update({"message": message} if chat else {"text": out})
            reply = _json_response(
                200, {"id": "x", "model": model, "choices": [choice], "usage": usage}
            )
            took = (a.ttft_ms + a.itl_ms * max(n - 1, 0)) / 1000
            return [(took, reply)] if took else reply
        return self.stream(req, chat, model, n, finish, usage)

    def rule(self, method: str, path: str, body: bytes) -> dict[str, Any] | None:
        """The first --script rule matching this request."""
        req: Any = {}
        if method == "POST" and body:
            try:
                req = json.loads(body)
            except ValueError:
                req = {}
        if not isinstance(req, dict):
            req = {}
        kwargs = req.get("chat_template_kwargs")
        thinking = kwargs.get("enable_thinking") if isinstance(kwargs, dict) else None
        messages = req.get("messages") or []
        text = " ".join(str(m.get("content", "")) for m in messages if isinstance(m, dict))
        text += str(req.get("prompt") or "")
        for rule in self.rules:
            want = rule.get("match", {})
            if (
                want.get("path", "/v1/chat/completions") == path
                and want.get("stream", bool(req.get("stream"))) == bool(req.get("stream"))
                and want.get("thinking", thinking) == thinking
                and want.get("tools", "tool_choice" in req) == ("tool_choice" in req)
                and want.get("text", "") in text
            ):
                return rule
        return None

    def scripted(self, rule: dict[str, Any], path: str, body: bytes) -> Any:
        """The bytes a --script rule says to answer (see the module's docstring)."""
        status = int(rule.get("status", 200))
        finish = rule.get("finish_reason", "stop")
        usage = rule.get("usage", {"prompt_tokens": 3, "completion_tokens": 5, "total_tokens": 8})
        base = {"id": "s", "created": 0, "model": self.args.model_name}
        if "deltas" in rule:
            head = _SSE_HEAD.replace(b"200 OK", f"{status} Scripted".encode())
            base["object"] = "chat.completion.chunk"
            events = [
                _chunk({**base, "choices": [{"index": 0, "delta": d, "finish_reason": None}]})
                for d in rule["deltas"]
            ]
            done = {"index": 0, "delta": {}, "finish_reason": finish}
            events.append(_chunk({**base, "choices": [done]}))
            events.append(_chunk({**base, "choices": [], "usage": usage}))
            out = head + b"".join(events) + _chunk("[DONE]") + _CHUNKED_END
        else:
            if "message" in rule:
                message = dict(rule["message"])
                if "repeat" in rule:
                    message["content"] = str(message.get("content") or "") * int(rule["repeat"])
                choice = {"index": 0, "message": message, "finish_reason": finish}
                obj = {**base, "object": "chat.completion", "choices": [choice], "usage": usage}
                data = json.dumps(obj).encode()
            elif "json" in rule:
                data = json.dumps(rule["json"]).encode()
            else:
                data = str(rule.get("body", "")).encode("latin-1")
            out = (
                f"HTTP/1.1 {status} Scripted\r\nContent-Type: application/json\r\n"
                f"Content-Length: {len(data)}\r\n\r\n"
            ).encode() + data
        if "cut" in rule:
            return [(0.0, out[: int(rule["cut"])]), (0.0, None)]  # None: close the socket
        return out

    def stream(
        self, req: dict[str, Any], chat: bool, model: str, n: int, finish: str, usage: Any
    ) -> list[tuple[float, bytes]]:
        a = self.args
        head = _SSE_HEAD
        obj = "chat.completion.chunk" if chat else "text_completion"
        base = {"id": "x", "object": obj, "created": 0, "model": model}
        if chat:  # vLLM's first chunk: a role and empty content, which is not a token
            role = {"index": 0, "delta": {"role": "assistant", "content": ""}}
            head += _chunk({**base, "choices": [role]})
        reasoning = min(n, a.reasoning_tokens) if chat else 0
        tokens = [self.frame(model, chat, a.reasoning_field)] * reasoning
        tokens += [self.frame(model, chat, "content")] * (n - reasoning)
        done: dict[str, Any] = {"index": 0, "finish_reason": finish}
        if chat:
            done["delta"] = {}
        else:
            done["text"] = ""
        tail = _chunk({**base, "choices": [done]})
        options = req.get("stream_options") or {}
        if options.get("include_usage") and not a.no_usage:
            tail += _chunk({**base, "choices": [], "usage": usage})
        tail += _chunk("[DONE]") + _CHUNKED_END
        if not a.ttft_ms and not a.itl_ms:
            return [(0.0, head + b"".join(tokens) + tail)]
        steps = [(0.0, head)]
        steps += [
            (a.ttft_ms / 1000 if i == 0 else a.itl_ms / 1000, t) for i, t in enumerate(tokens)
        ]
        return [*steps, (0.0, tail)]


def tool_call(req: dict[str, Any], mode: str) -> dict[str, Any]:
    """The call a named tool_choice forces: arguments from the function's schema (each
    property's first enum value) when the function says `strict: true` — without it, as
    in vLLM 0.32, only the envelope is forced and the arguments are free (off the
    schema here) — or broken on purpose (--tool-calls bad-json|off-schema)."""
    name = req["tool_choice"]["function"]["name"]
    function = next(t["function"] for t in req.get("tools", []) if t["function"]["name"] == name)
    properties = function.get("parameters", {}).get("properties", {})
    arguments = json.dumps({k: v.get("enum", ["x"])[0] for k, v in properties.items()})
    if mode == "off-schema" or function.get("strict") is not True:
        arguments = json.dumps({"town": "Paris"})
    elif mode == "bad-json":
        arguments = arguments[:-3]
    return {"id": "call-0", "type": "function", "function": {"name": name, "arguments": arguments}}


class Connection(asyncio.Protocol):
    def __init__(self, server: Server) -> None:
        self.server = server
        self.buf = bytearray()
        self.served = 0
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        self.server.stats["connections"] += 1

    def data_received(self, data: bytes) -> None:
        self.buf += data
        while True:
            end = self.buf.find(b"\r\n\r\n")
            if end < 0:
                return
            lines = bytes(self.buf[:end]).decode("latin-1").split("\r\n")
            method, path, _ = lines[0].split(" ", 2)
            headers = {}
            for line in lines[1:]:
                name, _, value = line.partition(":")
                headers[name.strip().lower()] = value.strip()
            need = end + 4 + int(headers.get("content-length", 0))
            if len(self.buf) < need:
                return
            body = bytes(self.buf[end + 4 : need])
            del self.buf[:need]
            self.respond(self.server.handle(method, path, headers, body))

    def respond(self, out: Any) -> None:
        assert self.transport is not None
        self.served += 1
        # --close-after: drop the socket silently (no Connection: close), the way servers
        # expire idle keep-alive connections; the client must retry, not fail.
        close = bool(self.server.args.close_after) and self.served >= self.server.args.close_after
        if isinstance(out, bytes):
            self.transport.write(out)
        elif len(out) == 1 and not out[0][0]:
            self.transport.write(out[0][1])
        else:
            asyncio.get_running_loop().create_task(self.paced(out, close))
            return
        if close:
            self.transport.close()

    async def paced(self, steps: list[tuple[float, bytes | None]], close: bool) -> None:
        assert self.transport is not None
        for delay, data in steps:
            if delay:
                await asyncio.sleep(delay)
            if self.transport.is_closing():
                return
            if data is None:  # a --script "cut": the server goes away mid-answer
                self.transport.close()
                return
            self.transport.write(data)
        if close:
            self.transport.close()


async def serve(args: argparse.Namespace) -> None:
    loop = asyncio.get_running_loop()
    server = Server(args)
    srv = await loop.create_server(lambda: Connection(server), args.host, args.port, backlog=1024)
    port = srv.sockets[0].getsockname()[1]
    print(f"listening on {args.host}:{port}", flush=True)
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    srv.close()


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=0, help="0: any free port (printed)")
    p.add_argument("--ttft-ms", type=float, default=0.0, help="delay before the first token")
    p.add_argument("--itl-ms", type=float, default=0.0, help="delay between tokens")
    p.add_argument("--eos-after", type=int, default=None, help="stop early unless ignore_eos")
    p.add_argument("--default-max-tokens", type=int, default=16)
    p.add_argument("--reasoning-tokens", type=int, default=0, help="first N chat tokens think")
    p.add_argument("--reasoning-field", default="reasoning_content")
    p.add_argument("--api-key", default=None)
    p.add_argument("--fail-every", type=int, default=0, help="every Nth request gets HTTP 500")
    p.add_argument("--no-usage", action="store_true", help="ignore include_usage (llama.cpp)")
    p.add_argument("--close-after", type=int, default=0, help="drop a socket after N responses")
    p.add_argument("--model-name", default="m", help="the one model GET /v1/models lists")
    p.add_argument(
        "--tokenizer",
        choices=["none", "vllm", "sglang"],
        default="none",
        help="serve that engine's /tokenize and /detokenize and count usage with it",
    )
    p.add_argument(
        "--tool-calls",
        choices=["ignore", "follow", "bad-json", "off-schema", "context"],
        default="ignore",
        help="a non-streamed chat with a named tool_choice: answer as text (ignore), with the "
        "forced call (follow; arguments on the schema only if the function is strict), with "
        "its arguments cut short or off the schema, or as text cut where the context ran out",
    )
    p.add_argument("--script", default=None, help="JSON rules: scripted answers (see above)")
    asyncio.run(serve(p.parse_args()))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
