"""Which processes belong to a deployment, and how they are stopped. Linux /proc only;
standard library only (the guardian imports this in a bare interpreter).

A deployment's processes are found four ways, because each alone can be escaped:

- **Tag.** Every process we spawn for a deployment (engine, download) gets
  `LLMDEPLOY_RUN=<state dir's scope>/<name>/<run id>` in its environment, and every
  descendant inherits it: one that calls setsid(), double-forks, or is reparented to init
  still carries it in /proc/PID/environ. The tag is chosen before anything is spawned,
  so whoever cleans up knows what to look for before the process exists (no spawn
  window).
- **Session.** The engine leads its own session; a child that only changes process
  group stays in it.
- **Ancestry.** Descendants of the supervisor (a child subreaper, so orphans come back
  to it) — for a process that started with a cleared environment.
- **Seen.** A tag is invisible where the environment was cleared or overwritten
  (setproctitle, as vLLM's EngineCore and SGLang's schedulers use, writes the title over
  it), and ancestry ends with the supervisor. So the supervisor tells the guardian every
  process it finds, by (pid, start time), about once a second and before "ready".

Cgroups would be stronger, but are writable only with root or delegation (v1 hybrids,
containers): not something a user's `llmdeploy up` can count on.

A pid alone is never trusted: a process is named by (pid, start time), the start time
read from /proc/PID/stat, so a pid reused after the process died (or a reboot) is
never signalled.
"""

from __future__ import annotations

import ctypes
import os
import signal
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass

TAG_VAR = "LLMDEPLOY_RUN"


@dataclass(frozen=True, order=True)
class Proc:
    """A process named by pid and start time (clock ticks since boot)."""

    pid: int
    start: int
    name: str = ""

    def alive(self) -> bool:
        stat = read_stat(self.pid)
        return stat is not None and stat.start == self.start and stat.state != "Z"

    def signal(self, signum: int) -> bool:
        """Signal it if it is still the same process; False if it is gone."""
        if not self.alive():
            return False
        try:
            os.kill(self.pid, signum)
        except (ProcessLookupError, PermissionError):
            return False
        return True

    def label(self) -> str:
        return f"{self.pid} ({self.name})" if self.name else str(self.pid)


@dataclass(frozen=True)
class Stat:
    name: str
    state: str
    ppid: int
    session: int
    start: int


def read_stat(pid: int) -> Stat | None:
    try:
        with open(f"/proc/{pid}/stat", "rb") as handle:
            raw = handle.read().decode(errors="replace")
    except OSError:
        return None
    # comm may hold spaces and parentheses: it ends at the last ')'.
    head, _, tail = raw.rpartition(")")
    f = tail.split()
    try:
        return Stat(head.partition("(")[2], f[0], int(f[1]), int(f[3]), int(f[19]))
    except (IndexError, ValueError):
        return None


def identify(pid: int) -> Proc | None:
    stat = read_stat(pid)
    if stat is None or stat.state == "Z":
        return None
    return Proc(pid, stat.start, stat.name)


def this_process() -> Proc:
    me = identify(os.getpid())
    assert me is not None
    return me


def runs_llmdeploy(pid: int) -> bool:
    """The process runs llmdeploy (a supervisor or guardian), not something that merely
    has the recorded pid and start time — a hostile or corrupt record cannot name pid 1."""
    if pid <= 1 or pid == os.getpid():
        return False
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as handle:
            return b"llmdeploy" in handle.read(65536)
    except OSError:
        return False


def _tag_of(pid: int) -> str | None:
    try:
        with open(f"/proc/{pid}/environ", "rb") as handle:
            data = handle.read()
    except OSError:
        return None
    key = TAG_VAR.encode() + b"="
    for item in data.split(b"\0"):
        if item.startswith(key):
            return item[len(key) :].decode(errors="replace")
    return None


def tagged(tag: str) -> Callable[[str], bool]:
    """A run's processes: its tag, or a member's tag under it (`<tag>/r0`, `<tag>/router`)."""
    below = tag + "/"
    return lambda value: value == tag or value.startswith(below)


def _all_pids() -> list[int]:
    return [int(e) for e in os.listdir("/proc") if e.isdigit()]


