"""The suite's process guard (tests/conftest.py) can fail: an inner pytest run, with the
same conftest, on tests that leak a plain child, a setsid'd grandchild, double-forked
daemons (one with a cleared environment, one beyond pytest's ancestry), and a module
fixture that never stops its server. Each leak fails its test naming the processes,
and nothing is left afterwards. Also the fake engine's process faults themselves."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
import xml.etree.ElementTree as ET
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from conftest import TEST_RUN_VAR
from helpers import FAKE_ENGINE, pid_alive

INNER_TESTS = r'''
import ctypes
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

PIDS = Path(os.environ["GUARD_TEST_PIDS"])
FAKE_ENGINE = os.environ["GUARD_TEST_FAKE_ENGINE"]
SLEEP = "import time; time.sleep(600)"
HOLD = []  # Popen objects kept referenced: no "still running" warning from __del__


def record(name, pid):
    (PIDS / name).write_text(f"{pid}\n")


def engine_with(switch, name):
    """Run the fake engine with an escape switch, stop the engine properly: only the
    escaped descendant is left."""
    engine = subprocess.Popen(
        [sys.executable, FAKE_ENGINE, "--port", "0", "--say-run", switch,
         "--pid-file", str(PIDS / name)],
        stdout=subprocess.PIPE, text=True,
    )
    for line in engine.stdout:
        if "listening on" in line:  # the escapee is in place by now
            break
    engine.terminate()
    assert engine.wait(30) == 0
    engine.stdout.close()


def double_fork(argv, env=None):
    """A classic daemon: fork, setsid, fork; the middle processes exit at once."""
    code = (
        "import os, subprocess, sys\n"
        "if os.fork(): os._exit(0)\n"
        "os.setsid()\n"
        "if os.fork(): os._exit(0)\n"
        "os.execv(sys.argv[1], sys.argv[1:])\n"
    )
    subprocess.run([sys.executable, "-c", code, *argv], env=env, check=True)


def wait_pid_of(marker):
    """The pid of the process whose command line holds `marker`, once it has exec'd."""
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        for pid in filter(str.isdigit, os.listdir("/proc")):
            try:
                argv = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")[:-1]
            except OSError:
                continue
            if argv[1:] == [b"-c", SLEEP.encode(), marker.encode()]:  # not a forked middle
                return int(pid)
        time.sleep(0.01)
    raise AssertionError(f"{marker} never started")


def state(pid):
    return Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()[0]


def test_leaks_plain_child():
    proc = subprocess.Popen([sys.executable, "-c", SLEEP, "leak-plain-child"])
    HOLD.append(proc)
    record("plain", proc.pid)


def test_leaks_setsid_grandchild():
    engine_with("--escape-setsid", "setsid")


def test_leaks_double_forked_daemon():
    engine_with("--escape-double-fork", "double-fork")


def test_leaks_untagged_daemon():
    # a cleared environment carries no run tag: found as pytest's (adopted) descendant
    double_fork([sys.executable, "-c", SLEEP, "leak-untagged-daemon"], env={})
    record("untagged", wait_pid_of("leak-untagged-daemon"))


def test_leaks_daemon_beyond_ancestry():
    # without the subreaper the orphan goes to an outer reaper: found by its tag alone
    libc = ctypes.CDLL(None)
    assert libc.prctl(36, 0, 0, 0, 0) == 0
    try:
        double_fork([sys.executable, "-c", SLEEP, "leak-beyond-ancestry"])
        pid = wait_pid_of("leak-beyond-ancestry")
    finally:
        assert libc.prctl(36, 1, 0, 0, 0) == 0
    assert int(Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()[1]) != os.getpid()
    record("beyond", pid)


def test_clean_process_use_passes():
    proc = subprocess.run([sys.executable, "-c", "print('hi')"], capture_output=True)
    assert proc.returncode == 0


def test_a_zombie_does_not_count():
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    HOLD.append(proc)
    while state(proc.pid) != "Z":  # exited, never waited for
        time.sleep(0.01)


@pytest.fixture(scope="module")
def server():
    proc = subprocess.Popen([sys.executable, "-c", SLEEP, "module-server"])
    yield proc
    proc.terminate()
    proc.wait(30)


