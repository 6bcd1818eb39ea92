"""A fake inference engine: a real HTTP server with switches for every fault the
supervisor must handle. Standard library only; run as a program.

It accepts (and ignores) any other flag, so it can stand in for `vllm serve …`.

Faults of process ownership: `--spawn-grandchildren` stays in the
engine's session; `--escape-setsid` and `--escape-double-fork` leave it, the way Ray's
daemons and classic Unix daemons do, and record their pids in `--pid-file`.
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
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--host", default="127.0.0.1", help="address to listen on")
    p.add_argument("--port", type=int, required=True, help="port to listen on (0: any free)")
    p.add_argument("--health-path", default="/health", help="the health endpoint's path")
    p.add_argument(
        "--ready-after", type=float, default=0.0, help="health answers 503 for this many seconds"
    )
    p.add_argument("--never-ready", action="store_true", help="health answers 503 forever")
    p.add_argument(
        "--exit-during-start",
        type=int,
        default=None,
        metavar="CODE",
        help="exit with CODE 0.3 s after start, before listening",
    )
    p.add_argument(
        "--exit-after-ready",
        type=float,
        default=None,
        metavar="SECONDS",
        help="crash (exit with --crash-code) SECONDS after health first answered 200 to "
        "someone; every start of the engine crashes again, so a restart policy sees a "
        "crash after each successful start",
    )
    p.add_argument(
        "--crash-code",
        type=int,
        default=9,
        metavar="CODE",
        help="the exit code of --exit-after-ready (default 9; must not be 0)",
    )
    p.add_argument(
        "--ignore-sigterm", action="store_true", help="SIGTERM is ignored; only SIGKILL stops it"
    )
    p.add_argument(
        "--escape-bare",
        action="store_true",
        help="like --escape-double-fork, with a cleared environment (no tag to find it by, "
        "as where setproctitle writes over the environment)",
    )
    p.add_argument(
        "--spawn-grandchildren",
        action="store_true",
        help="start two sleepers that stay in the engine's session: one in its process "
        "group, one in a process group of its own",
    )
    p.add_argument(
        "--escape-setsid",
        action="store_true",
        help="start a descendant that calls setsid() and keeps running (like Ray's "
        "daemons): it leaves the engine's session and process group but stays its child; "
        "its pid is appended to --pid-file before health can answer",
    )
    p.add_argument(
        "--escape-double-fork",
        action="store_true",
        help="start a daemon that double-forks away (fork, setsid, fork, the middle ones "
        "exit): it leaves the engine's session and ancestry, reparented to the nearest "
        "subreaper or init; its pid is appended to --pid-file before health can answer",
    )
    p.add_argument(
        "--hold-shm",
        default="",
        metavar="NAME",
        help="create /dev/shm/NAME and keep it mapped, like torch's and Ray's shared memory",
    )
    p.add_argument(
        "--pid-file",
        default="",
        metavar="FILE",
        help="escaped descendants append their own pid here, one per line",
    )
    p.add_argument(
        "--say-run",
        action="store_true",
        help="print 'fake engine run PID.NS started' first (PID.NS: this start's pid and "
        "start time in ns, unique per start), 'fake engine run PID.NS listening on "
        "HOST:PORT' once bound, and end every other line with '[run PID.NS]', so a test "
        "can tell which start a log line came from",
    )
    p.add_argument(
        "--models-before-health",
        action="store_true",
        help="/v1/models answers 200 before health does",
    )
    p.add_argument(
        "--reject-probe", action="store_true", help="every completion request answers 400"
    )
    p.add_argument(
        "--record-ready",
        default=None,
        metavar="FILE",
        help="write the wall-clock moment health starts answering 200 (start + --ready-after)",
    )
    p.add_argument(
        "--say", action="append", default=[], metavar="LINE", help="print LINE at start; repeatable"
    )
    p.add_argument(
        "--answer-delay", type=float, default=0.0, metavar="S", help="before each chat answer"
    )
    p.add_argument("--served-model-name", default="fake", help="the model id it answers as")
    p.add_argument(
        "--max-model-len", type=int, default=None, help="reported in /v1/models when given"
    )
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


def escapee(mode: str, pid_file: str, sync_fd: str) -> int:
    """An escaped descendant (`fake_engine.py escapee MODE PID_FILE SYNC_FD`).

    It leaves the engine's session (setsid) — with "double-fork" also its ancestry: the
    middle processes exit, so it is reparented to the nearest subreaper (or init) — then
    appends its own pid to PID_FILE and closes SYNC_FD, telling the engine it is in place,
    and runs until killed. Its stdio is /dev/null, as a daemon's is: it never holds the
    engine's log open.
    """
    if mode in ("double-fork", "bare"):
        if os.fork():
            os._exit(0)  # a fork's parent half leaves with _exit: no atexit, no flushes
        os.setsid()
        if os.fork():
            os._exit(0)
    else:
        os.setsid()
    _set_name({"double-fork": "escapee-dfork", "bare": "escapee-bare"}.get(mode, "escapee-setsid"))
    if pid_file:
        with open(pid_file, "a") as f:
            f.write(f"{os.getpid()}\n")
    os.close(int(sync_fd))
    while True:
        signal.pause()


def _set_name(name: str) -> None:
    """Name this process (what `ps -o comm` and /proc/PID/stat show), so a report of
    leaked processes says what each one is."""
    import ctypes

    libc = ctypes.CDLL(None)
    libc.prctl(15, name.encode()[:15], 0, 0, 0)  # PR_SET_NAME


def escape(mode: str, pid_file: str) -> None:
    """Start an escaped descendant (see `escapee`); return once it is in place."""
    read_end, write_end = os.pipe()
    child = subprocess.Popen(
        [sys.executable, __file__, "escapee", mode, pid_file, str(write_end)],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        pass_fds=(write_end,),
        env={} if mode == "bare" else None,
    )
    os.close(write_end)
    # EOF once every holder closed it: the escapee has written its pid (or died)
    os.read(read_end, 1)
    os.close(read_end)
    if mode in ("double-fork", "bare"):
        child.wait()  # the first fork's parent exits at once; don't leave it a zombie


def main() -> int:
    args = parse()
    if args.crash_code == 0:
        raise SystemExit("fake engine: --crash-code must not be 0")
    run_id = f"{os.getpid()}.{time.time_ns()}"
    suffix = f" [run {run_id}]" if args.say_run else ""

    def say(line: str) -> None:
        print(line + suffix, flush=True)

    if args.say_run:
        print(f"fake engine run {run_id} started", flush=True)
    for line in args.say:
        say(line)
    say(
        f"fake engine pid {os.getpid()} CUDA_VISIBLE_DEVICES="
        f"{os.environ.get('CUDA_VISIBLE_DEVICES', '')} argv={sys.argv[1:]}"
    )
    if args.hold_shm:
        import mmap

        with open(f"/dev/shm/{args.hold_shm}", "w+b") as shm:
            shm.truncate(4096)
            held = mmap.mmap(shm.fileno(), 4096)  # mapped after the file is closed
        held[:5] = b"hello"
    if args.ignore_sigterm:
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
    if args.spawn_grandchildren:
        # one in our process group, one that moved to a group of its own (same session)
        subprocess.Popen(SLEEPER)
        subprocess.Popen(SLEEPER, process_group=0)
    if args.escape_setsid:
        escape("setsid", args.pid_file)
    if args.escape_double_fork:
        escape("double-fork", args.pid_file)
    if args.escape_bare:
        escape("bare", args.pid_file)
    if args.exit_during_start is not None:
        time.sleep(0.3)
        say("fake engine: giving up during start")
        return int(args.exit_during_start)
    started = time.monotonic()
    if args.record_ready:
        # The moment health *can* answer 200, whether or not anyone asks yet: a poller's
        # lateness is measured from here.
        with open(args.record_ready, "w") as f:
            f.write(repr(time.time() + args.ready_after))

    def ready() -> bool:
        return not args.never_ready and time.monotonic() - started >= args.ready_after

    answered_ready = threading.Event()  # health has answered 200 at least once

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, format: str, *a: object) -> None:
            say(f"fake engine: {self.command} {self.path}")

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
                    answered_ready.set()
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
    crashed = threading.Event()
    if args.exit_after_ready is not None:

        def later() -> None:
            answered_ready.wait()
            time.sleep(args.exit_after_ready)
            say(f"fake engine: crashing after ready (exit {args.crash_code})")
            crashed.set()
            server.shutdown()  # serve_forever returns; main exits with the crash code

        threading.Thread(target=later, daemon=True).start()
    signal.signal(signal.SIGINT, lambda *_: sys.exit(0))
    if not args.ignore_sigterm:
        signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    if args.say_run:  # the real port (--port 0 lets the kernel choose); handlers are set
        print(f"fake engine run {run_id} listening on {args.host}:{server.server_port}", flush=True)
    try:
        server.serve_forever(poll_interval=0.05)
    except SystemExit:
        pass
    return args.crash_code if crashed.is_set() else 0


if __name__ == "__main__":
    if sys.argv[1:2] == ["escapee"]:
        raise SystemExit(escapee(*sys.argv[2:]))
    raise SystemExit(main())
