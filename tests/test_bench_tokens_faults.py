"""`bench --input-len N` against hostile and broken tokenizer endpoints. Promises: token-exact
prompts, or words with a one-line warning (no usable tokenizer), or a one-line error (exit
≠ 0, no traceback); never a hang; a bounded number of tokenizer calls.

The server is real: a threaded loopback HTTP/1.1 server (`Hostile`) with an honest
word-level tokenizer (vLLM's /tokenize + /detokenize shapes, `max_model_len` included) and
a per-test `rule` that replaces an answer by a fault: bad JSON shapes, error statuses, an
answer that never ends (slow-loris), an endless chunked body, a reset mid-answer, a stall
that lasts until the test ends. `llmdeploy bench` runs as a real process against it."""

from __future__ import annotations

import http
import json
import random
import re
import signal
import socket
import socketserver
import struct
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest
from conftest import cli

MAX_MODEL_LEN = 4096
TEMPLATE = 3  # the honest chat template's tokens: [1, 2] + content + [3]
SLOW, RESET, ENDLESS, STALL, CLOSE = "slow", "reset", "endless", "stall", "close"
TOKENIZER_PATHS = ("/tokenize", "/detokenize", "/extras/tokenize", "/extras/detokenize")


def answer(status: int, obj: Any = None, *, raw: bytes | None = None, ctype: str = "") -> bytes:
    body = raw if raw is not None else json.dumps(obj).encode()
    phrase = http.HTTPStatus(status).phrase
    kind = ctype or "application/json"
    head = f"HTTP/1.1 {status} {phrase}\r\nContent-Type: {kind}\r\nContent-Length: {len(body)}"
    return head.encode() + b"\r\n\r\n" + body


@dataclass
class Call:
    index: int  # tokenizer calls before this one
    path: str
    payload: dict[str, Any]
    truth: dict[str, Any]  # the honest answer


Rule = Callable[[Call], "bytes | str | None"]  # None: the honest answer


class Words:
    """Honest: a word with its leading space is one token; ids 0-3 are special."""

    def __init__(self) -> None:
        self.pieces: list[str] = []
        self.ids: dict[str, int] = {}
        self.split = re.compile(r" *[^ ]+| +")

    def encode(self, text: str) -> list[int]:
        return [self.ids.setdefault(p, 10 + len(self.ids)) for p in self.split.findall(text)]

    def decode(self, ids: list[int]) -> str:
        """-id is id: a hostile tokenizer with negative ids is consistent about them."""
        self.pieces = sorted(self.ids, key=self.ids.__getitem__)
        n = len(self.pieces)
        return "".join(self.pieces[abs(i) - 10] for i in ids if 10 <= abs(i) < 10 + n)


class Chars(Words):
    """A tiny vocabulary: one token per character."""

    def __init__(self) -> None:
        super().__init__()
        self.split = re.compile(r".", re.S)


@dataclass
class Hostile:
    rule: Rule = lambda call: None
    tok: Words = field(default_factory=Words)
    max_model_len: int | None = MAX_MODEL_LEN
    calls: list[str] = field(default_factory=list)  # tokenizer paths, in order
    prompt_tokens: list[int] = field(default_factory=list)  # usage of each completion
    stalled: threading.Event = field(default_factory=threading.Event)
    stop: threading.Event = field(default_factory=threading.Event)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def count(self, payload: dict[str, Any]) -> list[int]:
        if payload.get("messages") is not None:
            text = str(payload["messages"][0].get("content", "")).strip()
            return [1, 2, *self.tok.encode(text), 3]
        special = [0] if payload.get("add_special_tokens", True) else []
        return special + self.tok.encode(str(payload.get("prompt", "")))

    def truth(self, path: str, payload: dict[str, Any]) -> dict[str, Any]:
        if path == "/tokenize":
            ids = self.count(payload)
            obj: dict[str, Any] = {"count": len(ids), "tokens": ids}
            if self.max_model_len is not None:
                obj["max_model_len"] = self.max_model_len
            return obj
        if path == "/detokenize":
            return {"prompt": self.tok.decode(payload["tokens"])}
        return {}

    def honest(self, path: str, payload: dict[str, Any]) -> bytes:
        if path in ("/tokenize", "/detokenize"):
            return answer(200, self.truth(path, payload))
        if path in ("/v1/chat/completions", "/v1/completions"):
            n = len(self.count(payload))
            self.prompt_tokens.append(n)
            choice = {"index": 0, "text": "x", "message": {"role": "assistant", "content": "x"}}
            usage = {"prompt_tokens": n, "completion_tokens": 1, "total_tokens": n + 1}
            return answer(200, {"choices": [{**choice, "finish_reason": "length"}], "usage": usage})
        if path == "/v1/models":
            return answer(200, {"object": "list", "data": [{"id": "m", "object": "model"}]})
        return answer(404, {"error": {"message": f"no route {path}"}})

    def respond(self, path: str, body: bytes) -> bytes | str:
        payload = json.loads(body) if body else {}
        with self.lock:
            if path not in TOKENIZER_PATHS:
                return self.honest(path, payload)
            self.calls.append(path)
            call = Call(len(self.calls) - 1, path, payload, self.truth(path, payload))
            faulty = self.rule(call)
            return faulty if faulty is not None else self.honest(path, payload)


