from __future__ import annotations

import ctypes
import dataclasses
import functools
import gc
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Generator, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PROFILES = ROOT / "src" / "llmdeploy" / "profiles"


def cli(
    *args: str, env: dict[str, str] | None = None, timeout: float = 60, cwd: Path | None = None
) -> subprocess.CompletedProcess[str]:
    """Run the real CLI in a fresh interpreter, as a user would."""
    return subprocess.run(
        [sys.executable, "-m", "llmdeploy", *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=timeout,
        cwd=cwd,
        stdin=subprocess.DEVNULL,
    )


@pytest.fixture
def isolated_env(tmp_path: Path) -> Iterator[dict[str, str]]:
    """An environment whose state and cache directories are private to the test."""
    env = dict(os.environ)
    env["LLMDEPLOY_STATE_DIR"] = str(tmp_path / "state")
    env["LLMDEPLOY_CACHE"] = str(tmp_path / "cache")
    env["HOME"] = str(tmp_path / "home")
    env.pop("PORT", None)
    yield env


def engine_python(kind: str) -> Path | None:
    """The python of an engine's own environment (`make vllm-env` / `make sglang-env`).

    Missing: the test is skipped — unless LLMDEPLOY_REQUIRE_ENGINES=1 (set by `make test`),
    where a missing engine environment is a failure, so CI cannot silently test less.
    """
    venv = Path(os.environ.get(f"LLMDEPLOY_{kind.upper()}_VENV", ROOT / f".venv-{kind}"))
    python = venv / "bin" / "python"
    if (venv / ".ready").exists() and python.exists():
        return python
    if os.environ.get("LLMDEPLOY_REQUIRE_ENGINES") == "1":
        pytest.fail(f"{venv} is missing: run `make {kind}-env`")
    pytest.skip(f"{venv} not built (make {kind}-env)")
    return None


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The tiny random-weight Qwen3 (scripts/build_tiny_qwen3.py), built once per session
    in the vLLM env, for every test that serves it (vLLM, transformers serve)."""
    python = engine_python("vllm")
    out = tmp_path_factory.mktemp("models") / "tiny-qwen3"
    subprocess.run(
        [str(python), str(ROOT / "scripts" / "build_tiny_qwen3.py"), str(out)],
        check=True,
        timeout=600,
        capture_output=True,
    )
    return out


INSTANT = Path(__file__).parent / "instant_server.py"


@pytest.fixture
def instant() -> Iterator[Callable[..., str]]:
    """Start tests/instant_server.py with the given switches; returns its base URL."""
    procs: list[subprocess.Popen[str]] = []

    def start(*switches: str) -> str:
        proc = subprocess.Popen(
            [sys.executable, str(INSTANT), "--port", "0", *switches],
            stdout=subprocess.PIPE,
            text=True,
        )
        procs.append(proc)
        assert proc.stdout is not None
        line = proc.stdout.readline()
        assert line.startswith("listening on"), line
        return "http://" + line.split()[-1]

    yield start
    for proc in procs:
        proc.terminate()
        proc.wait(10)
        if proc.stdout is not None:
            proc.stdout.close()


# ---------------------------------------------------------------------------------------------
# The process guard: a test that leaves a process behind fails, and the process is killed.
#
# Which processes are ours? Found two ways, because each alone can be escaped:
# - Tag. At session start LLMDEPLOY_TEST_RUN gets this run's uuid (appended to an outer
#   run's, so a pytest run inside a test is still counted by the outer one). Every process
#   the tests start inherits it, and /proc/PID/environ keeps it through setsid(), a double
#   fork and reparenting to init — unless the process was started with a cleared
#   environment, hence:
# - Ancestry. pytest becomes a child subreaper (prctl(PR_SET_CHILD_SUBREAPER), as tini and
#   systemd use it): an orphan anywhere below pytest is reparented to pytest, not to init,
#   so it stays a descendant even after setsid() + double fork.
# Process groups and sessions would be exactly what setsid() escapes; a cgroup would be
# stronger but needs root or delegation, which a developer's `pytest` cannot count on.
# A process is named by (pid, start time from /proc/PID/stat), so a reused pid is never
# blamed or signalled. Zombies are dead and do not count.
#
# Whose are they? A test owns what appeared between the start of its setup and the end of
# its teardown (its function-scoped fixtures included). What appears while a broader
# fixture (module, session, ...) is being set up, and what its processes start later, is
# that fixture's: it may live until the fixture is finalized and is checked then (reported
# in the teardown of the test during which that happens).
#
# Killing: SIGSTOP first, so a survivor cannot fork while we look, then SIGKILL everything
# frozen, then wait until each is gone. Zombie children (adopted orphans included) are
# reaped only at test boundaries, never while a test runs: waitpid() on a child a test's
# Popen still waits for would steal its exit status. At a boundary a child some Popen
# holds is reaped through that Popen (poll()), so its owner still sees the status.
# ---------------------------------------------------------------------------------------------

TEST_RUN_VAR = "LLMDEPLOY_TEST_RUN"
_PR_SET_CHILD_SUBREAPER = 36


@dataclass(frozen=True)
class _Proc:
    """One process; equal (and hashed) by pid and start time only."""

    pid: int
    start: int  # clock ticks after boot (/proc/PID/stat field 22)
    ppid: int = dataclasses.field(compare=False)
    state: str = dataclasses.field(compare=False)
    name: str = dataclasses.field(compare=False)


def _stat(pid: int) -> _Proc | None:
    try:
        with open(f"/proc/{pid}/stat", "rb") as handle:
            raw = handle.read().decode(errors="replace")
    except OSError:
        return None
    head, _, tail = raw.rpartition(")")  # comm may hold spaces and parentheses
    fields = tail.split()
    try:
        return _Proc(pid, int(fields[19]), int(fields[1]), fields[0], head.partition("(")[2])
    except (IndexError, ValueError):
        return None


def _process_table() -> dict[int, _Proc]:
    table = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit() and (proc := _stat(int(entry))) is not None:
            table[proc.pid] = proc
    return table


def _read(path: str) -> bytes:
    try:
        with open(path, "rb") as handle:
            return handle.read()
    except OSError:
        return b""


def _alive(proc: _Proc) -> bool:
    now = _stat(proc.pid)
    return now is not None and now.start == proc.start and now.state not in "ZX"


def _signal(proc: _Proc, signum: int) -> None:
    if _alive(proc):  # the same process, not one that reused its pid
        try:
            os.kill(proc.pid, signum)
        except (ProcessLookupError, PermissionError):
            pass


def _wait_for(condition: Callable[[], bool], timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.01)
    return True


def _ancestors(proc: _Proc, table: dict[int, _Proc]) -> Iterator[_Proc]:
    seen = set()
    while proc.ppid in table and proc.ppid not in seen:
        seen.add(proc.ppid)
        proc = table[proc.ppid]
        yield proc


class ProcessGuard:
    def __init__(self) -> None:
        self.pid = os.getpid()
        self.run_id = uuid.uuid4().hex
        self.enabled = False
        self.preexisting: set[_Proc] = set()  # ours before the session started: not judged
        self.baseline: set[_Proc] = set()  # ours when the current test's setup began
        self.owners: dict[object, tuple[str, set[_Proc]]] = {}  # broad fixture -> its procs
        self.pending: list[str] = []  # reports from fixtures finalized since the last check

    def start(self) -> None:
        outer = os.environ.get(TEST_RUN_VAR)
        os.environ[TEST_RUN_VAR] = f"{outer}:{self.run_id}" if outer else self.run_id
        libc = ctypes.CDLL(None, use_errno=True)
        if libc.prctl(_PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) != 0:
            raise OSError(ctypes.get_errno(), "prctl(PR_SET_CHILD_SUBREAPER)")
        self.enabled = True
        self.preexisting = self.scan()[0]

    def scan(self) -> tuple[set[_Proc], dict[int, _Proc]]:
        """Our live processes (tagged, or descendants of pytest), and the process table."""
        table = _process_table()
        tag = self.run_id.encode()
        ours = set()
        for proc in table.values():
            if proc.pid == self.pid or proc.state in "ZX":
                continue
            if any(a.pid == self.pid for a in _ancestors(proc, table)) or tag in _read(
                f"/proc/{proc.pid}/environ"
            ):
                ours.add(proc)
        return ours, table

    def owned(self) -> set[_Proc]:
        return set().union(*(procs for _, procs in self.owners.values()))

    # --- broader fixtures ---------------------------------------------------------------

    def fixture_set_up(self, fixturedef: object, label: str, before: set[_Proc]) -> None:
        """Processes that appeared while the fixture was set up are the fixture's (minus
        those a fixture it requested, set up inside it, claimed first)."""
        new = self.scan()[0] - before - self.owned()
        if new:
            self.owners.setdefault(fixturedef, (label, set()))[1].update(new)

    def fixture_finalized(self, fixturedef: object) -> None:
        label, procs = self.owners.pop(fixturedef, ("", set()))
        ours = self.scan()[0]
        left = procs & ours
        if left:
            lines = self.kill(left, exclude=ours - left)
            self.pending.append(
                f"{label} left {len(lines)} process(es) after its teardown:\n" + "\n".join(lines)
            )

    # --- tests --------------------------------------------------------------------------

    def before_test(self) -> None:
        self.reap()
        self.baseline = self.scan()[0]

    def after_test(self) -> str:
        ours, table = self.scan()
        # what a broader fixture's processes started meanwhile is that fixture's
        owner_of = {p.pid: key for key, (_, procs) in self.owners.items() for p in procs}
        for proc in ours - self.baseline - self.owned():
            for ancestor in _ancestors(proc, table):
                key = owner_of.get(ancestor.pid)
                if key is not None and ancestor in self.owners[key][1]:
                    self.owners[key][1].add(proc)
                    break
        leaked = ours - self.baseline - self.owned() - self.preexisting
        reports, self.pending = self.pending, []
        if leaked:
            lines = self.kill(leaked, exclude=ours - leaked)
            reports.append(
                f"the test left {len(lines)} process(es) running (pid, name, ppid, cmdline):\n"
                + "\n".join(lines)
            )
        self.reap()
        return "\n".join(reports)

    def finish(self) -> str:
        """At session end: whatever of ours is still alive (nothing should be)."""
        ours = self.scan()[0]
        left = ours - self.preexisting
        reports, self.pending = self.pending, []
        if left:
            lines = self.kill(left, exclude=ours - left)
            reports.append(
                f"{len(lines)} process(es) outlived every test and fixture:\n" + "\n".join(lines)
            )
        self.reap()
        return "\n".join(reports)

    # --- killing and reaping --------------------------------------------------------------

    def kill(self, victims: set[_Proc], exclude: set[_Proc]) -> list[str]:
        """Freeze the victims and any new process of ours that appears meanwhile (not in
        `exclude`), SIGKILL them all, verify each is gone. One report line per process."""
        frozen: dict[_Proc, str] = {}
        todo = set(victims)
        deadline = time.monotonic() + 10
        while todo and time.monotonic() < deadline:
            for proc in todo:
                frozen[proc] = (
                    _read(f"/proc/{proc.pid}/cmdline")
                    .rstrip(b"\0")
                    .replace(b"\0", b" ")
                    .decode(errors="replace")
                )
                _signal(proc, signal.SIGSTOP)
            # A stop lands when the target next returns to user space: a fork in flight
            # may still complete, so wait for the stop, then look for new children.
            _wait_for(functools.partial(_all_frozen_or_gone, frozenset(todo)), 5)
            todo = self.scan()[0] - exclude - frozen.keys()
        for proc in frozen:
            _signal(proc, signal.SIGKILL)
        _wait_for(lambda: not any(_alive(p) for p in frozen), 10)
        lines = []
        for proc, cmdline in sorted(frozen.items(), key=lambda item: item[0].pid):
            verdict = "  STILL ALIVE after SIGKILL" if _alive(proc) else ""
            lines.append(f"  pid {proc.pid} {proc.name} ppid {proc.ppid}: {cmdline[:300]}{verdict}")
        return lines

    def reap(self) -> None:
        """Reap our zombie children (orphans we adopted as subreaper, killed leaks)."""
        table = _process_table().values()
        zombies = {p.pid for p in table if p.ppid == self.pid and p.state == "Z"}
        if not zombies:
            return
        popens = {
            obj.pid: obj
            for obj in gc.get_objects()
            if isinstance(obj, subprocess.Popen) and obj.pid in zombies and obj.returncode is None
        }
        for pid in zombies:
            if pid in popens:
                popens[pid].poll()  # records the status where its owner will look
            else:
                try:
                    os.waitpid(pid, os.WNOHANG)
                except ChildProcessError:
                    pass


def _all_frozen_or_gone(procs: frozenset[_Proc]) -> bool:
    for proc in procs:
        now = _stat(proc.pid)
        if now is not None and now.start == proc.start and now.state not in "TtZX":
            return False
    return True


_GUARD = ProcessGuard()


def pytest_configure(config: pytest.Config) -> None:
    _as_from_a_terminal()
    if sys.platform == "linux" and not _GUARD.enabled:
        _GUARD.start()


def _as_from_a_terminal() -> None:
    """Run the suite with the signal dispositions of a terminal, whatever started it.

    llmdeploy keeps a signal its parent ignored ignored (`nohup` keeps a deployment
    serving), and a shell's background job (`make test &`, a CI runner under nohup)
    starts with SIGINT and SIGHUP ignored — every process the tests start would inherit
    that, and tests that send those signals would test nothing. Tests that want an
    ignored signal set it themselves, for the one process they start."""
    if signal.getsignal(signal.SIGINT) == signal.SIG_IGN:
        signal.signal(signal.SIGINT, signal.default_int_handler)
    if signal.getsignal(signal.SIGHUP) == signal.SIG_IGN:
        signal.signal(signal.SIGHUP, signal.SIG_DFL)


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_fixture_setup(
    fixturedef: pytest.FixtureDef[object], request: pytest.FixtureRequest
) -> Generator[None, object, object]:
    if not _GUARD.enabled or fixturedef.scope == "function":
        return (yield)
    before = _GUARD.scan()[0]
    try:
        return (yield)
    finally:
        label = f"{fixturedef.scope}-scoped fixture {fixturedef.argname!r}"
        _GUARD.fixture_set_up(fixturedef, label, before)


def pytest_fixture_post_finalizer(
    fixturedef: pytest.FixtureDef[object], request: pytest.FixtureRequest
) -> None:
    if _GUARD.enabled and fixturedef in _GUARD.owners:
        _GUARD.fixture_finalized(fixturedef)


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_runtest_setup(item: pytest.Item) -> Generator[None, None, None]:
    if _GUARD.enabled:
        _GUARD.before_test()
    return (yield)


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_runtest_teardown(
    item: pytest.Item, nextitem: pytest.Item | None
) -> Generator[None, None, None]:
    error: BaseException | None = None
    try:
        yield
    except BaseException as exc:  # reported below, together with any leak
        error = exc
    report = _GUARD.after_test() if _GUARD.enabled else ""
    if report:
        if error is not None:
            report += f"\n(the teardown itself also failed: {error!r})"
        raise pytest.fail.Exception("process guard: " + report, pytrace=False) from error
    if error is not None:
        raise error


@pytest.hookimpl(trylast=True)
def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    report = _GUARD.finish() if _GUARD.enabled else ""
    if report:
        reporter = session.config.pluginmanager.get_plugin("terminalreporter")
        if reporter is not None:
            reporter.write_line("process guard: " + report, red=True)
        else:
            print("process guard: " + report, file=sys.stderr)
        session.exitstatus = pytest.ExitCode.TESTS_FAILED
