"""A deployment's phases and the only transitions between them (one table).

    preparing ──▶ pulling ──▶ starting ──▶ ready ──▶ restarting ──▶ starting …
        │            │           │           │            │
        └────────────┴───────────┴───────────┴────────────┴──▶ stopping ──▶ stopped
                                                                  failed ◀──┘ (and from any
                                                                               live phase)
"""

from __future__ import annotations

import enum

from llmdeploy.errors import LlmdeployError


class Phase(str, enum.Enum):
    PREPARING = "preparing"  # lock taken, record written, guardian up; checks run
    PULLING = "pulling"  # the model downloads (cancellable)
    STARTING = "starting"  # engine spawned, waiting for health + probe
    READY = "ready"  # serving
    RESTARTING = "restarting"  # engine exited; waiting out the backoff
    STOPPING = "stopping"  # processes being stopped
    STOPPED = "stopped"  # terminal: nothing left (the record is then removed)
    FAILED = "failed"  # terminal: kept, with its reason, until `down` removes it

    @property
    def terminal(self) -> bool:
        return self in (Phase.STOPPED, Phase.FAILED)


_LIVE = {Phase.PREPARING, Phase.PULLING, Phase.STARTING, Phase.READY, Phase.RESTARTING}

TRANSITIONS: dict[Phase, frozenset[Phase]] = {
    Phase.PREPARING: frozenset({Phase.PULLING, Phase.STARTING, Phase.STOPPING, Phase.FAILED}),
    Phase.PULLING: frozenset({Phase.PREPARING, Phase.STARTING, Phase.STOPPING, Phase.FAILED}),
    Phase.STARTING: frozenset({Phase.READY, Phase.RESTARTING, Phase.STOPPING, Phase.FAILED}),
    Phase.READY: frozenset({Phase.RESTARTING, Phase.STOPPING, Phase.FAILED}),
    Phase.RESTARTING: frozenset({Phase.STARTING, Phase.STOPPING, Phase.FAILED}),
    Phase.STOPPING: frozenset({Phase.STOPPED, Phase.FAILED}),
    Phase.STOPPED: frozenset(),
    Phase.FAILED: frozenset({Phase.STOPPING}),  # `down` of a failed deployment
}
assert set(TRANSITIONS) == set(Phase)
assert all(Phase.FAILED in TRANSITIONS[p] for p in _LIVE)


class WrongPhase(LlmdeployError):
    """A transition the table does not allow: a bug in the caller, named precisely."""


def check(current: Phase, new: Phase) -> None:
    if new not in TRANSITIONS[current]:
        allowed = ", ".join(sorted(p.value for p in TRANSITIONS[current])) or "nothing"
        raise WrongPhase(
            f"deployment is {current.value}, cannot become {new.value} (allowed: {allowed})"
        )
