"""One node's part of a multi-node deployment (`up PROFILE --node-rank K`), supervised
like a single engine, plus the tie between the nodes' supervisors (nodelink.py):

    node 0 (head): listen for the other nodes' supervisors ─▶ the engine (rank 0)
        ready = every node joined + health + one request; a node lost ─▶ failed
    node K:        join the head's supervisor ─▶ the engine (rank K, headless)
        ready = the head says so; head gone (or stopped) ─▶ this node stops its part
"""

from __future__ import annotations

import os
import time

from llmdeploy.engines import render
from llmdeploy.engines.base import Launch
from llmdeploy.errors import StartError
from llmdeploy.run import preflight
from llmdeploy.run.lifecycle import Background, Lifecycle, Outcome
from llmdeploy.run.members import Member, MemberPhase, MemberState
from llmdeploy.run.nodelink import HeadLink, WorkerLink
from llmdeploy.run.phases import Phase
from llmdeploy.run.readiness import Answer
from llmdeploy.run.waits import Interrupted


class HeadStopped(Exception):
    """The head stopped cleanly (`down`): a node ends its part without failing."""

    def __init__(self, why: str):
        super().__init__(why)
        self.why = why


def _ranks(ranks: list[int]) -> str:
    return ", ".join(str(k) for k in ranks)


class HeadLifecycle(Lifecycle):
    """Node 0: the one clients talk to."""

    def run(self) -> int:
        dist = self.profile.distributed_settings
        host = self.options.head or dist.head
        try:
            self.link = HeadLink(
                host, dist.control, self.profile.nodes, self.options.run_id, dist.head_grace_s
            )
        except OSError as exc:
            raise StartError(
                f"distributed.control_port {dist.control} on {host}: cannot listen there "
                f"({exc.strerror or exc})",
                hint="the other nodes' llmdeploy meet node 0's there: free it or pick another",
            ) from None
        self.joined: set[int] = set()
        self.ray: Member | None = None
        try:
            return super().run()
        except Interrupted:
            self.link.close("node 0 was stopped")
            raise
        finally:
            self.link.close()

    def _check_peers(self) -> None:
        for note in self.link.take_notes():  # peers on the control port that were no node
            self.sup.note(f"control port: {note}")
        joined = {k for k in range(1, self.profile.nodes) if k not in self.link.missing()}
        if joined != self.joined:  # `status` on node 0 lists the nodes it knows
            self.joined = joined
            self._record_nodes()
        lost = self.link.lost()
        if lost:
            raise StartError(
                f"node(s) {_ranks(lost)} left the deployment (their llmdeploy stopped, died "
                "or became unreachable); tensor shards cannot serve without them",
                hint="`llmdeploy status` on that node says why",
            )

    def _peers_ready(self) -> bool:
        return not self.link.missing()

    def _record_nodes(self) -> None:
        assert self.owner is not None
        ray = [self.ray.state()] if self.ray is not None else []
        nodes = [MemberState(f"node{k}", 0, MemberPhase.READY) for k in sorted(self.joined)]
        self.owner.update(members=ray + nodes)

    def _waiting_for(self) -> str:
        missing = self.link.missing()
        if not missing:
            return ""
        dist = self.profile.distributed_settings
        return (
            f"; node(s) {_ranks(missing)} never joined (run `llmdeploy up PROFILE "
            f"--node-rank K --head {self.options.head or dist.head}` on each)"
        )

    def _announce(self, took: float) -> None:
        super()._announce(took)
        self.link.tell({"ready": 1})

    def _start_and_wait(self) -> Outcome:
        if self.sup.plan.ray_node is not None:
            self._start_ray(self.sup.plan.ray_node)
        return super()._start_and_wait()

    def _start_ray(self, launch: Launch) -> None:
        """Node 0 on Ray: the head node, then wait until every node's Ray joined it."""
        member = Member(
            name="ray",
            launch=launch,
            tag=f"{self.sup.tag}/ray",
            log_path=self.sup.registry.member_log_path(self.profile.name, "ray"),
        )
        self.sup.note(f"[ray] starting: {render.shell_line(launch)}")
        member.log_path.touch()
        self.sup.spawn_member(member)
        self.ray = member
        self._record_nodes()
        started, budget = time.monotonic(), self.profile.distributed_settings.join_timeout_s
        count: Background | None = None
        while True:
            self.ticker.check()
            self.sup.ensure_guardian()
            self._check_peers()
            code = member.exit_code()
            if code is not None:
                raise StartError(
                    f"the Ray head exited with code {code}", hint=f"its log: {member.log_path}"
                )
            count = count or Background(lambda: _ray_nodes(launch))
            if count.done:
                if count.result().status >= self.profile.nodes:
                    self.sup.note(f"[ray] {self.profile.nodes} nodes in the cluster")
                    member.phase = MemberPhase.READY
                    self._record_nodes()
                    return
                count = None
            waited = time.monotonic() - started
            if waited > budget:
                raise StartError(
                    f"the Ray cluster has not got {self.profile.nodes} nodes after "
                    f"{waited:.0f} s{self._waiting_for()}"
                )
            self.ticker.tick(f"waiting for {self.profile.nodes} Ray nodes … {waited:.0f} s")