def find(
    tag: Callable[[str], bool],
    *,
    sessions: Iterable[Proc] = (),
    ancestors: Iterable[int] = (),
    known: Iterable[Proc] = (),
) -> list[Proc]:
    """Live processes whose tag satisfies `tag`, members of the sessions led by
    `sessions` (only while the leader is the recorded process or gone — a session id
    whose pid was reused by an unrelated leader is ignored), descendants of `ancestors`,
    and the `known` processes still alive (same pid and start time) with their
    descendants. Never this process."""
    me = os.getpid()
    leaders = {p.pid for p in sessions if _session_is_ours(p)}
    roots = set(ancestors)
    stats = {pid: s for pid in _all_pids() if (s := read_stat(pid)) is not None}
    still = {p.pid for p in known if (s := stats.get(p.pid)) is not None and s.start == p.start}
    below = roots | still
    found = {}
    for pid, stat in stats.items():
        if pid == me or pid in roots or stat.state == "Z":
            continue
        value = _tag_of(pid)
        ours = (
            pid in still
            or (value is not None and tag(value))
            or stat.session in leaders
            or _descends(pid, below, stats)
        )
        if ours:
            found[pid] = Proc(pid, stat.start, stat.name)
    return sorted(found.values())


def _session_is_ours(leader: Proc) -> bool:
    stat = read_stat(leader.pid)
    return stat is None or stat.start == leader.start or stat.session != leader.pid


def _descends(pid: int, roots: set[int], stats: dict[int, Stat]) -> bool:
    seen = 0
    while pid > 1 and seen < 4096:
        stat = stats.get(pid)
        if stat is None:
            return False
        if stat.ppid in roots:
            return True
        pid, seen = stat.ppid, seen + 1
    return False


def stop(
    find_them: Callable[[], list[Proc]],
    grace: float,
    *,
    escalate: Callable[[], bool] = lambda: False,
    poll: float = 0.02,
) -> list[Proc]:
    """TERM every process `find_them()` returns, wait up to `grace` (re-finding, so a
    process forked meanwhile is caught too), KILL what is left, verify. `escalate()`
    returning True (a second Ctrl-C) cuts the grace short. Returns the survivors."""
    deadline = time.monotonic() + grace
    left = find_them()
    signalled: set[Proc] = set()
    shm = shm_files(left)
    while left and time.monotonic() < deadline and not escalate():
        for proc in left:
            if proc not in signalled:
                shm |= shm_files([proc])
                proc.signal(signal.SIGTERM)
                signalled.add(proc)
        time.sleep(poll)
        reap_orphans()
        left = find_them()
    kill_deadline = time.monotonic() + 5.0
    while left and time.monotonic() < kill_deadline:
        for proc in left:
            proc.signal(signal.SIGKILL)
        time.sleep(poll)
        reap_orphans()
        left = find_them()
    remove_shm(shm)
    return left


# --- what they leave in /dev/shm -----------------------------------------------------

SHM = "/dev/shm/"


def shm_files(found: Iterable[Proc]) -> set[str]:
    """Files in /dev/shm these processes have open or mapped (torch's and Ray's shared
    memory outlive a killed process: nobody else would remove them)."""
    paths: set[str] = set()
    for proc in found:
        try:
            for fd in os.listdir(f"/proc/{proc.pid}/fd"):
                target = os.readlink(f"/proc/{proc.pid}/fd/{fd}")
                if target.startswith(SHM):
                    paths.add(target.removesuffix(" (deleted)"))
            with open(f"/proc/{proc.pid}/maps", "rb") as handle:
                for line in handle:
                    at = line.find(SHM.encode())
                    if at >= 0:
                        paths.add(line[at:].decode(errors="replace").strip())
        except OSError:
            continue  # gone already, or not ours to read
    return {p.removesuffix(" (deleted)") for p in paths}


def remove_shm(paths: Iterable[str]) -> None:
    """Remove what is left of `paths`: plain files directly in /dev/shm, ours only."""
    me = os.getuid()
    for path in paths:
        if os.path.dirname(path) != SHM.rstrip("/"):
            continue
        try:
            info = os.lstat(path)
            if info.st_uid == me and (info.st_mode & 0o170000) == 0o100000:
                os.unlink(path)
        except OSError:
            pass


# --- orphans come back to us -------------------------------------------------------

_PR_SET_CHILD_SUBREAPER = 36


def become_subreaper() -> bool:
    """Make orphaned descendants reparent to this process instead of init, so they stay
    descendants (found by ancestry) and are reaped here. False where unsupported."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        return bool(libc.prctl(_PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) == 0)
    except (OSError, AttributeError):
        return False


_OWN_CHILDREN: set[int] = set()  # children someone else (subprocess.Popen) reaps


def leave_to_popen(pid: int) -> None:
    """Never reap this child here: its Popen must see its exit status."""
    _OWN_CHILDREN.add(pid)


def reap_orphans() -> None:
    """Reap zombie children that were adopted (as subreaper), never a Popen's own child:
    waitpid(-1) would steal its exit status."""
    me = os.getpid()
    for pid in _all_pids():
        if pid in _OWN_CHILDREN:
            continue
        stat = read_stat(pid)
        if stat is not None and stat.ppid == me and stat.state == "Z":
            try:
                os.waitpid(pid, os.WNOHANG)
            except ChildProcessError:
                pass
