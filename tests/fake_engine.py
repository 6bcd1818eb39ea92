"""A fake inference engine: a real HTTP server with switches for every fault the
supervisor must handle. Standard library only; run as a program.

It accepts (and ignores) any other flag, so it can stand in for `vllm serve …`.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

SLEEPER = [sys.executable, "-c", "import time; time.sleep(600)"]
WORDS = [
    "one",
    "two",
    "three",
    "four",
    "five",
    "six",
    "seven",
    "eight",
    "nine",
    "ten",
    "eleven",
    "twelve",
] * 30


def _usage(n: int) -> dict[str, int]:
    return {"prompt_tokens": 5, "completion_tokens": n, "total_tokens": 5 + n}


def parse() -> argparse.Namespace:
    p = argparse.ArgumentParser()
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--health-path", default="/health")
    p.add_argument("--ready-after", type=float, default=0.0)
    p.add_argument("--never-ready", action="store_true")
    p.add_argument("--exit-during-start", type=int, default=None, metavar="CODE")
    p.add_argument("--exit-after-ready", type=float, default=None, metavar="SECONDS")
    p.add_argument("--ignore-sigterm", action="store_true")
    p.add_argument("--spawn-grandchildren", action="store_true")
    p.add_argument("--models-before-health", action="store_true")
    p.add_argument("--reject-probe", action="store_true")
    p.add_argument(
        "--record-ready",
        default=None,
        metavar="FILE",
        help="write the wall-clock moment health starts answering 200 (start + --ready-after)",
    )
    p.add_argument("--say", action="append", default=[], help="print this line at start")
    p.add_argument(
        "--answer-delay", type=float, default=0.0, metavar="S", help="before each chat answer"
    )
    p.add_argument("--served-model-name", default="fake")
    p.add_argument("--max-model-len", type=int, default=None)
    p.add_argument("--api-key", default=os.environ.get("VLLM_API_KEY"), help="require this key")
    p.add_argument(
        "--reasoning-field",
        default="reasoning",
        choices=["reasoning", "reasoning_content", "none"],
        help="where thinking text goes; none = left inside content as <think>…</think>",
    )
    p.add_argument(
        "--wrong-parser",
        action="store_true",
        help="behave like Qwen3 behind a parser that assumes the model always thinks: "
        "with thinking off the answer lands in the reasoning field, content is null",
    )
    args, _unknown = p.parse_known_args()
    return args


def main() -> int:
    args = parse()
    for line in args.say:
        print(line, flush=True)
    print(
        f"fake engine pid {os.getpid()} CUDA_VISIBLE_DEVICES="
        f"{os.environ.get('CUDA_VISIBLE_DEVICES', '')} argv={sys.argv[1:]}",
        flush=True,
    )
    if args.ignore_sigterm:
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
    if args.spawn_grandchildren:
        # one in our process group, one that moved to a group of its own (same session)
        subprocess.Popen(SLEEPER)
        subprocess.Popen(SLEEPER, process_group=0)
    if args.exit_during_start is not None:
        time.sleep(0.3)
        print("fake engine: giving up during start", flush=True)
        return args.exit_during_start
    started = time.monotonic()
    if args.record_ready:
        # The moment health *can* answer 200, whether or not anyone asks yet: a poller's
        # lateness is measured from here.
        with open(args.record_ready, "w") as f:
            f.write(repr(time.time() + args.ready_after))

    def ready() -> bool:
        return not args.never_ready and time.monotonic() - started >= args.ready_after

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, format: str, *a: object) -> None:
            print(f"fake engine: {self.command} {self.path}", flush=True)

        def _send(self, code: int, body: dict[str, object] | None = None) -> None:
            data = json.dumps(body or {}).encode()
            self.send_response(code)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def do_GET(self) -> None:
            if self.path == args.health_path:
                if ready():
                    self._send(200)
                else:
                    self._send(503, {"error": "loading"})
            elif self.path == "/v1/models":
                if not self._authorized():
                    return
                if ready() or args.models_before_health:
                    model = {"id": args.served_model_name, "object": "model"}
                    if args.max_model_len:
                        model["max_model_len"] = args.max_model_len
                    self._send(200, {"object": "list", "data": [model]})
                else:
                    self._send(503)
            else:
                self._send(404)

        def _authorized(self) -> bool:
            if args.api_key and self.headers.get("Authorization") != f"Bearer {args.api_key}":
                self._send(401, {"error": {"message": "unauthorized"}})
                return False
            return True

        def do_POST(self) -> None:
            length = int(self.headers.get("Content-Length", 0))
            body = json.loads(self.rfile.read(length) or b"{}")
            if not self._authorized():
                return
            if args.answer_delay and self.path == "/v1/chat/completions":
                time.sleep(args.answer_delay)  # slow answers stay in flight: interruptible
            if self.path not in ("/v1/completions", "/v1/chat/completions"):
                self._send(404)
            elif args.reject_probe:
                self._send(400, {"error": {"message": "model 'x' does not exist"}})
            elif not ready():
                self._send(503)
            elif self.path == "/v1/completions":
                n = min(int(body.get("max_tokens", 16)), len(WORDS))
                choice = {"text": " ".join(WORDS[:n]), "index": 0, "finish_reason": "length"}
                self._send(200, {"choices": [choice], "usage": _usage(n)})
            else:
                self._chat(body)

        def _chat(self, body: dict[str, object]) -> None:
            n = min(int(str(body.get("max_tokens", 16))), len(WORDS))
            kwargs = body.get("chat_template_kwargs")
            thinking = (
                bool(kwargs.get("enable_thinking", True)) if isinstance(kwargs, dict) else True
            )
            text = " ".join(WORDS[:n])
            if isinstance(body.get("response_format"), dict):
                text = '{"answer": 5, "ok": true}'
            content: str | None = text
            reasoning: str | None = None
            if thinking or args.wrong_parser:
                content, reasoning = None, text
            if args.reasoning_field == "none" and reasoning is not None:
                content, reasoning = f"<think>{reasoning}</think>", None
            field = args.reasoning_field if args.reasoning_field != "none" else "reasoning"
            if body.get("stream"):
                self._stream(content, reasoning, field, n, body)
                return
            message = {"role": "assistant", "content": content, field: reasoning}
            choice = {"index": 0, "message": message, "finish_reason": "length"}
            self._send(
                200,
                {
                    "id": "c",
                    "object": "chat.completion",
                    "created": 0,
                    "model": args.served_model_name,
                    "choices": [choice],
                    "usage": _usage(n),
                },
            )

        def _stream(
            self,
            content: str | None,
            reasoning: str | None,
            field: str,
            n: int,
            body: dict[str, object],
        ) -> None:
            self.send_response(200)
            self.send_header("Content-Type", "text/event-stream")
            self.end_headers()

            def event(choices: list[object], usage: object = None) -> None:
                chunk: dict[str, object] = {
                    "id": "c",
                    "object": "chat.completion.chunk",
                    "created": 0,
                    "model": args.served_model_name,
                    "choices": choices,
                }
                if usage is not None:
                    chunk["usage"] = usage
                self.wfile.write(f"data: {json.dumps(chunk)}\n\n".encode())
                self.wfile.flush()

            key, text = ("content", content) if content is not None else (field, reasoning)
            for i, word in enumerate((text or "").split(" ")):
                piece = word if i == 0 else " " + word
                event([{"index": 0, "delta": {key: piece}, "finish_reason": None}])
            event([{"index": 0, "delta": {}, "finish_reason": "length"}])
            options = body.get("stream_options")
            if isinstance(options, dict) and options.get("include_usage"):
                event([], _usage(n))
            self.wfile.write(b"data: [DONE]\n\n")

    server = ThreadingHTTPServer((args.host, args.port), Handler)
    if args.exit_after_ready is not None:

        def later() -> None:
            while not ready():
                time.sleep(0.05)
            time.sleep(args.exit_after_ready)
            print("fake engine: crashing after ready", flush=True)
            os._exit(9)

        threading.Thread(target=later, daemon=True).start()
    signal.signal(signal.SIGINT, lambda *_: sys.exit(0))
    if not args.ignore_sigterm:
        signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    try:
        server.serve_forever(poll_interval=0.05)
    except SystemExit:
        pass
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
