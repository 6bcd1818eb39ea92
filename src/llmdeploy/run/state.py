"""Deployments on disk, and the one owner allowed to change them.

    <state>/deployments/<name>.json   the record, replaced atomically
    <state>/locks/<name>.lock         flock'ed by the owner (never deleted: no unlink race)
    <state>/logs/<name>.log           engine output and llmdeploy's notes, all runs
    <state>/requests/<name>.json      what `down` asks of a live owner (its grace)

A deployment exists from the moment its lock is taken. Whoever holds the lock is the
owner — the supervisor (and its guardian, which inherits the lock) or a `down` cleaning
up after both died — and only an `Owner` writes or removes records, every phase change
going through `phases.check`. Readers (`status`, a waiting `up --detach`) never lock,
so they can never make a starting `up` believe the deployment is already running;
they judge liveness by the owner's recorded (pid, start time).
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import re
import tempfile
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

from llmdeploy import jsontext, paths
from llmdeploy.errors import ConflictError, InputError, LlmdeployError, NotFoundError
from llmdeploy.files import read_small
from llmdeploy.run import phases, procs
from llmdeploy.run.members import MemberState
from llmdeploy.run.phases import Phase
from llmdeploy.run.procs import Proc

# A deployment name becomes a file name here: only what a profile's `name` allows, so
# `down ../../x` can never reach outside the state directory.
NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,62}$")
MAX_RECORD_BYTES = 1_000_000
MAX_REQUEST_BYTES = 4096  # a stop or scale request is a line of JSON


def check_name(name: str) -> str:
    if not NAME.match(name):
        raise InputError(
            f"{name!r} is not a deployment name",
            hint="names are letters, digits, '.', '_' and '-' (`llmdeploy status` lists them)",
        )
    return name


@dataclass(frozen=True)
class Record:
    name: str
    run_id: str
    phase: Phase
    profile: str
    engine: str
    model: str
    served_model_name: str
    base_url: str
    health_path: str
    log: str
    log_offset: int  # where this run's lines begin in the log
    started_at: float
    supervisor: Proc
    detached: bool = False
    guardian: Proc | None = None
    engine_proc: Proc | None = None
    api_key_env: str | None = None  # the variable holding the key, never the key
    ready_at: float | None = None
    restarts: int = 0
    next_attempt_at: float | None = None
    pull_done: int | None = None
    pull_total: int | None = None
    reason: str | None = None  # why it failed
    tail: list[str] = field(default_factory=list)  # its last log lines, when it failed
    updated_at: float = 0.0
    # A routed deployment's replicas and router (members.py); empty for one engine.
    members: list[MemberState] = field(default_factory=list)
    desired_replicas: int | None = None  # what `scale` last asked for
    scale_refused: str | None = None  # `N: why`: the last refused (desired_replicas as was)

    @property
    def sessions(self) -> list[Proc]:
        """The sessions its engine processes lead (each member's, for a routed one)."""
        found = [self.engine_proc] if self.engine_proc else []
        return found + [m.proc for m in self.members if m.proc is not None]

    @property
    def owners(self) -> list[Proc]:
        return [p for p in (self.supervisor, self.guardian) if p is not None]

    def owner_alive(self) -> bool:
        """An owner runs: the recorded (pid, start time), and an llmdeploy program."""
        return any(p.alive() and procs.runs_llmdeploy(p.pid) for p in self.owners)

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        data["phase"] = self.phase.value
        return data

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Record:
        known = set(cls.__dataclass_fields__)
        values = {k: v for k, v in data.items() if k in known}
        values["phase"] = Phase(values["phase"])
        for key in ("supervisor", "guardian", "engine_proc"):
            if values.get(key) is not None:
                values[key] = Proc(**values[key])
        values["members"] = [MemberState.from_json(m) for m in values.get("members") or []]
        record = cls(**values)
        if not isinstance(record.name, str) or not isinstance(record.supervisor, Proc):
            raise ValueError("wrong types")
        return record


@dataclass(frozen=True)
class Corrupt:
    """A record that cannot be read: listed as such, removable by `down`."""

    name: str
    problem: str


class Registry:
    def __init__(self, root: Path | None = None):
        self.root = root or paths.state_dir()

    def _dir(self, kind: str) -> Path:
        path = self.root / kind
        try:
            path.mkdir(parents=True, exist_ok=True, mode=0o700)
        except OSError as exc:
            raise LlmdeployError(
                f"cannot use the state directory {path}: {exc.strerror or exc}",
                hint="fix it, or point LLMDEPLOY_STATE_DIR elsewhere",
            ) from None
        return path

    def log_path(self, name: str) -> Path:
        return self._dir("logs") / f"{check_name(name)}.log"

    def member_log_path(self, name: str, member: str) -> Path:
        """A replica's or the router's own log ('@' cannot be part of a name)."""
        return self._dir("logs") / f"{check_name(name)}@{member}.log"

    def scale_path(self, name: str) -> Path:
        return self._dir("requests") / f"{check_name(name)}@scale.json"

    def record_path(self, name: str) -> Path:
        return self._dir("deployments") / f"{check_name(name)}.json"

    def request_path(self, name: str) -> Path:
        return self._dir("requests") / f"{check_name(name)}.json"

    @property
    def scope(self) -> str:
        """A short name for this state directory, part of every process tag."""
        import hashlib

        return hashlib.sha256(str(self.root.resolve()).encode()).hexdigest()[:12]

    def tag_prefix(self, name: str) -> str:
        """What the tags of every run of deployment `name` here begin with."""
        return f"{self.scope}/{check_name(name)}/"

    def names(self) -> list[str]:
        found = (p.stem for p in self._dir("deployments").glob("*.json"))
        return sorted(n for n in found if NAME.match(n))

    def read(self, name: str) -> Record | Corrupt | None:
        """The record, a Corrupt placeholder, or None if there is none. Never raises
        for bad content: one broken record must not break the others."""
        try:
            raw = read_small(self.record_path(name), MAX_RECORD_BYTES)
            if len(raw) > MAX_RECORD_BYTES:
                return Corrupt(name, "corrupt record (larger than any record)")
            text = raw.decode("utf-8")
        except FileNotFoundError:
            return None
        except (OSError, UnicodeDecodeError) as exc:
            return Corrupt(name, f"unreadable record ({type(exc).__name__})")
        try:
            record = Record.from_json(jsontext.loads(text))
        except (ValueError, TypeError, KeyError, AttributeError) as exc:
            return Corrupt(name, f"corrupt record ({type(exc).__name__}: {exc})"[:200])
        if record.name != name:
            return Corrupt(name, f"record names another deployment ({record.name!r})")
        return record

    def load(self, name: str) -> Record:
        found = self.read(name)
        if found is None:
            raise NotFoundError(
                f"no deployment named {name!r}", hint="`llmdeploy status` lists them"
            )
        if isinstance(found, Corrupt):
            raise NotFoundError(
                f"the record of {name!r} is {found.problem}",
                hint=f"`llmdeploy down {name}` removes it",
            )
        return found

    def is_live(self, name: str) -> bool:
        """A live deployment: its owner runs and it has not ended. Never locks."""
        found = self.read(name)
        return isinstance(found, Record) and not found.phase.terminal and found.owner_alive()

    def try_lock(self, name: str) -> int | None:
        """Take the deployment's lock (non-blocking); its fd, or None if it is held."""
        path = self._dir("locks") / f"{check_name(name)}.lock"
        try:
            fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW, 0o600)
        except OSError as exc:
            raise LlmdeployError(
                f"cannot open the lock {path}: {exc.strerror or exc}",
                hint="remove it if it is not a plain file; LLMDEPLOY_STATE_DIR moves the state",
            ) from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            return None
        os.set_inheritable(fd, False)
        return fd

    def own(self, name: str) -> Owner:
        """Become the deployment's owner to start it, or refuse naming who is — also
        when an earlier run's processes outlived both its supervisor and guardian (a new
        run must not overwrite the record `down` needs to find them; `port: auto` would
        otherwise let it start beside them)."""
        fd = self.try_lock(name)
        if fd is None:
            raise ConflictError(
                f"deployment {name!r} is already running{self._holder(name)}",
                hint=f"`llmdeploy down {name}` first, or give this profile another name",
            )
        prefix = self.tag_prefix(name)
        left = procs.find(lambda v: v.startswith(prefix))
        if left:
            os.close(fd)
            raise ConflictError(
                f"deployment {name!r} has processes left from an earlier run: "
                + ", ".join(p.label() for p in left[:5]),
                hint=f"`llmdeploy down {name}` stops them",
            )
        return Owner(self, name, fd)

    def _holder(self, name: str) -> str:
        found = self.read(name)
        if isinstance(found, Record) and found.owner_alive():
            return f" ({found.phase.value}, supervisor pid {found.supervisor.pid})"
        return " (another llmdeploy command holds it right now)"


