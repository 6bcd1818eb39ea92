"""Input built to break parsers and readers: JSON nested past Python's recursion limit
(from a server, from a prompts file, in a state file) and state files that are not files
(a FIFO, a device, a symlink). Each must end as a one-line error or be ignored — never a
traceback, never a hang, never a running deployment disturbed."""

from __future__ import annotations

import http.server
import os
import signal
import threading
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import cli
from helpers import fake_profile, pid_alive, record

NESTED = b"[" * 100_000  # json.loads raises RecursionError, not ValueError, on this


class _Nested(http.server.BaseHTTPRequestHandler):
    """Answers every request 200 with a JSON body nested too deep to parse."""

    def _answer(self) -> None:
        self.rfile.read(int(self.headers.get("Content-Length") or 0))
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(NESTED)))
        self.end_headers()
        self.wfile.write(NESTED)

    do_GET = do_POST = _answer

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def nested_server() -> Iterator[str]:
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Nested)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


def _one_line_failure(done: object, code: int | None = None) -> None:
    assert hasattr(done, "returncode") and hasattr(done, "stderr")
    assert done.returncode != 0, done.stderr
    assert code is None or done.returncode == code, done.stderr
    assert "Traceback" not in done.stderr and "RecursionError" not in done.stderr, done.stderr
    errors = [line for line in done.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1, done.stderr


@pytest.mark.parametrize("command", ["bench", "smoke"])
def test_a_server_answering_nested_json_is_a_failure_not_a_traceback(
    nested_server: str, isolated_env: dict[str, str], command: str
) -> None:
    extra = ["--requests", "2", "--output-len", "2"] if command == "bench" else []
    done = cli(command, "--url", nested_server, "--model", "m", *extra, env=isolated_env)
    _one_line_failure(done)


def test_a_prompts_file_nested_too_deep_names_file_and_line(
    nested_server: str, isolated_env: dict[str, str], tmp_path: Path
) -> None:
    prompts = tmp_path / "prompts.jsonl"
    prompts.write_bytes(b'{"prompt": "fine"}\n' + NESTED + b"\n")
    done = cli("bench", "--url", nested_server, "--model", "m", "--prompts", str(prompts),
               "--requests", "2", env=isolated_env)  # fmt: skip
    _one_line_failure(done)
    assert f"{prompts}:2" in done.stderr and "nested too deeply" in done.stderr, done.stderr


def _plant(path: Path, kind: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.unlink(missing_ok=True)
    if kind == "fifo":
        os.mkfifo(path)
    elif kind == "device":
        path.symlink_to("/dev/zero")
    else:
        path.write_bytes(NESTED)


@pytest.mark.parametrize("kind", ["fifo", "device", "nested"])
def test_a_record_that_is_no_file_is_listed_corrupt_and_removable(
    isolated_env: dict[str, str], kind: str
) -> None:
    state = Path(isolated_env["LLMDEPLOY_STATE_DIR"])
    _plant(state / "deployments" / "odd.json", kind)
    status = cli("status", env=isolated_env, timeout=30)  # a FIFO opened plainly blocks
    assert status.returncode == 0 and "Traceback" not in status.stderr, status.stderr
    assert "odd" in status.stdout and "corrupt" in status.stdout, status.stdout
    down = cli("down", "odd", env=isolated_env, timeout=30)
    assert down.returncode == 0 and "Traceback" not in down.stderr, down.stderr
    assert not (state / "deployments" / "odd.json").exists()


def test_planted_requests_neither_disturb_nor_block_a_deployment(
    tmp_path: Path, isolated_env: dict[str, str]
) -> None:
    """A FIFO where `down` leaves its stop request: a supervisor that opened it plainly on
    SIGTERM would block there for good, its engine running. Nested JSON where `scale`
    leaves its request. The deployment keeps serving, and a SIGTERM still ends all of it."""
    profile = fake_profile(tmp_path, "calm")
    up = cli("up", str(profile), "--detach", env=isolated_env)
    assert up.returncode == 0, up.stderr
    try:
        requests = Path(isolated_env["LLMDEPLOY_STATE_DIR"]) / "requests"
        _plant(requests / "calm.json", "fifo")
        _plant(requests / "calm@scale.json", "nested")
        rec = record(isolated_env, "calm")
        assert rec is not None
        supervisor, engine = int(str(rec["supervisor_pid"])), int(str(rec["engine_pid"]))
        with urllib.request.urlopen(f"{rec['base_url']}/v1/models", timeout=10) as answer:
            assert answer.status == 200
        os.kill(supervisor, signal.SIGTERM)
        deadline = time.monotonic() + 45
        while (pid_alive(supervisor) or pid_alive(engine)) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert not pid_alive(supervisor), "the supervisor hung on the planted stop request"
        assert not pid_alive(engine)
        assert record(isolated_env, "calm") is None
    finally:
        if record(isolated_env, "calm") is not None:  # the test failed: leave nothing
            cli("down", "calm", env=isolated_env, timeout=60)


def test_directories_where_requests_go_do_not_fail_down(
    tmp_path: Path, isolated_env: dict[str, str]
) -> None:
    """`down` cannot leave its stop request nor remove either request: the deployment
    still stops (with the grace it started with) and `down` succeeds — a request left
    behind is never obeyed (it must name the run)."""
    profile = fake_profile(tmp_path, "dirs")
    assert cli("up", str(profile), "--detach", env=isolated_env).returncode == 0
    rec = record(isolated_env, "dirs")
    assert rec is not None
    requests = Path(isolated_env["LLMDEPLOY_STATE_DIR"]) / "requests"
    for planted in (requests / "dirs.json", requests / "dirs@scale.json"):
        planted.mkdir(parents=True)
        (planted / "keep").write_text("x")  # not empty: no rmdir takes it either
    down = cli("down", "dirs", env=isolated_env, timeout=60)
    assert down.returncode == 0 and "Traceback" not in down.stderr, down.stderr
    assert record(isolated_env, "dirs") is None
    assert not pid_alive(int(str(rec["engine_pid"])))
    assert not pid_alive(int(str(rec["supervisor_pid"])))


@pytest.mark.parametrize("detach", [True, False])
def test_a_fifo_where_the_log_goes_is_a_one_line_error_not_a_hang(
    tmp_path: Path, isolated_env: dict[str, str], detach: bool
) -> None:
    logs = Path(isolated_env["LLMDEPLOY_STATE_DIR"]) / "logs"
    logs.mkdir(parents=True)
    os.mkfifo(logs / "piped.log")  # a plain open() to append or follow blocks forever
    profile = fake_profile(tmp_path, "piped")
    up = cli("up", str(profile), *(["--detach"] if detach else []), env=isolated_env, timeout=60)
    _one_line_failure(up, code=3)
    assert "piped.log: not a regular file" in up.stderr, up.stderr
    assert record(isolated_env, "piped") is None
    status = cli("status", env=isolated_env, timeout=30)
    assert status.stdout.strip() == "no deployments", status.stdout + status.stderr
