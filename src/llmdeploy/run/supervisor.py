"""One deployment from lock to stop, in the supervising process (a foreground
`llmdeploy up`, or the background supervisor of `up --detach`, background.py):

    lock ─▶ record (preparing) ─▶ guardian ─▶ checks ─▶ pulling ─▶ starting ─▶ ready
                                                                     ▲           │ exit
                                                 restarting (policy) ┘◀──────────┘
    any signal / `down` ─▶ stopping ─▶ stopped (record removed)
    any failure         ─▶ stopping ─▶ failed (record kept, with reason and log tail)

Signals are only recorded (signals.py); every wait here is a loop of short ticks that
checks them (waits.py), so a signal acts within a tick in every phase, and nothing is
spawned after one. A second signal cuts the stop's grace short.
"""

from __future__ import annotations

import os
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

from llmdeploy.engines import render
from llmdeploy.engines.planning import Plan
from llmdeploy.errors import LlmdeployError, StartError, StopError
from llmdeploy.files import open_regular
from llmdeploy.run import diagnosis, procs
from llmdeploy.run.fleet import Fleet
from llmdeploy.run.lifecycle import Lifecycle
from llmdeploy.run.members import Member
from llmdeploy.run.multinode import HeadLifecycle, HeadStopped, WorkerLifecycle
from llmdeploy.run.phases import Phase
from llmdeploy.run.signals import exit_code
from llmdeploy.run.spawn import engine_environment, spawn, spawn_guardian
from llmdeploy.run.state import Owner, Record, StopRequest
from llmdeploy.run.waits import Interrupted, Ticker

TAIL_LINES = 40
PROCS_SAMPLE_S = 1.0  # how often the guardian hears of this run's processes
SHM_SAMPLE_S = 5.0  # … and of their /dev/shm files (reading maps costs more)


@dataclass(frozen=True)
class RunOptions:
    """Everything a supervisor needs besides the profile: typed, and serialisable as
    JSON for the background supervisor (background.py)."""

    run_id: str
    timeout_s: float
    cache: str
    probe: bool = True
    grace: float = 15.0
    gpu_check: bool = True
    offline: bool = False
    detached: bool = False
    tie_fd: int | None = None  # EOF here = the command that wanted this deployment died
    port: int | None = None  # the port the parent's plan chose (port: auto), kept
    node_rank: int = 0  # the node whose part this is (profile nodes > 1; multinode.py)
    head: str | None = None  # node 0's address, over distributed.head


def first_record(plan: Plan, profile_file: Path, options: RunOptions, log_path: Path) -> Record:
    """A deployment's record as it begins (phase preparing), owned by this process."""
    profile, launch = plan.profile, plan.launch
    ref = profile.serving.api_key
    try:  # the log is ours: something else planted there must not hang or fail us later
        with open_regular(log_path, "ab") as log:
            offset = log.seek(0, os.SEEK_END)
    except OSError as exc:
        raise StartError(f"cannot use the log {log_path}: {exc.strerror or exc}") from None
    return Record(
        name=profile.name,
        run_id=options.run_id,
        phase=Phase.PREPARING,
        profile=str(profile_file.resolve()),
        engine=profile.engine.type,
        model=profile.model.id or str(plan.model_path),
        served_model_name=profile.served_model_name,
        base_url=launch.base_url,
        health_path=launch.health_path,
        log=str(log_path),
        log_offset=offset,
        started_at=time.time(),
        supervisor=procs.this_process(),
        detached=options.detached,
        api_key_env=ref[2:-1] if ref else None,
    )