class Owner:
    """The holder of a deployment's lock: the only writer of its record."""

    def __init__(self, registry: Registry, name: str, lock_fd: int):
        self.registry = registry
        self.name = name
        self.lock_fd = lock_fd
        self.record: Record | None = None

    def create(self, record: Record) -> None:
        assert record.name == self.name and record.phase is Phase.PREPARING
        self.record = record
        self._write()

    def move(self, new: Phase, **changes: Any) -> Record:
        """Change phase through the transition table (WrongPhase names both)."""
        assert self.record is not None
        phases.check(self.record.phase, new)
        return self.update(phase=new, **changes)

    def update(self, **changes: Any) -> Record:
        assert self.record is not None
        self.record = replace(self.record, **changes)
        self._write()
        return self.record

    def adopt(self, record: Record) -> None:
        """Take over a record whose owner died (the guardian, or `down`)."""
        self.record = record

    def remove(self) -> None:
        try:
            self.registry.record_path(self.name).unlink(missing_ok=True)
        except OSError as exc:
            raise LlmdeployError(f"cannot remove the record of {self.name!r}: {exc}") from None
        self.record = None
        # Requests are read only with the record's run id: one left behind (something
        # planted at its path that unlink cannot take) is never obeyed, so not an error.
        for request in (self.registry.request_path(self.name), self.registry.scale_path(self.name)):
            with contextlib.suppress(OSError):
                request.unlink(missing_ok=True)

    def release(self) -> None:
        if self.lock_fd >= 0:
            os.close(self.lock_fd)
            self.lock_fd = -1

    def _write(self) -> None:
        assert self.record is not None
        self.record = replace(self.record, updated_at=time.time())
        target = self.registry.record_path(self.name)
        try:
            atomic_write(target, json.dumps(self.record.to_json(), indent=2))
        except OSError as exc:
            raise LlmdeployError(
                f"cannot write the record {target}: {exc.strerror or exc}",
                hint="free some disk space (the state directory is LLMDEPLOY_STATE_DIR)",
            ) from None


@dataclass(frozen=True)
class StopRequest:
    """What `down` asks of a live owner, before signalling it."""

    run_id: str
    grace: float

    @classmethod
    def read(cls, registry: Registry, name: str, run_id: str) -> StopRequest | None:
        try:
            data = jsontext.loads(read_small(registry.request_path(name), MAX_REQUEST_BYTES))
            request = cls(str(data["run_id"]), float(data["grace"]))
        except (OSError, ValueError, KeyError, TypeError):
            return None
        return request if request.run_id == run_id else None

    def write(self, registry: Registry, name: str) -> None:
        try:
            atomic_write(registry.request_path(name), json.dumps(asdict(self)))
        except OSError:
            pass  # the owner then stops with the grace it was started with


def atomic_write(target: Path, text: str) -> None:
    """Readers see the old content or the new one, never half; no temp file is left."""
    fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=f".{target.stem}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w") as handle:
            handle.write(text)
        os.replace(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
