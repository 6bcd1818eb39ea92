"""A routed deployment: replicas behind the router (SMG), all under the one supervisor.

    start every replica and the router ─▶ each ready (health + probe), then one request
    answered through the router ─▶ READY ─▶ watch: a replica that exits is restarted under
    the restart policy while the router serves through the others; `scale` adds replicas
    (admitted by the router once ready) or drains and stops them.

Before the deployment is first ready any member that cannot start fails it (it never
had the shape asked for); after, a replica with no restart left is marked failed and the
others go on serving — the deployment fails only when the router or every replica is gone.
"""

from __future__ import annotations

import secrets
import time
from dataclasses import replace

from llmdeploy.engines import planning, render, router
from llmdeploy.engines.base import Launch
from llmdeploy.errors import StartError
from llmdeploy.run import diagnosis, procs, restarts, scaling
from llmdeploy.run.lifecycle import Lifecycle
from llmdeploy.run.members import (
    ROUTER,
    Member,
    MemberPhase,
    ReadinessCheck,
    is_replica,
    member_order,
    readiness_check,
    replica_index,
    replica_name,
)
from llmdeploy.run.phases import Phase
from llmdeploy.run.routing import RouterAdmin, RouterError

# The router answers its control plane at once; a replica it keeps refusing this long is
# treated as failed rather than waited for without end.
ADMIT_TIMEOUT = 30.0


