"""One deployment from launch to stop, in the supervising process (a foreground
`llmdeploy up`, or the background supervisor of `up --detach`):

    lock -> preflight -> start -> wait ready -> serve -> stop
                            ^                   |
                            └── on-failure: backoff, restart (reset once ready)

Signals are only recorded (signals.py); this loop acts on them, stops the engine's
whole session and returns 128+signum.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from pathlib import Path

from llmdeploy.console import Console, LogFollower
from llmdeploy.engines import render
from llmdeploy.engines.planning import Plan
from llmdeploy.errors import StartError, StopError
from llmdeploy.hub import pull
from llmdeploy.hub.clients import hub_for
from llmdeploy.hub.models import require_present
from llmdeploy.run import diagnosis, preflight
from llmdeploy.run.readiness import Probe, probe_verdict
from llmdeploy.run.signals import SignalCapture, exit_code
from llmdeploy.run.state import Record, Registry
from llmdeploy.run.supervisor import Supervisor

TICK = 0.02  # readiness poll: "ready" is reported within a tick of the first 200


@dataclass(frozen=True)
class UpOptions:
    timeout_s: float
    probe: bool = True
    grace: float = 15.0
    gpu_check: bool = True
    detached: bool = False  # running as the background supervisor of `up --detach`
    offline: bool = False  # never contact a model hub; the cache must have the model
    cache: Path = Path()  # where hub models are kept


@dataclass(frozen=True)
class Outcome:
    kind: str  # ready | exited | timeout | signal | rejected
    code: int = 0
    text: str = ""


class Deployment:
    def __init__(
        self,
        plan: Plan,
        *,
        profile_file: Path,
        registry: Registry,
        console: Console | None,
        signals: SignalCapture,
        options: UpOptions,
        api_key: str | None,
    ):
        self.plan = plan
        self.profile = plan.profile
        self.profile_file = profile_file
        self.registry = registry
        self.console = console
        self.signals = signals
        self.options = options
        self.api_key = api_key
        self.log_path = registry.log_path(self.profile.name)
        self.follower = None if options.detached else LogFollower(self.log_path, from_end=True)
        self.record: Record | None = None

    # --- the whole run ------------------------------------------------------------

    def run(self) -> int:
        lock = self.registry.acquire(self.profile.name)
        try:
            self._preflight()
            return self._supervise(lock)
        finally:
            if self.record is not None:
                self.registry.remove(self.profile.name)
            os.close(lock)  # the guardian keeps its copy until the engine is gone

    def _preflight(self) -> None:
        # Port and GPUs first: a machine that cannot run the engine should say so before
        # an hour-long download, not after. A download happened? Check again.
        self._check_machine()
        if self._ensure_model():
            self._check_machine()

    def _check_machine(self) -> None:
        port = int(self.plan.launch.base_url.rsplit(":", 1)[1])
        preflight.check_port(self.profile.serving.host, port)
        if self.options.gpu_check:
            preflight.check_gpus(self.profile, preflight.query_gpus())

    def _ensure_model(self) -> bool:
        """Hub models are pulled into the cache first (engines never download).
        True if a pull ran."""
        model = self.profile.model
        if model.source in ("local", "package") or pull.is_complete(model, self.options.cache):
            require_present(self.plan.model_path, model)
            return False
        self._note(f"pulling {model.id} from {model.source} before launch")
        hub = None if self.options.offline else hub_for(model.source, self.options.cache)
        pull.pull(model, self.options.cache, hub=hub, offline=self.options.offline, note=self._note)
        require_present(self.plan.model_path, model)
        return True

    def _supervise(self, lock: int) -> int:
        restart = self.profile.restart
        failures = 0
        while True:
            supervisor = self._start(lock, failures)
            outcome = self._wait_ready(supervisor)
            if outcome.kind == "ready":
                failures = 0
                self._save(phase="ready", ready_at=time.time())
                self._announce(supervisor)
                outcome = self._serve(supervisor)
            if outcome.kind == "signal":
                self._stop(supervisor, f"received signal {outcome.code}, stopping")
                return exit_code(outcome.code)
            self._stop(supervisor, None)
            failure = self._describe(outcome)
            if restart.policy == "on-failure" and failures < restart.max_restarts:
                failures += 1
                delay = min(restart.backoff_s * 2 ** (failures - 1), restart.backoff_max_s)
                self._note(
                    f"{failure}; restarting in {delay:g} s ({failures}/{restart.max_restarts})"
                )
                self._save(phase="restarting")
                if self._sleep(delay):
                    return exit_code(self.signals.received or 0)
                continue
            self._fail(failure)

    # --- steps -----------------------------------------------------------------------

    def _start(self, lock: int, attempt: int) -> Supervisor:
        launch = self.plan.launch
        stamp = time.strftime("%Y-%m-%d %H:%M:%S")
        self._note(f"starting {self.profile.name} at {stamp}: {render.shell_line(launch)}")
        supervisor = Supervisor(launch, self.log_path, lock_fd=lock, grace=self.options.grace)
        supervisor.start()
        self._save(
            phase="starting", engine_pid=supervisor.pid, started_at=time.time(), restarts=attempt
        )
        return supervisor

    def _wait_ready(self, supervisor: Supervisor) -> Outcome:
        launch, budget = self.plan.launch, self.options.timeout_s
        probe = Probe(
            launch.base_url,
            launch.health_path,
            model=self.profile.served_model_name,
            api_key=self.api_key,
        )
        healthy = False
        while True:
            if self.signals.received:
                return Outcome("signal", self.signals.received)
            code = supervisor.poll()
            if code is not None:
                return Outcome("exited", code)
            healthy = healthy or probe.healthy()
            if healthy and not self.options.probe:
                return Outcome("ready")
            if healthy:
                answer = probe.generate_one()
                verdict = probe_verdict(answer)
                if verdict == "ok":
                    return Outcome("ready")
                if verdict == "fail":
                    body = answer.body.decode(errors="replace")[:200]
                    return Outcome("rejected", answer.status, body)
            elapsed = time.monotonic() - supervisor.started_at
            if elapsed > budget:
                return Outcome("timeout")
            self._pump(f"starting {self.profile.name} … {elapsed:.0f} s (budget {budget:g} s)")
            time.sleep(TICK)

    def _serve(self, supervisor: Supervisor) -> Outcome:
        while True:
            if self.signals.received:
                return Outcome("signal", self.signals.received)
            code = supervisor.poll()
            if code is not None:
                return Outcome("exited", code, "after being ready")
            self._pump(None)
            time.sleep(0.1)

    def _stop(self, supervisor: Supervisor, note: str | None) -> None:
        if note:
            self._note(note)
        self._save(phase="stopping")
        survivors = supervisor.stop()
        self._pump(None)
        if self.console is not None:
            self.console.clear_status()
        if survivors:
            listed = ", ".join(f"{m.pid} ({m.name})" for m in survivors)
            raise StopError(f"processes survived the stop: {listed}")

    def _fail(self, failure: str) -> None:
        self._save(phase="failed")
        lines = diagnosis.tail(self.log_path, 40)
        found = diagnosis.diagnose(lines)
        secrets = self.plan.launch.secrets
        details = None
        if not self.options.detached:  # the detached parent has streamed them already
            shown = "\n".join("  | " + render.mask_text(line, secrets) for line in lines)
            details = f"last lines of {self.log_path}:\n{shown}"
        raise StartError(
            failure + (f" — {found}" if found else ""),
            details=details,
            hint=f"full log: llmdeploy logs {self.profile.name}",
        )

    # --- helpers -----------------------------------------------------------------------

    def _describe(self, outcome: Outcome) -> str:
        if outcome.kind == "exited":
            when = f" {outcome.text}" if outcome.text else " while starting"
            return f"engine exited with code {outcome.code}{when}"
        if outcome.kind == "timeout":
            return (
                f"engine not ready after {self.options.timeout_s:g} s "
                "(raise readiness.timeout_s or pass --timeout)"
            )
        return f"engine refused the probe request (HTTP {outcome.code}): {outcome.text}"

    def _announce(self, supervisor: Supervisor) -> None:
        took = time.monotonic() - supervisor.started_at
        url = self.plan.launch.base_url
        how = f"llmdeploy down {self.profile.name}" if self.options.detached else "Ctrl-C"
        if self.console is not None:
            self.console.clear_status()
        self._note(
            f"ready: {self.profile.name} serves {self.profile.served_model_name!r} at {url}/v1 "
            f"after {took:.1f} s (stop: {how})"
        )

    def _note(self, text: str) -> None:
        """llmdeploy's own lines go into the deployment log, among the engine's, so
        `llmdeploy logs` tells the whole story; a foreground run shows them from there."""
        with open(self.log_path, "a", encoding="utf-8") as log:
            log.write(f"[llmdeploy] {text}\n")
        self._pump(None)

    def _pump(self, status: str | None) -> None:
        if self.follower is not None:
            for line in self.follower.read():
                if self.console is not None:
                    self.console.line(render.mask_text(line, self.plan.launch.secrets))
        if status and self.console is not None:
            self.console.status(status)

    def _sleep(self, seconds: float) -> bool:
        """Sleep unless a signal comes; True if one did."""
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            if self.signals.received:
                return True
            time.sleep(min(TICK * 5, max(0.0, deadline - time.monotonic())))
        return self.signals.received is not None

    def _save(self, **changes: object) -> None:
        if self.record is None:
            profile, launch = self.profile, self.plan.launch
            ref = profile.serving.api_key
            self.record = Record(
                name=profile.name,
                profile=str(self.profile_file.resolve()),
                engine=profile.engine.type,
                model=profile.model.id or str(self.plan.model_path),
                served_model_name=profile.served_model_name,
                base_url=launch.base_url,
                health_path=launch.health_path,
                supervisor_pid=os.getpid(),
                engine_pid=0,
                log=str(self.log_path),
                started_at=time.time(),
                api_key_env=ref[2:-1] if ref else None,
                detached=self.options.detached,
            )
        self.record = self.record.with_(**changes)
        self.registry.save(self.record)
