"""The registry of deployments: one JSON record and one lock per name, under the
user's XDG state directory (or LLMDEPLOY_STATE_DIR).

    <state>/deployments/<name>.json   the record, replaced atomically
    <state>/locks/<name>.lock         flock'ed by the supervisor (and its guardian)
    <state>/logs/<name>.log           the engine's output and the supervisor's notes

The lock is the truth about liveness: the kernel releases it when the last
process holding it dies, even by SIGKILL, so a record whose lock is free is stale.
"""

from __future__ import annotations

import fcntl
import json
import os
import tempfile
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any, Literal

from llmdeploy import paths
from llmdeploy.errors import ConflictError, NotFoundError

Phase = Literal["starting", "ready", "restarting", "stopping", "failed"]


@dataclass(frozen=True)
class Record:
    name: str
    profile: str
    engine: str
    model: str
    served_model_name: str
    base_url: str
    health_path: str
    supervisor_pid: int
    engine_pid: int  # also the engine's session id
    log: str
    started_at: float
    phase: Phase = "starting"
    ready_at: float | None = None
    restarts: int = 0
    api_key_env: str | None = None  # the variable holding the key, never the key
    detached: bool = False

    def with_(self, **changes: Any) -> Record:
        return replace(self, **changes)


class Registry:
    def __init__(self, root: Path | None = None):
        self.root = root or paths.state_dir()

    def _dir(self, kind: str) -> Path:
        path = self.root / kind
        path.mkdir(parents=True, exist_ok=True)
        return path

    def log_path(self, name: str) -> Path:
        return self._dir("logs") / f"{name}.log"

    def record_path(self, name: str) -> Path:
        return self._dir("deployments") / f"{name}.json"

    def save(self, record: Record) -> None:
        target = self.record_path(record.name)
        fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=f".{record.name}.", suffix=".tmp")
        with os.fdopen(fd, "w") as handle:
            json.dump(asdict(record), handle, indent=2)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, target)  # readers see the old record or the new one, never half

    def load(self, name: str) -> Record:
        try:
            data = json.loads(self.record_path(name).read_text())
        except FileNotFoundError:
            raise NotFoundError(
                f"no deployment named {name!r}", hint="`llmdeploy status` lists them"
            ) from None
        except (OSError, ValueError) as exc:
            raise NotFoundError(f"the record of {name!r} is unreadable: {exc}") from None
        known = set(Record.__dataclass_fields__)
        return Record(**{k: v for k, v in data.items() if k in known})

    def names(self) -> list[str]:
        return sorted(p.stem for p in self._dir("deployments").glob("*.json"))

    def remove(self, name: str) -> None:
        self.record_path(name).unlink(missing_ok=True)

    # --- liveness -------------------------------------------------------------

    def acquire(self, name: str) -> int:
        """Take the deployment's lock for this process's life; return its fd.
        Refuses while another supervisor (or its guardian) holds it."""
        fd = os.open(self._dir("locks") / f"{name}.lock", os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            holder = self._holder(name)
            raise ConflictError(
                f"deployment {name!r} is already running{holder}",
                hint=f"`llmdeploy down {name}` first, or give this profile another name",
            ) from None
        os.set_inheritable(fd, False)
        return fd

    def _holder(self, name: str) -> str:
        try:
            return f" (supervisor pid {self.load(name).supervisor_pid})"
        except NotFoundError:
            return ""

    def is_live(self, name: str) -> bool:
        """True while some process holds the deployment's lock."""
        path = self._dir("locks") / f"{name}.lock"
        if not path.exists():
            return False
        fd = os.open(path, os.O_RDWR)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return True
        finally:
            os.close(fd)  # closing drops our probe lock, if we got it
        return False
