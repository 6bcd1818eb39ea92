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
                if ready() or args.models_before_health:
                    self._send(200, {"object": "list", "data": [{"id": "fake", "object": "model"}]})
                else:
                    self._send(503)
            else:
                self._send(404)

        def do_POST(self) -> None:
            length = int(self.headers.get("Content-Length", 0))
            self.rfile.read(length)
            if self.path != "/v1/completions":
                self._send(404)
            elif args.reject_probe:
                self._send(400, {"error": {"message": "model 'x' does not exist"}})
            elif not ready():
                self._send(503)
            else:
                self._send(
                    200,
                    {
                        "choices": [{"text": "x", "index": 0, "finish_reason": "length"}],
                        "usage": {"prompt_tokens": 1, "completion_tokens": 1},
                    },
                )

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