class Supervisor:
    def __init__(
        self,
        plan: Plan,
        profile_file: Path,
        options: RunOptions,
        ticker: Ticker,
        api_key: str | None,
    ):
        self.plan = plan
        self.api_key = api_key
        self.profile = plan.profile
        self.profile_file = profile_file
        self.options = options
        self.ticker = ticker
        self.registry = ticker.registry
        self.name = self.profile.name
        self.tag = self.registry.tag_prefix(self.name) + options.run_id
        self.log_path = self.registry.log_path(self.name)
        self.owner: Owner | None = None
        self.guardian: subprocess.Popen[bytes] | None = None
        self.engine: subprocess.Popen[bytes] | None = None
        self.grace = options.grace
        self.shm: set[str] = set()  # /dev/shm files seen mapped by this run's processes
        self.told: set[procs.Proc] = set()  # this run's live processes the guardian knows
        self._procs_at = self._shm_at = 0.0

    # --- the whole run ----------------------------------------------------------------

    def run(self, lock_fd: int | None = None) -> int:
        """Supervise until stopped; `lock_fd` is the deployment's lock when the caller
        took it already (the parent of a background supervisor, see detach.py)."""
        owner = self._own(lock_fd)
        try:
            self._begin(owner)
            return self._lifecycle().run()
        except Interrupted as stop:
            return self.stop_all(stop.signum)
        except HeadStopped as stop:
            return self.stop_all(0, why=f"node 0 stopped ({stop.why}): stopping this node's part")
        except LlmdeployError as error:
            self._fail(error)
            raise
        except BaseException as error:  # a bug: still leave nothing running
            self._fail(StartError(f"internal error: {type(error).__name__}: {error}"))
            raise
        finally:
            self._end()

    def _lifecycle(self) -> Lifecycle:
        if self.profile.nodes > 1:
            return (WorkerLifecycle if self.options.node_rank else HeadLifecycle)(self)
        return Fleet(self) if self.profile.routed else Lifecycle(self)

    def _own(self, lock_fd: int | None) -> Owner:
        if lock_fd is None:
            return self.registry.own(self.name)
        os.set_inheritable(lock_fd, False)  # the engine must never hold the lock
        return Owner(self.registry, self.name, lock_fd)

    def _begin(self, owner: Owner) -> None:
        self.owner = owner
        self.log_path.touch()
        found = self.registry.read(self.name)
        if isinstance(found, Record) and found.run_id == self.options.run_id:
            # Written by the parent that took the lock for us (detach.py): take it over.
            owner.adopt(found)
            owner.update(supervisor=procs.this_process())
        else:
            owner.create(first_record(self.plan, self.profile_file, self.options, self.log_path))
        procs.become_subreaper()
        self.ensure_guardian()

    def _end(self) -> None:
        if self.owner is not None:
            self.owner.release()

    def replan(self) -> None:
        """Build the plan again (after a pull), keeping the port clients were told."""
        from llmdeploy.engines import planning

        port = int(self.plan.launch.base_url.rsplit(":", 1)[1])
        self.plan = planning.make_plan(
            self.profile,
            environ=os.environ,
            cache=Path(self.options.cache),
            port=port,
            node_rank=self.options.node_rank,
            head=self.options.head,
        )
        self.ticker.secrets = dict(self.plan.launch.secrets)

    # --- the guardian ------------------------------------------------------------------

    def ensure_guardian(self) -> None:
        """Start the guardian, or a new one if it died (SIGKILL of it alone)."""
        self.sample()
        if self.guardian is not None and self.guardian.poll() is None:
            return
        assert self.owner is not None
        self.guardian = spawn_guardian(
            self.registry.root, self.name, self.options.run_id, self.owner.lock_fd, self.grace
        )
        if self.engine is not None:
            self.tell_guardian(f"engine {self._engine_proc_words()}")
        record = self.owner.record
        for proc in record.sessions if record else []:
            self.tell_guardian(f"engine {proc.pid} {proc.start}")
        for proc in sorted(self.told):
            self.tell_guardian(f"proc {proc.pid} {proc.start}")
        for path in sorted(self.shm):
            self.tell_guardian(f"shm {path}")
        me = procs.identify(self.guardian.pid)
        self.owner.update(guardian=me)

    def sample(self, *, now: bool = False) -> None:
        """Tell the guardian this run's processes and their /dev/shm files, now and then
        (`now`: at once). It finds processes by tag, session and ancestry itself, but a
        process can defeat all three once this supervisor is gone: a cleared or
        setproctitle-overwritten environment, setsid(), an orphan reparented to init. One
        it was told of by (pid, start time) it stops anyway. A file whose process exits
        before the stop (a Ray worker killed with its node) is removed too."""
        at = time.monotonic()
        if self.owner is None or not (now or at - self._procs_at >= PROCS_SAMPLE_S):
            return
        self._procs_at = at
        found = self.ours()
        for proc in sorted(set(found) - self.told):
            self.tell_guardian(f"proc {proc.pid} {proc.start}")
        self.told = set(found)  # the dead are dropped: the guardian checks start times
        if now or at - self._shm_at >= SHM_SAMPLE_S:
            self._shm_at = at
            new = procs.shm_files(found) - self.shm
            self.shm |= new
            for path in sorted(new):
                self.tell_guardian(f"shm {path}")

    def tell_guardian(self, line: str) -> None:
        if self.guardian is not None and self.guardian.stdin is not None:
            try:
                self.guardian.stdin.write(line.encode() + b"\n")
                self.guardian.stdin.flush()
            except OSError:
                pass  # it died: ensure_guardian() replaces it at the next tick

    def _release_guardian(self) -> None:
        if self.guardian is None:
            return
        self.tell_guardian("release")
        if self.guardian.stdin is not None:
            try:
                self.guardian.stdin.close()
            except OSError:
                pass
        try:
            self.guardian.wait(timeout=5)
        except subprocess.TimeoutExpired:
            self.guardian.kill()
            self.guardian.wait()
        self.guardian = None

    # --- processes -----------------------------------------------------------------------

    def spawn_engine(self) -> subprocess.Popen[bytes]:
        self.ticker.check()  # nothing is started after a signal
        launch = self.plan.launch
        env = engine_environment(launch, os.environ)
        self.engine = spawn(launch.argv, env=env, tag=self.tag, log_path=self.log_path)
        self.tell_guardian(f"engine {self._engine_proc_words()}")
        return self.engine

    def _engine_proc_words(self) -> str:
        assert self.engine is not None
        proc = procs.identify(self.engine.pid)
        return f"{self.engine.pid} {proc.start if proc else 0}"

    def spawn_member(self, member: Member) -> subprocess.Popen[bytes]:
        """Start a replica or the router of a routed deployment (fleet.py)."""
        self.ticker.check()
        env = engine_environment(member.launch, os.environ)
        popen = spawn(member.launch.argv, env=env, tag=member.tag, log_path=member.log_path)
        proc = procs.identify(popen.pid)
        self.tell_guardian(f"engine {popen.pid} {proc.start if proc else 0}")
        member.popen, member.proc = popen, proc
        return popen

    def ours(self) -> list[procs.Proc]:
        """Every live process of this run: tagged (a member's tag extends the run's), in
        an engine's session, or adopted."""
        record = self.owner.record if self.owner else None
        sessions = record.sessions if record else []
        guardian = {self.guardian.pid} if self.guardian else set()
        found = procs.find(
            procs.tagged(self.tag), sessions=sessions, ancestors=[os.getpid()]
        )
        return [p for p in found if p.pid not in guardian]

    def stop_processes(self) -> list[procs.Proc]:
        """TERM everything of this run, grace, KILL, verify; a second signal kills now."""
        grace = self._requested_grace()
        signals = self.ticker.signals
        warned: list[bool] = []

        def escalate() -> bool:
            if signals.escalated and not warned:
                warned.append(True)
                self.note("second signal: killing now")
            return signals.escalated

        left = procs.stop(self.ours, grace, escalate=escalate)
        procs.remove_shm(self.shm)
        for popen in (self.engine,):
            if popen is not None:
                try:
                    popen.wait(timeout=1)
                except subprocess.TimeoutExpired:
                    pass
        return left

    def _requested_grace(self) -> float:
        request = StopRequest.read(self.registry, self.name, self.options.run_id)
        return request.grace if request else self.grace

    # --- endings -------------------------------------------------------------------------

    def stop_all(self, signum: int, why: str | None = None) -> int:
        """Stop on a signal (or `down`, or node 0's clean stop): stopping -> stopped,
        record removed."""
        self.note(why or f"received signal {signum}, stopping {self.name}")
        self.ticker.console_clear()
        self._record(Phase.STOPPING, next_attempt_at=None)
        left = self.stop_processes()
        if left:
            listed = ", ".join(p.label() for p in left)
            self._record(Phase.FAILED, reason=f"processes survived the stop: {listed}")
            raise StopError(f"processes survived the stop: {listed}")
        self._record(Phase.STOPPED)
        if self.owner is not None:
            self.owner.remove()
        self._release_guardian()
        return exit_code(signum) if signum else 0

    def _fail(self, error: LlmdeployError) -> None:
        owner = self.owner
        if owner is None or owner.record is None or owner.record.phase is Phase.FAILED:
            return
        self.ticker.console_clear()
        self._record(Phase.STOPPING, next_attempt_at=None)
        left = self.stop_processes()
        reason = error.message
        if left:
            reason += f" (and processes survived the stop: {', '.join(p.label() for p in left)})"
        self._record(Phase.FAILED, reason=reason, tail=self.run_tail())
        if not left:
            self._release_guardian()

    def _record(self, phase: Phase, **changes: object) -> None:
        """Record an ending, best effort: stopping the processes matters more than writing
        about it (a full disk must not leave an engine running)."""
        owner = self.owner
        if owner is None or owner.record is None or owner.record.phase is phase:
            return
        try:
            owner.move(phase, **changes)
        except LlmdeployError as exc:
            self.note(f"could not record {phase.value}: {exc.message}")

    def note(self, text: str) -> None:
        """llmdeploy's own lines go into the deployment log, among the engine's, so
        `llmdeploy logs` tells the whole story; a foreground run shows them from there."""
        try:
            with open_regular(self.log_path, "ab") as log:
                log.write(f"[llmdeploy] {text}\n".encode())
        except OSError:
            pass  # a full disk: the run goes on, the note is lost
        self.ticker.pump(None)

    def run_tail(self) -> list[str]:
        """This run's last log lines (never an earlier run's), secrets masked."""
        assert self.owner is not None and self.owner.record is not None
        lines = diagnosis.tail(self.log_path, TAIL_LINES, start=self.owner.record.log_offset)
        return [render.mask_text(line, self.plan.launch.secrets) for line in lines]
