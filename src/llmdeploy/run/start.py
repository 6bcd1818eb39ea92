"""Bringing a profile up, in the foreground or in the background: what `up` calls, and
what commands that need a deployment of their own (ephemeral.py) call — the same core,
never another command."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from llmdeploy import paths
from llmdeploy.console import Console, LogFollower
from llmdeploy.engines import planning
from llmdeploy.engines.planning import Plan
from llmdeploy.profile import distributed, load, shipped
from llmdeploy.profile.model import Profile
from llmdeploy.run import detach
from llmdeploy.run.signals import SignalCapture
from llmdeploy.run.state import Registry
from llmdeploy.run.supervisor import RunOptions, Supervisor
from llmdeploy.run.waits import Ticker


@dataclass(frozen=True)
class Prepared:
    path: Path
    profile: Profile
    options: RunOptions


def prepare(
    argument: str,
    *,
    timeout: float | None = None,
    probe: bool = True,
    grace: float = 15.0,
    gpu_check: bool = True,
    offline: bool = False,
    node_rank: int = 0,
    head: str | None = None,
) -> Prepared:
    """Load and check everything that can be checked before anything starts (a missing
    API key variable fails here, not in the background)."""
    path = shipped.resolve(argument)
    profile = distributed.node_profile(load.load(path), node_rank, head)
    planning.api_key(profile, os.environ)
    options = RunOptions(
        run_id=detach.new_run_id(),
        timeout_s=timeout if timeout is not None else profile.readiness.timeout_s,
        cache=str(paths.cache_dir()),
        probe=probe,
        grace=grace,
        gpu_check=gpu_check,
        offline=offline,
        node_rank=node_rank,
        head=head,
    )
    return Prepared(path, profile, options)


def foreground(prepared: Prepared, registry: Registry | None = None) -> int:
    """Supervise in this process; Ctrl-C stops everything (exit 130)."""
    registry = registry or Registry()
    profile = prepared.profile
    plan: Plan = _plan(prepared)
    follower = LogFollower(registry.log_path(profile.name), from_end=True)
    with SignalCapture() as signals:
        ticker = Ticker(
            registry,
            signals,
            console=Console(),
            follower=follower,
            secrets=dict(plan.launch.secrets),
        )
        supervisor = Supervisor(
            plan, prepared.path, prepared.options, ticker, planning.api_key(profile, os.environ)
        )
        return supervisor.run()


def background(
    prepared: Prepared, registry: Registry | None = None, *, tie: detach.Tie | None = None
) -> int:
    """Start the supervisor in the background; return once ready (0) or failed (its code)."""
    plan = _plan(prepared)
    with SignalCapture() as signals:
        return detach.start(
            plan,
            prepared.path,
            prepared.options,
            registry=registry or Registry(),
            console=Console(),
            signals=signals,
            tie=tie,
        )


def _plan(prepared: Prepared) -> Plan:
    options = prepared.options
    return planning.make_plan(
        prepared.profile,
        environ=os.environ,
        cache=Path(options.cache),
        node_rank=options.node_rank,
        head=options.head,
    )
