"""`llmdeploy scale NAME N`: the request `scale` leaves for a running deployment's
supervisor (which looks for it at every tick, fleet.py), and the wait for its outcome.

The request names the run it is for, so a request left for an earlier run of the same
name is never applied to a new one.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass

from llmdeploy.run.state import Registry, atomic_write


@dataclass(frozen=True)
class ScaleRequest:
    run_id: str
    replicas: int
    asked_at: float

    @classmethod
    def read(cls, registry: Registry, name: str) -> ScaleRequest | None:
        try:
            data = json.loads(registry.scale_path(name).read_text())
            request = cls(str(data["run_id"]), int(data["replicas"]), float(data["asked_at"]))
        except (OSError, ValueError, KeyError, TypeError):
            return None
        return request if request.replicas >= 1 else None

    def write(self, registry: Registry, name: str) -> None:
        atomic_write(registry.scale_path(name), json.dumps(asdict(self)))
