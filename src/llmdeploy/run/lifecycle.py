"""The phases of one deployment after its owner is set up (supervisor.py):
checks -> pulling -> starting -> ready <-> restarting. Each wait is a Ticker loop,
so a signal interrupts it within a tick (it raises `Interrupted`)."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from llmdeploy.engines import render
from llmdeploy.engines.base import Launch
from llmdeploy.errors import StartError
from llmdeploy.hub.models import require_present
from llmdeploy.run import diagnosis, preflight, procs, restarts
from llmdeploy.run.download import Download
from llmdeploy.run.phases import Phase
from llmdeploy.run.readiness import Answer, Probe, probe_verdict

if TYPE_CHECKING:
    from llmdeploy.run.supervisor import Supervisor


# A health probe that hangs (an engine still loading) delays acting on a signal by at
# most this; the first real token may take long (a big model on a CPU), so the probe
# request runs in a thread while the loop goes on ticking (and checking signals).
HEALTH_TIMEOUT = 0.5
PROBE_TIMEOUT = 60.0


class Background:
    """One blocking call in a daemon thread, so the caller's loop never blocks on it (if
    the process stops meanwhile, the thread simply dies with it)."""

    def __init__(self, call: Callable[[], Answer]):
        self._answer: Answer | None = None
        self._thread = threading.Thread(target=self._run, args=(call,), daemon=True)
        self._thread.start()

    def _run(self, call: Callable[[], Answer]) -> None:
        try:
            self._answer = call()
        except Exception:
            self._answer = Answer(0)

    @property
    def done(self) -> bool:
        return not self._thread.is_alive()

    def result(self) -> Answer:
        return self._answer if self._answer is not None else Answer(0)


def _judge(answer: Answer) -> Outcome | None:
    """The probe request's verdict as an outcome; None means: ask again."""
    verdict = probe_verdict(answer)
    if verdict == "ok":
        return Outcome("ready")
    if verdict == "fail":
        return Outcome("rejected", answer.status, answer.body.decode(errors="replace")[:200])
    return None


@dataclass(frozen=True)
class Outcome:
    kind: str  # ready | exited | timeout | rejected
    code: int = 0
    text: str = ""


