"""`llmdeploy scale NAME N`: the request `scale` leaves for a running deployment's
supervisor (which looks for it at every tick, fleet.py), and the wait for its outcome.

The request names the run it is for, so a request left for an earlier run of the same
name is never applied to a new one.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass

from llmdeploy import jsontext
from llmdeploy.files import read_small
from llmdeploy.profile.model import Profile
from llmdeploy.profile.replicas import MAX_REPLICAS
from llmdeploy.run.members import ROUTER, MemberPhase
from llmdeploy.run.phases import Phase
from llmdeploy.run.state import MAX_REQUEST_BYTES, Record, Registry, atomic_write


@dataclass(frozen=True)
class ScaleRequest:
    run_id: str
    replicas: int
    asked_at: float

    @classmethod
    def read(cls, registry: Registry, name: str) -> ScaleRequest | None:
        try:
            data = jsontext.loads(read_small(registry.scale_path(name), MAX_REQUEST_BYTES))
            run_id, replicas, asked_at = data["run_id"], data["replicas"], data["asked_at"]
        except (OSError, ValueError, KeyError, TypeError):
            return None
        # Exactly what `write` makes, nothing coerced: `true` or "1" or 2.9 is not a
        # number of replicas somebody asked for (int() would take each as one).
        if not isinstance(run_id, str) or type(replicas) is not int:
            return None
        if type(asked_at) not in (int, float) or not 1 <= replicas <= MAX_REPLICAS:
            return None
        return cls(run_id, replicas, float(asked_at))

    def write(self, registry: Registry, name: str) -> None:
        atomic_write(registry.scale_path(name), json.dumps(asdict(self)))


@dataclass(frozen=True)
class Progress:
    done: bool
    text: str  # "2/3 replicas ready, 1 draining"


def progress(record: Record, replicas: int) -> Progress:
    """How far a deployment is towards `replicas` ready replicas and nothing else."""
    members = [m for m in record.members if m.name != ROUTER]
    ready = sum(m.phase is MemberPhase.READY for m in members)
    draining = sum(m.phase is MemberPhase.DRAINING for m in members)
    failed = sum(m.phase is MemberPhase.FAILED for m in members)
    text = f"{ready} ready, {replicas} wanted"
    if draining:
        text += f", {draining} draining"
    if failed:
        text += f", {failed} failed"
    done = (
        record.desired_replicas == replicas
        and ready == replicas
        and len(members) == replicas
        and record.phase is Phase.READY
    )
    return Progress(done, text)


def refused_note(replicas: int, why: str) -> str:
    """The record's `scale_refused`: the count refused goes with the reason, so the
    record's `desired_replicas` keeps the shape the deployment really has."""
    return f"{replicas}: {why}"


def refused(record: Record, replicas: int) -> str | None:
    """Why the supervisor refused `replicas` (the last request it refused), or None."""
    head, _, why = (record.scale_refused or "").partition(": ")
    return why if why and head == str(replicas) else None


def refusal(profile: Profile, replicas: int) -> str | None:
    """Why `replicas` cannot run (the GPUs the profile lists run out), or None."""
    ids = profile.resources.gpu_ids
    tp = profile.resources.tensor_parallel_size
    if ids is not None and replicas * tp > len(ids):
        return (
            f"{replicas} replicas x tensor_parallel_size {tp} = {replicas * tp} GPUs, "
            f"but the profile lists {len(ids)}"
        )
    return None