class WorkerLifecycle(Lifecycle):
    """Node K > 0: a headless engine that serves through node 0."""

    def run(self) -> int:
        self._check_machine()
        if self._ensure_model():
            self._check_machine()
        self.link = self._join()
        try:
            self._welcomed()
            outcome = self._start_and_wait()
            if outcome.kind == "ready":
                outcome = self._serve()
            self._restart_or_fail(outcome)  # policy never (profile rules): raises
            return 1
        finally:
            self.link.close()

    def _check_machine(self) -> None:
        # A headless node listens on no HTTP port: only its GPUs are checked.
        self.ticker.check()
        if self.options.gpu_check:
            preflight.check_gpus(self.profile, preflight.query_gpus())

    def _join(self) -> WorkerLink:
        dist = self.profile.distributed_settings
        host = self.options.head or dist.head
        started = time.monotonic()
        while True:
            self.ticker.check()
            self.sup.ensure_guardian()
            sock = WorkerLink.connect(host, dist.control, timeout=1.0)
            if sock is not None:
                self.sup.note(f"joined node 0 at {host}:{dist.control}")
                return WorkerLink(
                    sock, self.options.node_rank, self.options.run_id, dist.head_grace_s
                )
            waited = time.monotonic() - started
            if waited > dist.join_timeout_s:
                raise StartError(
                    f"no node 0 at {host}:{dist.control} after {waited:.0f} s",
                    hint="start node 0 first (`llmdeploy up PROFILE` there), or check --head",
                )
            self.ticker.tick(f"waiting for node 0 at {host}:{dist.control} … {waited:.0f} s", 0.5)

    def _welcomed(self) -> None:
        """Node 0 answers a hello it refuses at once; wait a moment for that before
        starting an engine (a refused node would otherwise start one for nothing)."""
        deadline = time.monotonic() + 2.0
        while time.monotonic() < deadline and not self.link.heard_back():
            self.ticker.check()
            self.ticker.tick(None, 0.05)
        self._check_peers()

    def _check_peers(self) -> None:
        if self.link.refused is not None:
            raise StartError(f"node 0 refused this node: {self.link.refused}")
        if self.link.stopped is not None:
            raise HeadStopped(self.link.stopped)
        if self.link.head_lost():
            raise StartError(self._head_lost_why())

    def _head_lost_why(self) -> str:
        if self.link.heard_from_head():
            return (
                "node 0 is gone (its llmdeploy stopped, died or became unreachable); "
                "this node stopped its part"
            )
        # Whatever took the connection never spoke the link: another program on the
        # port, or a node 0 that hung before it could (a ping comes within a second).
        dist = self.profile.distributed_settings
        where = f"{self.options.head or dist.head}:{dist.control}"
        return (
            f"node 0 at {where} never answered like llmdeploy (another program on "
            "distributed.control_port, or node 0 hung); this node stopped its part"
        )

    def _wait_ready(self, started: float) -> Outcome:
        budget = self.options.timeout_s
        while True:
            self.ticker.check()
            self.sup.ensure_guardian()
            self._check_peers()
            code = self._engine_exit()
            if code is not None:
                return Outcome("exited", code)
            if self.link.ready:
                return Outcome("ready")
            elapsed = time.monotonic() - started
            if elapsed > budget:
                return Outcome("timeout")
            self.ticker.tick(
                f"node {self.options.node_rank} waits for the deployment "
                f"… {elapsed:.0f} s (budget {budget:g} s)"
            )

    def _announce(self, took: float) -> None:
        assert self.owner is not None
        self.sup.sample(now=True)  # what serves is known to the guardian before "ready"
        self.owner.move(Phase.READY, ready_at=time.time())
        self.ticker.console_clear()
        self.sup.note(
            f"ready: node {self.options.node_rank} of {self.profile.nodes} serves through "
            f"node 0 after {took:.1f} s"
        )


def _ray_nodes(head: Launch) -> Answer:
    """How many nodes the Ray cluster has alive (`ray status`), as Answer.status."""
    import re
    import subprocess

    program = head.argv[0]
    port = head.argv[head.argv.index("--port") + 1]
    host = head.argv[head.argv.index("--node-ip-address") + 1]
    try:
        done = subprocess.run(
            [program, "status", "--address", f"{host}:{port}"],
            capture_output=True,
            text=True,
            timeout=30,
            env={**os.environ, **head.env},
        )
    except (OSError, subprocess.TimeoutExpired):
        return Answer(0)
    active = done.stdout.split("Active:", 1)[-1].split("Pending:", 1)[0]
    return Answer(len(re.findall(r"^\s*\d+ node_", active, re.M)))