class Fleet(Lifecycle):
    def run(self) -> int:
        self._check_machine()
        if self._ensure_model():
            self._check_machine()
        self._setup()
        try:
            while True:
                self.ticker.check()
                self.sup.ensure_guardian()
                changed = self._watch()
                changed = self._admit() or changed
                changed = self._scale() or changed
                if changed:
                    self._record_members()
                self._check_service()
                self.ticker.tick(None if self.ready_once else self._progress(), 0.1)
        finally:
            for member in self.members.values():
                member.end_check()
            if self.service is not None:
                self.service.cancel()
            self.admin.close()

    def _setup(self) -> None:
        """The members as planned, the router's control-plane key, every one spawned."""
        plan = self.sup.plan
        self.members: dict[str, Member] = {}
        for index, launch in enumerate(plan.replicas):
            self._add(replica_name(index), launch)
        # A key made for this run: only this supervisor may add or remove replicas.
        admin_key = secrets.token_urlsafe(24)
        router_launch = replace(
            plan.launch,
            env={**plan.launch.env, router.ADMIN_KEY_VAR: admin_key},
            secrets={**plan.launch.secrets, admin_key: "$" + router.ADMIN_KEY_VAR},
        )
        self._add(ROUTER, router_launch)
        self.admin = RouterAdmin(plan.launch.base_url, admin_key, self.sup.api_key)
        self.admitted: set[str] = set()  # replicas the running router sends requests to
        self.admit_errors: dict[str, tuple[float, str]] = {}  # since when, why
        self.service: ReadinessCheck | None = None  # a request through the router
        self.service_started = 0.0
        self.desired = self.profile.replicas
        self.scale_seen: scaling.ScaleRequest | None = None
        self.ready_once = False
        assert self.owner is not None
        self.owner.move(Phase.STARTING, desired_replicas=self.desired)
        stamp = time.strftime("%Y-%m-%d %H:%M:%S")
        self.sup.note(
            f"starting {self.profile.name} at {stamp}: "
            f"{len(plan.replicas)} replica(s) behind the router"
        )
        for member in list(self.members.values()):
            self._spawn(member)
        self.started = time.monotonic()

    # --- members -------------------------------------------------------------------------

    def _add(self, name: str, launch: Launch) -> Member:
        member = Member(
            name=name,
            launch=launch,
            tag=f"{self.sup.tag}/{name}",
            log_path=self.sup.registry.member_log_path(self.profile.name, name),
        )
        self.members[name] = member
        return member

    def _spawn(self, member: Member) -> None:
        self.sup.note(f"[{member.name}] starting: {render.shell_line(member.launch)}")
        member.log_path.touch()
        self.sup.spawn_member(member)
        member.phase, member.started = MemberPhase.STARTING, time.monotonic()
        member.next_attempt = member.reason = None
        is_router = member.name == ROUTER
        model = self.profile.served_model_name
        # The router is judged by a request through it once replicas are admitted.
        member.begin_check(model, self.sup.api_key, self.options.probe and not is_router)
        if is_router:
            self.admin.forget()
            self.admitted.clear()
            record = self.owner.record if self.owner else None
            if record is not None and record.phase is Phase.RESTARTING:
                assert self.owner is not None
                self.owner.move(Phase.STARTING, next_attempt_at=None)
        self._record_members()

    def _replicas(self) -> list[Member]:
        return [m for n, m in self.members.items() if n != ROUTER]

    def _ready(self) -> list[Member]:
        return [m for m in self._replicas() if m.phase is MemberPhase.READY]

    def _watch(self) -> bool:
        """One look at every member: exits, readiness, backoffs and drains that are due."""
        changed = False
        now = time.monotonic()
        for member in list(self.members.values()):
            if member.phase is MemberPhase.FAILED:
                continue
            if member.phase is MemberPhase.RESTARTING:
                if member.next_attempt is not None and now >= member.next_attempt:
                    if is_replica(member.name):
                        # A new port, so a new URL: SMG finishes removing the old entry in
                        # the background by URL, and would take a same-URL successor with it.
                        member.launch = self._replica_launch(replica_index(member.name))
                    self._spawn(member)
                continue
            code = member.exit_code()
            if member.phase is MemberPhase.DRAINING:
                due = member.drain_until is not None and now >= member.drain_until
                # One that ends while draining was on its way out anyway: never restarted.
                if code is not None or due:
                    self._retire(member)
                    changed = True
            elif code is not None:
                self._exited(member, f"exited with code {code}")
                changed = True
            elif member.phase is MemberPhase.STARTING:
                changed = self._starting(member) or changed
        return changed

    def _starting(self, member: Member) -> bool:
        check = member.check
        if check is not None and check.verdict == "ready":
            member.end_check()
            member.phase = MemberPhase.READY
            self.sup.note(f"[{member.name}] up after {member.age():.1f} s")
            return True
        if check is not None and check.verdict is not None:
            self._exited(member, check.verdict)
            return True
        if member.age() > self.options.timeout_s:
            self._exited(member, f"not ready after {self.options.timeout_s:g} s")
            return True
        return False

    def _admit(self) -> bool:
        """Add every ready replica the running router does not know yet; one the router
        keeps refusing for ADMIT_TIMEOUT counts as failed (restart policy)."""
        if self.members[ROUTER].phase is not MemberPhase.READY:
            return False
        changed = False
        for member in self._ready():
            if member.name in self.admitted:
                continue
            try:
                self.admin.add(member.url)
            except RouterError as exc:
                since = self.admit_errors.setdefault(member.name, (time.monotonic(), str(exc)))[0]
                if time.monotonic() - since > ADMIT_TIMEOUT:
                    del self.admit_errors[member.name]
                    self._exited(member, f"the router did not admit it: {exc}")
                    changed = True
                continue
            self.admit_errors.pop(member.name, None)
            self.admitted.add(member.name)
            self.sup.note(f"[router] sends requests to {member.name} ({member.url})")
            changed = True
        return changed

    def _dismiss(self, member: Member, *, drain: bool = False) -> None:
        """No new requests to this replica (it drains, or it is gone)."""
        if member.name not in self.admitted:
            return
        self.admitted.discard(member.name)
        try:
            self.admin.remove(member.url, drain=drain)
        except RouterError as exc:
            self.sup.note(f"[router] could not remove {member.name}: {exc}")

    def _check_service(self) -> None:
        """Ready = the router up, the replicas admitted, and a request answered through it
        (every replica the first time; after, a router restart needs one)."""
        if self.owner is None or self.owner.record is None:
            return
        phase = self.owner.record.phase
        if phase is Phase.READY or self.members[ROUTER].phase is not MemberPhase.READY:
            return
        replicas = self._replicas()
        wanted = replicas if not self.ready_once else self._ready()
        if not wanted or any(m.name not in self.admitted for m in wanted):
            return
        if self.service is None:
            self.service = readiness_check(
                self.sup.plan.launch.base_url,
                router.READINESS_PATH,
                self.profile.served_model_name,
                self.sup.api_key,
                probe=True,
            )
            self.service_started = time.monotonic()
            return
        verdict = self.service.verdict
        if verdict is None and time.monotonic() - self.service_started > self.options.timeout_s:
            self.service.cancel()
            verdict = f"did not serve through its replicas within {self.options.timeout_s:g} s"
        if verdict is None:
            return
        self.service = None
        if verdict != "ready" and not self.ready_once:
            raise StartError(
                f"the router {verdict}", hint=f"llmdeploy logs {self.profile.name} --router"
            )
        if verdict != "ready":  # a restarted router that does not serve: restart it again
            self._exited(self.members[ROUTER], verdict)
            return
        if not self.ready_once:
            self.ready_once = True
            self._announce(time.monotonic() - self.started)
        else:
            self.owner.move(Phase.READY, ready_at=time.time())
            self.sup.note(f"[router] serving again through {len(self._ready())} replica(s)")

    # --- failures -----------------------------------------------------------------------

    def _exited(self, member: Member, why: str) -> None:
        """A member ended (or will not start): sweep what it left, restart or give up."""
        member.end_check()
        failure = f"[{member.name}] {why}"
        self._dismiss(member)  # no new requests to a replica that is gone
        if member.name == ROUTER and self.service is not None:
            self.service.cancel()
            self.service = None
        left = self._stop_member(member)
        if left:
            raise StartError(f"{failure}; and {', '.join(p.label() for p in left)} survived")
        now = time.time()
        decision = restarts.decide(self.profile.restart, member.history, now)
        if not decision.restart:
            self._member_gives_up(member, failure, decision)
            return
        member.history.append(now)
        member.phase = MemberPhase.RESTARTING
        member.next_attempt = time.monotonic() + decision.delay
        self.sup.note(
            f"{failure}; restarting in {decision.delay:g} s "
            f"({decision.in_window}/{self.profile.restart.max_restarts} "
            f"within {self.profile.restart.window_s:g} s)"
        )
        record = self.owner.record if self.owner else None
        if member.name == ROUTER and record is not None and record.phase is Phase.READY:
            assert self.owner is not None
            self.owner.move(
                Phase.RESTARTING, restarts=len(member.history), next_attempt_at=now + decision.delay
            )

    def _member_gives_up(self, member: Member, failure: str, decision: restarts.Decision) -> None:
        tail = diagnosis.tail(member.log_path, 40)
        found = diagnosis.diagnose(tail)
        message = failure + (f" — {found}" if found else "")
        if self.profile.restart.policy == "on-failure":
            message += f"; {decision.why}"
        member.phase, member.reason = MemberPhase.FAILED, message
        others = [m for m in self._replicas() if m.phase is not MemberPhase.FAILED]
        if member.name == ROUTER or not self.ready_once or not others:
            shown = "\n".join("  | " + line for line in tail)
            which = "--router" if member.name == ROUTER else f"--replica {member.name[1:]}"
            raise StartError(
                message,
                details=None
                if self.options.detached
                else f"last lines of {member.log_path}:\n{shown}",
                hint=f"full log: llmdeploy logs {self.profile.name} {which}",
            )
        self.sup.note(f"{message}; {len(others)} replica(s) go on serving")

    def _stop_member(self, member: Member) -> list[procs.Proc]:
        signals = self.ticker.signals
        sessions = [member.proc] if member.proc else []
        left = procs.stop(
            lambda: procs.find(lambda v: v == member.tag, sessions=sessions),
            self.sup.grace,
            escalate=lambda: bool(signals.received),
        )
        if member.popen is not None:
            member.popen.poll()
        return left

    # --- scale --------------------------------------------------------------------------

    def _scale(self) -> bool:
        request = scaling.ScaleRequest.read(self.sup.registry, self.profile.name)
        if request is None or request == self.scale_seen or not self.ready_once:
            return False
        self.scale_seen = request
        if request.run_id != self.options.run_id:
            return False
        assert self.owner is not None
        refused = scaling.refusal(self.profile, request.replicas)
        if refused:
            self.sup.note(f"scale: {request.replicas} replica(s) refused: {refused}")
            # The shape asked stays what it was: a refused command changes nothing.
            note = scaling.refused_note(request.replicas, refused)
            self.owner.update(scale_refused=note)
            return True
        self.desired = request.replicas
        self.sup.note(f"scale: {self.desired} replica(s) asked")
        self.owner.update(desired_replicas=self.desired, scale_refused=None)
        # A failed replica is gone for good: it leaves at any scale (nothing to drain), so
        # the count asked is made of replicas that run — a new one replaces it if needed.
        for member in self._replicas():
            if member.phase is MemberPhase.FAILED:
                self._retire(member)
        live = sorted(
            (m for m in self._replicas() if m.phase is not MemberPhase.DRAINING),
            key=lambda m: replica_index(m.name),
        )
        for member in live[self.desired :]:
            self._drain(member)
        taken = {replica_index(m.name) for m in self._replicas()}
        index = 0
        for _ in range(self.desired - len(live)):
            while index in taken:
                index += 1
            taken.add(index)
            self._spawn(self._add(replica_name(index), self._replica_launch(index)))
        return True

    def _replica_launch(self, index: int) -> Launch:
        plan = self.sup.plan
        assert plan.context is not None
        port = planning.free_ports("127.0.0.1", 1, avoid={m.port for m in self.members.values()})
        return planning.replica_launch(self.profile, plan.context, index, port[0])

    def _drain(self, member: Member) -> None:
        member.end_check()
        if member.phase is MemberPhase.RESTARTING:
            # Waiting out a backoff, no process: nothing to drain, and no restart either.
            self._retire(member)
            return
        self._dismiss(member, drain=True)
        member.phase = MemberPhase.DRAINING
        member.drain_until = time.monotonic() + self.profile.router_settings.drain_s
        self.sup.note(f"[{member.name}] draining for {self.profile.router_settings.drain_s:g} s")

    def _retire(self, member: Member) -> None:
        left = self._stop_member(member)
        if left:
            raise StartError(
                f"[{member.name}] processes survived the stop: "
                + ", ".join(p.label() for p in left)
            )
        del self.members[member.name]
        self.admit_errors.pop(member.name, None)
        self.sup.note(f"[{member.name}] stopped (scaled down)")

    # --- record and console --------------------------------------------------------------

    def _record_members(self) -> None:
        if self.owner is not None and self.owner.record is not None:
            ordered = sorted(self.members.values(), key=member_order)
            self.owner.update(members=[m.state() for m in ordered])

    def _progress(self) -> str:
        ready = sum(m.phase is MemberPhase.READY for m in self._replicas())
        elapsed = time.monotonic() - self.started
        return (
            f"starting {self.profile.name} … {elapsed:.0f} s, "
            f"{ready}/{len(self._replicas())} replicas ready"
        )