class _Handler(socketserver.BaseRequestHandler):
    server: _Server

    def handle(self) -> None:
        reader = self.request.makefile("rb")
        try:
            while not self.server.hostile.stop.is_set():
                line = reader.readline()
                if not line:
                    return
                headers = {}
                while (h := reader.readline()) not in (b"\r\n", b""):
                    name, _, value = h.decode().partition(":")
                    headers[name.strip().lower()] = value.strip()
                body = reader.read(int(headers.get("content-length", 0)))
                action = self.server.hostile.respond(line.split()[1].decode(), body)
                if not self.act(action):
                    return
        except OSError:
            return
        finally:
            reader.close()

    def act(self, action: bytes | str) -> bool:
        sock, hostile = self.request, self.server.hostile
        if isinstance(action, bytes):
            sock.sendall(action)
            return True
        if action == SLOW:  # a byte at a time, never the whole announced body
            sock.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 1000000\r\n\r\n")
            while not hostile.stop.wait(0.2):
                sock.sendall(b" ")
        elif action == ENDLESS:  # a chunked body that never ends, as fast as it goes
            sock.sendall(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n")
            chunk = b"10000\r\n" + b"7," * 0x8000 + b"\r\n"
            while not hostile.stop.is_set():
                sock.sendall(chunk)
        elif action == RESET:  # half an answer, then RST
            sock.sendall(b'HTTP/1.1 200 OK\r\nContent-Length: 500\r\n\r\n{"tokens": [1,')
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        elif action == STALL:
            hostile.stalled.set()
            hostile.stop.wait()
        return False  # CLOSE, and every fault above: drop the connection


class _Server(socketserver.ThreadingTCPServer):
    daemon_threads = True
    hostile: Hostile


@pytest.fixture
def serve() -> Iterator[Callable[..., tuple[str, Hostile]]]:
    servers: list[_Server] = []

    def start(**kwargs: Any) -> tuple[str, Hostile]:
        server = _Server(("127.0.0.1", 0), _Handler)
        server.hostile = Hostile(**kwargs)
        threading.Thread(target=server.serve_forever, daemon=True).start()
        servers.append(server)
        return f"http://127.0.0.1:{server.server_address[1]}", server.hostile

    yield start
    for server in servers:
        server.hostile.stop.set()
        server.shutdown()
        server.server_close()


def bench(url: str, *args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    base = ("bench", "--url", url, "--model", "m", "--no-stream", "--output-len", "1")
    return cli(*base, "--requests", "4", *args, timeout=timeout)


def one_line(done: subprocess.CompletedProcess[str], prefix: str) -> str:
    """No traceback, and exactly one line of stderr starting with `prefix` ("error:",
    "warning:"); that line."""
    assert "Traceback" not in done.stderr, done.stderr
    lines = [line for line in done.stderr.splitlines() if line.startswith(prefix)]
    assert len(lines) == 1, done.stderr
    return lines[0]


def exact(done: subprocess.CompletedProcess[str], server: Hostile, n: int) -> None:
    assert done.returncode == 0, done.stderr
    assert "Traceback" not in done.stderr and "warning" not in done.stderr, done.stderr
    assert server.prompt_tokens == [n] * 4, server.prompt_tokens


def test_the_honest_server_gets_exact_prompts(serve: Callable[..., tuple[str, Hostile]]) -> None:
    """The harness itself: without a fault every request counts exactly --input-len (else
    every fault test below would prove nothing)."""
    url, server = serve()
    exact(bench(url, "--input-len", "40"), server, 40)
    assert len(server.calls) <= 4 + 1 + 2 * 4, server.calls


def _tokens(obj: Any) -> Rule:
    return lambda call: answer(200, obj) if call.path == "/tokenize" else None


def _status(status: int) -> Rule:
    return lambda call: answer(status, {"error": {"message": "nope"}})


def _bent(change: Callable[[dict[str, Any]], dict[str, Any]]) -> Rule:
    """/tokenize's honest answer, changed (the detokenizer stays honest)."""
    return lambda call: answer(200, change(call.truth)) if call.path == "/tokenize" else None


def _scaled(factor: int) -> Rule:
    """The honest token list repeated `factor` times (a huge list, consistent `count`)."""
    return _bent(lambda t: {"count": t["count"] * factor, "tokens": t["tokens"] * factor})


_negative = _bent(lambda t: {**t, "tokens": [-i for i in t["tokens"]]})
_miscount = _bent(lambda t: {**t, "count": 999})


HTML = b"<!doctype html><html><body>Welcome to the gateway</body></html>"

DISCOVERY_FAULTS: dict[str, Rule] = {
    "not-a-list": _tokens({"count": 3, "tokens": "10 11 12"}),
    "no-tokens-key": _tokens({"count": 3}),
    "string-tokens": _tokens({"tokens": ["the", "first", "time"]}),
    "float-tokens": _tokens({"tokens": [10.0, 11.5, 12.0]}),
    "bool-tokens": _tokens({"tokens": [True, False, True]}),
    "negative-tokens": _negative,
    "not-an-object": _tokens([10, 11, 12]),
    "count-disagrees": _miscount,
    "huge-token-list": _scaled(100_000),
    "html-200": lambda call: answer(200, raw=HTML, ctype="text/html"),
    "404": _status(404),
    "405": _status(405),
    "500": _status(500),
    "429": _status(429),
}


@pytest.mark.parametrize("fault", DISCOVERY_FAULTS)
def test_an_unusable_tokenizer_falls_back_to_words_with_one_warning(
    serve: Callable[..., tuple[str, Hostile]], fault: str
) -> None:
    """A /tokenize whose answer cannot be trusted from the first call is no tokenizer:
    words, one warning line naming why, exit 0. Catches: negative ids, a `count` that
    contradicts the list and a list far longer than its text, each accepted as a
    tokenizer (prompts built on nonsense, or an exit 2 asking for 300000 tokens); the
    type checks of the ids (a bool is an int to isinstance) weakened."""
    url, server = serve(rule=DISCOVERY_FAULTS[fault])
    done = bench(url, "--input-len", "20")
    assert done.returncode == 0, done.stderr
    line = one_line(done, "warning:")
    assert "has no tokenizer endpoint (POST /tokenize: " in line, line
    assert "--input-len 20 counts words, not tokens" in line, line
    assert len(server.prompt_tokens) == 4
    assert len(server.calls) <= 6, server.calls


def _after(n: int, fault: Rule | bytes | str, paths: tuple[str, ...] = TOKENIZER_PATHS) -> Rule:
    """`fault` from the n-th tokenizer call on (discovery and calibration are 4 calls)."""

    def rule(call: Call) -> bytes | str | None:
        if call.index < n or call.path not in paths:
            return None
        return fault(call) if callable(fault) else fault

    return rule


def _chat_refused(call: Call) -> bytes | None:
    if "messages" not in call.payload:
        return None
    return answer(400, {"error": {"message": "messages not supported"}})


MIDWAY_FAULTS: dict[str, tuple[Rule, str]] = {
    # a 4xx on a chat count was taken for "this server counts text only": AssertionError
    "chat-count-400": (_after(6, _chat_refused), "POST /tokenize: HTTP 400"),
    "dropped-404": (_after(6, _status(404)), "HTTP 404"),
    "500": (_after(6, _status(500)), "HTTP 500"),
    "429": (_after(6, _status(429)), "HTTP 429"),
    "html-200": (_after(6, answer(200, raw=HTML, ctype="text/html")), "not a JSON object"),
    "string-tokens": (_after(4, _tokens({"tokens": ["a", "b"]})), "no token list"),
    "negative-tokens": (_after(4, _negative), "no token list"),
    "count-disagrees": (_after(4, _miscount), "count 999"),
    "detokenize-not-text": (
        _after(4, answer(200, {"prompt": 7}), ("/detokenize",)),
        "POST /detokenize: HTTP 200: no text",
    ),
    "reset-mid-answer": (_after(6, RESET), "POST /"),
    "closed-without-answer": (_after(6, CLOSE), "POST /"),
    "endless-answer": (_after(6, ENDLESS), "larger than"),
}


@pytest.mark.parametrize("fault", MIDWAY_FAULTS)
def test_a_tokenizer_failing_midway_is_one_line_error(
    serve: Callable[..., tuple[str, Hostile]], fault: str
) -> None:
    """After the tokenizer was found and calibrated, any fault ends the command in one line
    naming the endpoint, before any load. Catches: a traceback (AssertionError on a
    refused chat count), a reset reported as "is it running?", an endless answer read
    into memory until --timeout (600 s)."""
    rule, why = MIDWAY_FAULTS[fault]
    url, server = serve(rule=rule)
    started = time.monotonic()
    done = bench(url, "--input-len", "40")
    assert done.returncode == 1, done.stderr
    line = one_line(done, "error:")
    assert "making the prompts through the server's tokenizer failed" in line, line
    assert why in line, line
    assert server.prompt_tokens == []  # no load was sent
    assert time.monotonic() - started < 20


@pytest.mark.parametrize("timeout", ["3", None])
def test_a_slow_loris_tokenizer_times_out_in_one_line(
    serve: Callable[..., tuple[str, Hostile]], timeout: str | None
) -> None:
    """An answer that trickles forever: each tokenizer call has its own deadline, the
    smaller of --timeout and 30 s. Catches: bench waiting --timeout (600 s by default) per
    call — "hung" to anyone watching."""
    url, server = serve(rule=_after(4, SLOW))
    started = time.monotonic()
    done = bench(url, "--input-len", "40", *(("--timeout", timeout) if timeout else ()))
    took = time.monotonic() - started
    assert done.returncode == 1, done.stderr
    line = one_line(done, "error:")
    assert "POST /" in line and "no complete response in" in line, line
    limit = 3 if timeout else 30
    assert limit - 0.5 < took < limit + 8, took
    assert server.prompt_tokens == []


def _unstable(rng: random.Random) -> Rule:
    """Detokenized text gains 0-30 random words every time: it never re-tokenizes to the
    same length twice."""

    def rule(call: Call) -> bytes | None:
        if call.path != "/detokenize" or call.index < 2:
            return None
        words = [f" w{rng.randrange(10**6)}" for _ in range(rng.randrange(31))]
        text = "".join(f" w{i}" for i in call.payload["tokens"]) + "".join(words)
        return answer(200, {"prompt": text})

    return rule


def test_an_unstable_detokenizer_ends_with_bounded_calls(
    serve: Callable[..., tuple[str, Hostile]],
) -> None:
    """The length-fitting loop against text that re-tokenizes to a new length every time:
    it ends, in at most 32 calls per prompt, and the command either has prompts within a
    token of --input-len (the table counting those not exact) or says in one line that the
    tokenizer does not count consistently. Catches: prompts tens of tokens off target run
    as if they were --input-len."""
    url, server = serve(rule=_unstable(random.Random(3)))
    done = bench(url, "--input-len", "40")
    assert len(server.calls) <= 4 + 1 + 32 * 4, len(server.calls)
    if done.returncode == 0:
        assert "Traceback" not in done.stderr, done.stderr
        assert all(abs(n - 40) <= 1 for n in server.prompt_tokens), server.prompt_tokens
        off = sum(n != 40 for n in server.prompt_tokens)
        assert not off or f"tokenizer calls, {off} not exact)" in done.stdout, done.stdout
    else:
        assert done.returncode == 1, done.stderr
        line = one_line(done, "error:")
        assert "does not count consistently" in line, line
        assert server.prompt_tokens == []


def test_a_tokenizer_that_answers_one_token_for_any_text_is_bounded(
    serve: Callable[..., tuple[str, Hostile]],
) -> None:
    """One token whatever the text: the word stream never reaches its length. Catches: a
    stream that asked again for the missing tokens, recursively, one call each (thousands
    of calls of megabytes each, then RecursionError)."""

    def rule(call: Call) -> bytes | None:
        if call.path == "/tokenize":
            return answer(200, {"count": 1, "tokens": [10]})
        return answer(200, {"prompt": "the"})

    url, server = serve(rule=rule)
    started = time.monotonic()
    done = bench(url, "--input-len", "2000", timeout=40)
    assert done.returncode == 1, done.stderr
    line = one_line(done, "error:")
    assert "POST /tokenize" in line, line
    assert len(server.calls) <= 20, len(server.calls)
    assert time.monotonic() - started < 15


def test_a_tiny_vocabulary_still_gives_exact_prompts(
    serve: Callable[..., tuple[str, Hostile]],
) -> None:
    """One token per character (≈ 5 tokens a word): still exact, in a bounded number of
    calls. Catches: a sanity bound on tokens per word or per byte set too tight for a
    small vocabulary."""
    url, server = serve(tok=Chars())
    exact(bench(url, "--input-len", "300"), server, 300)
    assert len(server.calls) <= 6 + 2 * 4 * 3, server.calls  # ≤ 3 tries a prompt
    url, server = serve(tok=Chars())
    exact(bench(url, "--input-len", "4", "--endpoint", "completions"), server, 4)


@pytest.mark.parametrize(
    ("input_len", "max_len", "message"),
    [
        ("0", MAX_MODEL_LEN, "--input-len: must be a whole number ≥ 1"),
        ("1", MAX_MODEL_LEN, "counts 3 tokens of its own (chat template); give at least 4"),
        ("1000000000", MAX_MODEL_LEN, "more than the server's max_model_len (4096)"),
        ("1000000000", None, "--input-len 1000000000 is more than llmdeploy makes prompts of"),
    ],
)
def test_input_len_out_of_range_exits_2_in_one_line(
    serve: Callable[..., tuple[str, Hostile]], input_len: str, max_len: int | None, message: str
) -> None:
    """0, below the template, above the server's max_model_len (or, where the server does
    not say it, above a fixed ceiling): exit 2 before any load, in a few calls. Catches: a
    billion-token word stream generated in memory (no end, then MemoryError)."""
    url, server = serve(max_model_len=max_len)
    started = time.monotonic()
    done = bench(url, "--input-len", input_len, timeout=30)
    assert done.returncode == 2, done.stderr
    assert message in one_line(done, "error:")
    assert server.prompt_tokens == [] and len(server.calls) <= 4, server.calls
    assert time.monotonic() - started < 10


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM])
def test_a_signal_while_prompts_are_built_exits_128_plus_signum(
    serve: Callable[..., tuple[str, Hostile]], signum: signal.Signals
) -> None:
    """SIGINT/SIGTERM while a tokenizer call hangs: exit 130/143 within a few seconds, one
    line, no traceback, no load sent. Catches: the build ignoring cancellation, or the
    signal surfacing as a traceback."""
    url, server = serve(rule=_after(6, STALL))
    argv = [sys.executable, "-m", "llmdeploy", "bench", "--url", url, "--model", "m"]
    proc = subprocess.Popen(
        [*argv, "--no-stream", "--requests", "4", "--input-len", "40"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, stdin=subprocess.DEVNULL, text=True,
    )  # fmt: skip
    try:
        assert server.stalled.wait(30), "bench never reached the stalled tokenizer call"
        sent = time.monotonic()
        proc.send_signal(signum)
        _, stderr = proc.communicate(timeout=10)
        took = time.monotonic() - sent
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert proc.returncode == 128 + signum, stderr
    assert "Traceback" not in stderr, stderr
    assert stderr.strip().splitlines()[-1] == f"interrupted by {signum.name}: 0 requests measured"
    assert took < 3, took
    assert server.prompt_tokens == []
