"""The processes of a routed deployment — replicas `r0`, `r1`, … and the `router` — each
with a phase of its own, a log of its own and a readiness check that runs in a thread
(so the supervisor's loop keeps ticking, and checking signals, over all of them).

    starting ──▶ ready ──▶ draining ──▶ (stopped: gone from the record)
        ▲           │ exit
        └ restarting ◀┘        exit with no restart left ──▶ failed
"""

from __future__ import annotations

import enum
import subprocess
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

from llmdeploy.engines.base import Launch
from llmdeploy.run.procs import Proc
from llmdeploy.run.readiness import Answer, Probe, probe_verdict

HEALTH_TIMEOUT = 0.5
PROBE_TIMEOUT = 60.0
ROUTER = "router"


class MemberPhase(str, enum.Enum):
    STARTING = "starting"
    READY = "ready"
    RESTARTING = "restarting"  # exited; waiting out the backoff
    DRAINING = "draining"  # out of the router, finishing what it was sent
    FAILED = "failed"  # exited, no restart left; the others go on serving


def replica_name(index: int) -> str:
    return f"r{index}"


def is_replica(name: str) -> bool:
    """r0, r1, …: not the router, not a Ray head (multinode.py)."""
    return name[:1] == "r" and name[1:].isdigit()


def replica_index(name: str) -> int:
    return int(name[1:])


@dataclass(frozen=True)
class MemberState:
    """One member as the record shows it (`status`, `logs`, `down`)."""

    name: str
    port: int
    phase: MemberPhase
    proc: Proc | None = None
    restarts: int = 0
    log: str = ""
    reason: str | None = None

    @classmethod
    def from_json(cls, data: dict[str, object]) -> MemberState:
        proc = data.get("proc")
        return cls(
            name=str(data["name"]),
            port=int(data["port"]),  # type: ignore[call-overload]
            phase=MemberPhase(data["phase"]),
            proc=Proc(**proc) if isinstance(proc, dict) else None,
            restarts=int(data.get("restarts") or 0),  # type: ignore[call-overload]
            log=str(data.get("log") or ""),
            reason=None if data.get("reason") is None else str(data["reason"]),
        )


class ReadinessCheck:
    """Health, then one real 1-token request, in a daemon thread; `cancel()` ends it at
    its next attempt. The verdict: None while waiting, "ready", or "rejected: …"."""

    def __init__(self, probe: Probe, generate: Probe | None):
        self._probe, self._generate = probe, generate
        self._cancel = threading.Event()
        self.verdict: str | None = None
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        try:
            while not self._cancel.is_set() and not self._probe.healthy():
                self._cancel.wait(0.2)
            while not self._cancel.is_set() and self._generate is not None:
                answer = self._generate.generate_one()
                verdict = probe_verdict(answer)
                if verdict == "ok":
                    break
                if verdict == "fail":
                    self.verdict = _rejected(answer)
                    return
                self._cancel.wait(0.2)
            if not self._cancel.is_set():
                self.verdict = "ready"
        finally:
            self._probe.close()
            if self._generate is not None:
                self._generate.close()

    def cancel(self) -> None:
        self._cancel.set()


def readiness_check(
    url: str, health_path: str, model: str, api_key: str | None, probe: bool
) -> ReadinessCheck:
    """`health_path` answers 200, then (if `probe`) one 1-token completion succeeds."""
    health = Probe(url, health_path, model=model, api_key=api_key, timeout=HEALTH_TIMEOUT)
    generate = (
        Probe(url, health_path, model=model, api_key=api_key, timeout=PROBE_TIMEOUT)
        if probe
        else None
    )
    return ReadinessCheck(health, generate)


def member_order(member: Member) -> tuple[int, int]:
    """Replicas by number, then the router (and any other member)."""
    return (0, replica_index(member.name)) if is_replica(member.name) else (1, 0)


def _rejected(answer: Answer) -> str:
    text = answer.body.decode(errors="replace")[:200]
    return f"rejected the probe request (HTTP {answer.status}): {text}"


@dataclass
class Member:
    """One running member, owned by the fleet (fleet.py)."""

    name: str
    launch: Launch
    tag: str
    log_path: Path
    popen: subprocess.Popen[bytes] | None = None
    proc: Proc | None = None
    phase: MemberPhase = MemberPhase.STARTING
    started: float = 0.0  # monotonic, of the last spawn
    history: list[float] = field(default_factory=list)  # wall times of its restarts
    next_attempt: float | None = None  # monotonic, while restarting
    drain_until: float | None = None  # monotonic, while draining
    check: ReadinessCheck | None = None
    reason: str | None = None

    @property
    def port(self) -> int:
        return int(self.launch.base_url.rsplit(":", 1)[1])

    @property
    def url(self) -> str:
        return self.launch.base_url

    def exit_code(self) -> int | None:
        return None if self.popen is None else self.popen.poll()

    def begin_check(self, model: str, api_key: str | None, probe: bool) -> None:
        self.check = readiness_check(self.url, self.launch.health_path, model, api_key, probe)

    def end_check(self) -> None:
        if self.check is not None:
            self.check.cancel()
            self.check = None

    def state(self) -> MemberState:
        return MemberState(
            name=self.name,
            port=self.port,
            phase=self.phase,
            proc=self.proc,
            restarts=len(self.history),
            log=str(self.log_path),
            reason=self.reason,
        )

    def age(self) -> float:
        return time.monotonic() - self.started
