"""SIGINT, SIGTERM and SIGHUP to the real `llmdeploy smoke` and `llmdeploy bench` (sweeps
and open loops included) at several points, against tests/instant_server.py slowed
down: exit 128+signum within a few seconds, one line saying so, what was measured kept,
no request started after the signal (counted on the server's side), no process left.
(The ≤ 1 s figure is measured by benchmarks/interrupt_latency.py, not asserted here.)
The helpers are shared with test_interrupt_generate.py."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from helpers import fake_stats, session_members

Start = Callable[..., str]
BOUND = 5.0  # s from signal to exit: generous, for a loaded 2-core machine


def settled_requests(url: str) -> int:
    """The server's request count once nothing more arrives (what was sent has landed)."""
    count = fake_stats(url)["requests"]
    while True:
        time.sleep(0.2)
        now = fake_stats(url)["requests"]
        if now == count:
            return count
        count = now


def wait_until(condition: Callable[[], bool], timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "condition never met"
        time.sleep(0.01)


class Cli:
    """`llmdeploy ARGS…` as a user's job: its own session (so that what it leaves behind
    can be found), output in files (a full pipe must not be what stops it)."""

    def __init__(
        self, tmp: Path, *args: str, env: dict[str, str] | None = None, ignore: int | None = None
    ) -> None:
        self.out, self.err = tmp / "stdout.txt", tmp / "stderr.txt"

        def ignoring() -> None:
            # In the child, before exec: each signal at its default, as from a terminal,
            # even if this test run was started with one ignored — except `ignore`, as
            # `nohup` sets SIGHUP.
            for signum in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
                signal.signal(signum, signal.SIG_IGN if signum == ignore else signal.SIG_DFL)

        with open(self.out, "w") as out, open(self.err, "w") as err:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "llmdeploy", *args],
                env=env, stdin=subprocess.DEVNULL, stdout=out, stderr=err,
                start_new_session=True, preexec_fn=ignoring,
            )  # fmt: skip

    def interrupt(self, signum: int, bound: float = BOUND) -> float:
        """Send `signum`; seconds until the process exited (it is killed past `bound`)."""
        start = time.monotonic()
        self.proc.send_signal(signum)
        try:
            self.proc.wait(bound)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            raise AssertionError(f"still running {bound} s after {signum!r}") from None
        return time.monotonic() - start

    def ended_by(self, signum: signal.Signals, took: float) -> str:
        """Assert a clean interrupted exit; return stderr."""
        stderr = self.err.read_text()
        assert self.proc.returncode == 128 + signum, (self.proc.returncode, stderr)
        assert took < BOUND
        lines = [x for x in stderr.splitlines() if "interrupted" in x]
        assert len(lines) == 1 and lines[0].startswith(f"interrupted by {signum.name}"), stderr
        assert "Traceback" not in stderr
        assert session_members(self.proc.pid) == []  # nothing it started is left
        return stderr


def shell_status(returncode: int) -> int:
    """The exit status a shell shows: 128+N for a process killed by signal N too."""
    return 128 - returncode if returncode < 0 else returncode


# -- bench -----------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("signum", "after"),
    [(signal.SIGINT, 3), (signal.SIGTERM, 31), (signal.SIGHUP, 45)],
    ids=["SIGINT-level1", "SIGTERM-level2-start", "SIGHUP-level2"],
)
def test_bench_sweep_interrupted_keeps_what_it_measured(
    instant: Start, tmp_path: Path, signum: signal.Signals, after: int
) -> None:
    url = instant("--ttft-ms", "20", "--itl-ms", "2")  # ≈ 35 ms a request
    report = tmp_path / "sweep.json"
    args = ("--concurrency", "1,2,4", "--requests", "30", "--output-len", "8")
    bench = Cli(tmp_path, "bench", "--url", url, "--model", "m", *args, "--json", str(report))
    wait_until(lambda: fake_stats(url)["requests"] >= after)
    stderr = bench.ended_by(signum, bench.interrupt(signum))
    doc = json.loads(report.read_text())
    assert doc["interrupted"] is True and doc["passed"] is False
    runs = doc["runs"]
    done = [r for r in runs if r["complete"]]
    assert [r["concurrency"] for r in done] == [1, 2, 4][: len(done)] and len(done) < 3
    assert all(len(r["requests"]) == 30 for r in done)
    assert runs[len(done) :] == [r for r in runs if not r["complete"]]  # the cut one last
    measured = sum(len(r["requests"]) for r in runs)
    assert f"{measured} requests measured; results so far in {report}" in stderr
    # Only requests in flight at the signal (≤ the level's concurrency) went unrecorded.
    in_flight = [1, 2, 4][len(done)]
    assert measured <= settled_requests(url) <= measured + in_flight