def test_module_fixture_process_is_not_a_leak_1(server):
    assert server.poll() is None


def test_module_fixture_process_is_not_a_leak_2(server):
    assert server.poll() is None
'''

SLOPPY_FIXTURE_TESTS = r"""
import os
import subprocess
import sys
from pathlib import Path

import pytest

PIDS = Path(os.environ["GUARD_TEST_PIDS"])


@pytest.fixture(scope="module")
def sloppy_server():
    proc = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)",
                             "sloppy-server"])
    (PIDS / "sloppy").write_text(f"{proc.pid}\n")
    yield proc  # and never stopped


def test_uses_sloppy_1(sloppy_server):
    assert sloppy_server.poll() is None


def test_uses_sloppy_2(sloppy_server):
    assert sloppy_server.poll() is None
"""


def _outcomes(junit: Path) -> dict[str, list[tuple[str, str]]]:
    """test name -> its problems: ("failure" | "error", message and text); [] if it passed."""
    return {
        case.attrib["name"]: [
            (c.tag, f"{c.attrib.get('message', '')}\n{c.text or ''}")
            for c in case
            if c.tag in ("failure", "error")
        ]
        for case in ET.parse(junit).getroot().iter("testcase")
    }


def test_guard_fails_each_leaking_test_and_kills_what_it_left(tmp_path: Path) -> None:
    work = tmp_path / "inner"
    pids = tmp_path / "pids"
    work.mkdir()
    pids.mkdir()
    shutil.copy(Path(__file__).parent / "conftest.py", work / "conftest.py")
    (work / "pytest.ini").write_text("[pytest]\n")
    (work / "test_leaks.py").write_text(INNER_TESTS)
    (work / "test_sloppy_fixture.py").write_text(SLOPPY_FIXTURE_TESTS)
    junit = tmp_path / "inner.xml"
    env = {
        **os.environ,
        "GUARD_TEST_PIDS": str(pids),
        "GUARD_TEST_FAKE_ENGINE": str(FAKE_ENGINE),
    }
    env.pop("PYTEST_ADDOPTS", None)
    inner = subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            "-p",
            "no:cacheprovider",
            f"--junitxml={junit}",
            "-q",
            str(work),
        ],
        cwd=work,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    output = inner.stdout + inner.stderr
    assert inner.returncode == 1, output
    outcomes = _outcomes(junit)

    def pid(name: str) -> int:
        path = pids / name
        assert path.exists(), f"no pid recorded for {name}:\n{output}"
        lines = path.read_text().split()
        assert len(lines) == 1, lines
        return int(lines[0])

    leaks = {
        "test_leaks_plain_child": (pid("plain"), "leak-plain-child"),
        "test_leaks_setsid_grandchild": (pid("setsid"), "escapee-setsid"),
        "test_leaks_double_forked_daemon": (pid("double-fork"), "escapee-dfork"),
        "test_leaks_untagged_daemon": (pid("untagged"), "leak-untagged-daemon"),
        "test_leaks_daemon_beyond_ancestry": (pid("beyond"), "leak-beyond-ancestry"),
        "test_uses_sloppy_2": (pid("sloppy"), "sloppy-server"),
    }
    for test, (leaked_pid, what) in leaks.items():
        problems = outcomes[test]
        # failed by the guard alone, in its teardown (the test body itself passed)
        assert [tag for tag, _ in problems] == ["error"], f"{test}: {problems}\n{output}"
        report = problems[0][1]
        assert "process guard:" in report and f"pid {leaked_pid} " in report, report
        assert what in report, report
    assert "module-scoped fixture 'sloppy_server'" in outcomes["test_uses_sloppy_2"][0][1]
    for test in (
        "test_uses_sloppy_1",  # the fixture's process may live until the fixture ends
        "test_clean_process_use_passes",
        "test_a_zombie_does_not_count",
        "test_module_fixture_process_is_not_a_leak_1",
        "test_module_fixture_process_is_not_a_leak_2",
    ):
        assert outcomes[test] == [], f"{test}: {outcomes[test]}"
    # one leak, one report: a leak is not blamed again on a later test
    assert "leak-plain-child" not in outcomes["test_leaks_setsid_grandchild"][0][1]
    # the guard killed every one of them (a zombie left for a reaper is dead too)
    for leaked_pid, what in leaks.values():
        assert not pid_alive(leaked_pid), f"{what} (pid {leaked_pid}) is still running"


class FakeEngine:
    """The fake engine run directly (no llmdeploy): its run id, URL and output."""

    def __init__(self, *switches: str) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, str(FAKE_ENGINE), "--port", "0", "--say-run", *switches],
            stdout=subprocess.PIPE,
            text=True,
        )
        assert self.proc.stdout is not None
        self.stdout = self.proc.stdout
        started = self.stdout.readline().split()
        assert started[:3] == ["fake", "engine", "run"] and started[4:] == ["started"], started
        self.run_id = started[3]
        self.lines: list[str] = []
        while not (line := self.stdout.readline()).startswith(f"fake engine run {self.run_id}"):
            assert line, f"the fake engine exited before listening: {self.lines}"
            self.lines.append(line.rstrip("\n"))
        self.url = "http://" + line.split()[-1]  # "… listening on HOST:PORT"

    def rest(self) -> list[str]:
        """Its remaining output, once it has exited."""
        self.lines += self.stdout.read().splitlines()
        return self.lines

    def stop(self) -> None:
        self.proc.kill()
        self.proc.wait()
        self.stdout.close()


@pytest.fixture
def fake_engine() -> Iterator[Callable[..., FakeEngine]]:
    started: list[FakeEngine] = []

    def start(*switches: str) -> FakeEngine:
        started.append(FakeEngine(*switches))
        return started[-1]

    yield start
    for engine in started:
        engine.stop()


def _health(url: str) -> int:
    try:
        with urllib.request.urlopen(url + "/health", timeout=10) as response:
            return int(response.status)
    except urllib.error.HTTPError as error:
        return error.code


def test_exit_after_ready_crashes_each_start_after_health_answered(
    fake_engine: Callable[..., FakeEngine],
) -> None:
    runs = []
    for _ in range(2):
        engine = fake_engine("--exit-after-ready", "0.5", "--crash-code", "7")
        runs.append(engine.run_id)
        deadline = time.monotonic() + 30
        while _health(engine.url) != 200:
            assert time.monotonic() < deadline, "health never answered 200"
        answered = time.monotonic()
        assert engine.proc.wait(timeout=60) == 7
        assert time.monotonic() - answered >= 0.5
        lines = engine.rest()
        assert all(line.endswith(f"[run {engine.run_id}]") for line in lines), lines
        assert "crashing after ready (exit 7)" in lines[-1]
    assert runs[0] != runs[1]  # each start names itself


def test_escapees_leave_session_and_ancestry_and_record_their_pids(
    fake_engine: Callable[..., FakeEngine], tmp_path: Path
) -> None:
    pid_file = tmp_path / "escaped.pids"
    engine = fake_engine("--escape-setsid", "--escape-double-fork", "--pid-file", str(pid_file))
    escaped = [int(line) for line in pid_file.read_text().split()]
    try:
        assert len(escaped) == 2  # both in place before the engine listens
        assert _health(engine.url) == 200
        engine_pid = engine.proc.pid
        setsid_child, daemon = escaped
        assert os.getsid(setsid_child) == setsid_child != os.getsid(engine_pid)
        assert _ppid(setsid_child) == engine_pid  # still the engine's child
        assert os.getsid(daemon) not in (os.getsid(engine_pid), setsid_child)
        assert _ppid(daemon) == os.getpid()  # adopted by pytest, the subreaper
        assert TEST_RUN_VAR.encode() in Path(f"/proc/{daemon}/environ").read_bytes()
        engine.proc.terminate()
        assert engine.proc.wait(30) == 0
        assert all(pid_alive(pid) for pid in escaped)  # they outlive the engine
    finally:
        for pid in escaped:
            os.kill(pid, signal.SIGKILL)
        for pid in escaped:
            deadline = time.monotonic() + 30
            while pid_alive(pid):
                assert time.monotonic() < deadline, f"escapee {pid} survived SIGKILL"
                time.sleep(0.01)


def _ppid(pid: int) -> int:
    return int(Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()[1])