class Lifecycle:
    def __init__(self, supervisor: Supervisor):
        self.sup = supervisor
        self.owner = supervisor.owner
        assert self.owner is not None
        self.ticker = supervisor.ticker
        self.options = supervisor.options
        self.profile = supervisor.profile
        self.history: list[float] = []  # wall times of restarts: the policy counts them

    @property
    def launch(self) -> Launch:
        return self.sup.plan.launch  # the plan can change once: after a pull (replan)

    def run(self) -> int:
        self._check_machine()
        if self._ensure_model():
            self._check_machine()  # a download took time: check again
        while True:
            outcome = self._start_and_wait()
            if outcome.kind == "ready":
                outcome = self._serve()
            self._restart_or_fail(outcome)

    # --- before the engine -------------------------------------------------------------

    def _check_machine(self) -> None:
        # Port and GPUs first: a machine that cannot run the engine should say so before
        # an hour-long download, not after.
        self.ticker.check()
        port = int(self.launch.base_url.rsplit(":", 1)[1])
        preflight.check_port(self.profile.serving.host, port)
        if self.options.gpu_check:
            preflight.check_gpus(self.profile, preflight.query_gpus())

    def _ensure_model(self) -> bool:
        """Hub models are pulled into the cache first (engines never download), in a
        process of their own that a signal stops at once. True if a pull ran."""
        model = self.profile.model
        if model.source in ("local", "package") or Download.complete(model, self.options):
            require_present(self.sup.plan.model_path, model)
            return False
        assert self.owner is not None
        self.owner.move(Phase.PULLING)
        self.sup.note(f"pulling {model.id} from {model.source} before launch")
        Download(self.sup).run()
        # The plan named the copy the offline lookup found before the pull; the pull may
        # have rejected it (and fetched a verified one into our cache): plan again, on the
        # same port, so the engine runs on what was verified.
        self.sup.replan()
        require_present(self.sup.plan.model_path, model)
        return True

    # --- the engine ---------------------------------------------------------------------

    def _start_and_wait(self) -> Outcome:
        assert self.owner is not None
        stamp = time.strftime("%Y-%m-%d %H:%M:%S")
        self.sup.note(f"starting {self.profile.name} at {stamp}: {render.shell_line(self.launch)}")
        if self.owner.record and self.owner.record.phase is not Phase.STARTING:
            self.owner.move(Phase.STARTING, next_attempt_at=None)
        engine = self.sup.spawn_engine()
        self.owner.update(engine_proc=procs.identify(engine.pid), started_at=time.time())
        started = time.monotonic()
        outcome = self._wait_ready(started)
        if outcome.kind == "ready":
            self._announce(time.monotonic() - started)
        return outcome

    def _wait_ready(self, started: float) -> Outcome:
        budget = self.options.timeout_s
        probe = self._probe(HEALTH_TIMEOUT)
        generating: Background | None = None
        healthy = False
        try:
            while True:
                self.ticker.check()
                self.sup.ensure_guardian()
                self._check_peers()
                code = self._engine_exit()
                if code is not None:
                    return Outcome("exited", code)
                healthy = healthy or probe.healthy()
                if healthy and not self.options.probe and self._peers_ready():
                    return Outcome("ready")
                if healthy and self._peers_ready():
                    generating = generating or Background(self._probe(PROBE_TIMEOUT).generate_one)
                    if generating.done:
                        outcome = _judge(generating.result())
                        if outcome is not None:
                            return outcome
                        generating = None  # "wait": ask again
                elapsed = time.monotonic() - started
                if elapsed > budget:
                    return Outcome("timeout")
                name = self.profile.name
                self.ticker.tick(f"starting {name} … {elapsed:.0f} s (budget {budget:g} s)")
        finally:
            probe.close()

    def _probe(self, timeout: float) -> Probe:
        return Probe(
            self.launch.base_url,
            self.launch.health_path,
            model=self.profile.served_model_name,
            api_key=self.sup.api_key,
            timeout=timeout,
        )

    # --- hooks for a multi-node deployment's head (multinode.py) -------------------------

    def _check_peers(self) -> None:
        """Raise if a node this deployment needs is gone."""

    def _peers_ready(self) -> bool:
        return True

    def _waiting_for(self) -> str:
        """What readiness still waits for, besides the engine (for the timeout message)."""
        return ""

    def _serve(self) -> Outcome:
        while True:
            self.sup.ensure_guardian()
            self._check_peers()
            code = self._engine_exit()
            if code is not None:
                return Outcome("exited", code, "after being ready")
            self.ticker.tick(None, 0.1)

    def _engine_exit(self) -> int | None:
        engine = self.sup.engine
        return None if engine is None else engine.poll()

    def _announce(self, took: float) -> None:
        assert self.owner is not None
        self.sup.sample(now=True)  # what serves is known to the guardian before "ready"
        self.owner.move(Phase.READY, ready_at=time.time())
        url = self.launch.base_url
        how = f"llmdeploy down {self.profile.name}" if self.options.detached else "Ctrl-C"
        self.ticker.console_clear()
        self.sup.note(
            f"ready: {self.profile.name} serves {self.profile.served_model_name!r} at {url}/v1 "
            f"after {took:.1f} s (stop: {how})"
        )

    # --- after the engine ---------------------------------------------------------------

    def _restart_or_fail(self, outcome: Outcome) -> None:
        assert self.owner is not None
        failure = self._describe(outcome)
        left = self.sup.stop_processes()  # what the engine left behind goes with it
        if left:
            raise StartError(f"{failure}; and {', '.join(p.label() for p in left)} survived")
        now = time.time()
        decision = restarts.decide(self.profile.restart, self.history, now)
        if not decision.restart:
            self._give_up(failure, decision)
        self.history.append(now)
        self.sup.note(
            f"{failure}; restarting in {decision.delay:g} s "
            f"({decision.in_window}/{self.profile.restart.max_restarts} "
            f"within {self.profile.restart.window_s:g} s)"
        )
        self.owner.move(
            Phase.RESTARTING, restarts=len(self.history), next_attempt_at=now + decision.delay
        )
        self.ticker.sleep(decision.delay, f"restarting {self.profile.name} in {decision.delay:g} s")

    def _give_up(self, failure: str, decision: restarts.Decision) -> None:
        tail = self.sup.run_tail()
        found = diagnosis.diagnose(tail)
        message = failure + (f" — {found}" if found else "")
        if self.profile.restart.policy == "on-failure":
            message += f"; {decision.why}"
        details = None
        if not self.options.detached:  # the detached parent has streamed them already
            shown = "\n".join("  | " + line for line in tail)
            details = f"last lines of {self.sup.log_path}:\n{shown}"
        raise StartError(
            message, details=details, hint=f"full log: llmdeploy logs {self.profile.name}"
        )

    def _describe(self, outcome: Outcome) -> str:
        if outcome.kind == "exited":
            when = f" {outcome.text}" if outcome.text else " while starting"
            return f"engine exited with code {outcome.code}{when}"
        if outcome.kind == "timeout":
            return (
                f"engine not ready after {self.options.timeout_s:g} s{self._waiting_for()} "
                "(raise readiness.timeout_s or pass --timeout)"
            )
        return f"engine refused the probe request (HTTP {outcome.code}): {outcome.text}"