def test_bench_open_loop_is_interrupted_between_arrivals(instant: Start, tmp_path: Path) -> None:
    url = instant()
    bench = Cli(tmp_path, "bench", "--url", url, "--model", "m", "--rate", "2", "--duration",
                "600", "--output-len", "4")  # fmt: skip
    wait_until(lambda: fake_stats(url)["requests"] >= 2)  # now sleeping until the next arrival
    bench.ended_by(signal.SIGTERM, bench.interrupt(signal.SIGTERM))
    assert settled_requests(url) <= 3


def test_a_signal_ignored_by_the_parent_stays_ignored(instant: Start, tmp_path: Path) -> None:
    """`nohup llmdeploy bench …`: the hangup it was started to survive does not stop it."""
    url = instant("--ttft-ms", "20")
    bench = Cli(tmp_path, "bench", "--url", url, "--model", "m", "--requests", "100000",
                ignore=signal.SIGHUP)  # fmt: skip
    wait_until(lambda: fake_stats(url)["requests"] >= 2)
    bench.proc.send_signal(signal.SIGHUP)
    seen = fake_stats(url)["requests"]
    wait_until(lambda: fake_stats(url)["requests"] >= seen + 5)  # still sending
    assert bench.proc.poll() is None
    bench.ended_by(signal.SIGINT, bench.interrupt(signal.SIGINT))


# -- smoke -----------------------------------------------------------------------------------
@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGHUP])
def test_smoke_interrupted_mid_check_starts_no_other(
    instant: Start, tmp_path: Path, signum: signal.Signals
) -> None:
    url = instant("--ttft-ms", "3000")  # every check waits 3 s for its answer
    smoke = Cli(tmp_path, "smoke", "--url", url, "--model", "m")
    wait_until(lambda: fake_stats(url)["requests"] >= 1)  # `completion` is waiting
    stderr = smoke.ended_by(signum, smoke.interrupt(signum))
    from llmdeploy.smoke import checks

    total = len(checks.select([], []))
    assert f"interrupted by {signum.name}: 1 of {total} checks done" in stderr  # `models` done
    assert settled_requests(url) == 1
    assert smoke.out.read_text() == ""  # no report for checks cut short


@pytest.mark.parametrize("delay", [0.2, 0.5, 0.8, 1.2, 1.8])
def test_smoke_interrupted_at_any_moment_of_its_start(
    instant: Start, tmp_path: Path, delay: float
) -> None:
    """Wherever it is — Python starting, the CLI importing the OpenAI client, the first
    request — SIGTERM ends it with status 143. (Before the command installed its handlers
    the default action does that: the shell shows 143 either way.)"""
    url = instant("--ttft-ms", "3000")
    smoke = Cli(tmp_path, "smoke", "--url", url, "--model", "m")
    time.sleep(delay)  # the moment under test, not a wait for a condition
    took = smoke.interrupt(signal.SIGTERM)
    assert shell_status(smoke.proc.returncode) == 143 and took < BOUND
    assert "Traceback" not in smoke.err.read_text()
    assert session_members(smoke.proc.pid) == []
    assert settled_requests(url) <= 1
