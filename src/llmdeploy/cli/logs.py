"""`llmdeploy logs NAME`: the deployment's log — for a routed one, llmdeploy's notes
(the main log) and every member's own log, each member's lines prefixed `[r0] `,
`[router] `; `--replica K` / `--router` show one member's log alone.

Which members exist comes from the record only, and a member's log path only from
the registry (a member name that is not `rK` or `router` is never made into a path)."""

from __future__ import annotations

import re
import time
from dataclasses import dataclass
from pathlib import Path

from llmdeploy.console import LogFollower
from llmdeploy.errors import InputError, NotFoundError
from llmdeploy.files import open_regular
from llmdeploy.output import out
from llmdeploy.run.members import ROUTER, replica_name
from llmdeploy.run.signals import SignalCapture, exit_code
from llmdeploy.run.state import Corrupt, Record, Registry

MEMBER = re.compile(r"^(r(0|[1-9][0-9]{0,5})|router)$")
TAIL_BYTES = 256_000  # as diagnosis.tail: enough for any -n a person reads
RECORD_EVERY = 0.5  # seconds between looks at the record for members added by `scale`


@dataclass(frozen=True)
class Source:
    """One log file shown, and what its lines are prefixed with."""

    path: Path
    prefix: str = ""


def run(
    name: str, *, follow: bool, lines: int, replica: int | None = None, router: bool = False
) -> int:
    registry = Registry()
    main = registry.log_path(name)
    if replica is not None or router:
        sources = [_one_member(registry, name, replica, router)]
    else:
        if not main.exists() or (main.stat().st_size == 0 and name not in registry.names()):
            raise NotFoundError(f"no log for {name!r}", hint="`llmdeploy status` lists deployments")
        sources = [Source(main), *_member_sources(registry, name)]
    # Where each log ends now — every member log there is, also of members the record
    # gains later (`scale`): following shows what is written after, nothing twice.
    end = _complete if follow else _size
    ends = {p: end(p) for p in [main, *main.parent.glob(f"{name}@*.log")]}
    for source in sources:
        for line in _tail(source.path, lines, ends.get(source.path, 0)):
            out(source.prefix + line)
    if not follow:
        return 0
    every_member = replica is None and not router
    return _follow(registry, name, sources, ends, every_member)


def _one_member(registry: Registry, name: str, replica: int | None, router: bool) -> Source:
    """The log of the one member asked for, or a one-line error naming those there are."""
    if replica is not None and router:
        raise InputError("--replica and --router: give one of them (neither: every log)")
    members = _members(registry.load(name))
    if not members:
        raise NotFoundError(
            f"{name!r} is a single-engine deployment: it has no replicas and no router "
            f"(`llmdeploy logs {name}` shows its log)"
        )
    wanted = ROUTER if router else replica_name(replica or 0)
    if wanted not in members:
        asked = "router" if router else f"replica {replica}"
        raise NotFoundError(f"{name!r} has no {asked}; it has {_listing(members)}")
    return Source(registry.member_log_path(name, wanted))


def _members(record: Record | Corrupt | None) -> list[str]:
    """The record's member names that are what members are called (nothing else):
    replicas by number, then the router."""
    if not isinstance(record, Record):
        return []
    names = [m.name for m in record.members if MEMBER.match(m.name)]
    return sorted(names, key=lambda m: (m == ROUTER, 0 if m == ROUTER else int(m[1:])))


def _listing(members: list[str]) -> str:
    """'replicas 0, 1, 2 (--replica K) and the router (--router)'."""
    numbers = [m[1:] for m in members if m != ROUTER]
    parts = [f"replica{'s' if len(numbers) > 1 else ''} {', '.join(numbers)} (--replica K)"]
    parts = parts if numbers else ["no replica"]
    return " and ".join(parts + (["the router (--router)"] if ROUTER in members else []))


def _member_sources(registry: Registry, name: str) -> list[Source]:
    """Every member's log, as the record lists them now (none for one engine)."""
    members = _members(registry.read(name))
    return [Source(registry.member_log_path(name, m), f"[{m}] ") for m in members]


def _follow(
    registry: Registry,
    name: str,
    sources: list[Source],
    ends: dict[Path, int],
    every_member: bool,
) -> int:
    """New lines of every source as they come, until the deployment ends or a signal;
    with `every_member`, members the record gains later are followed too."""
    followers = {s: LogFollower(s.path, offset=ends.get(s.path, 0)) for s in sources}
    looked = time.monotonic()
    with SignalCapture() as signals:
        while not signals.received:
            _print_new(followers)
            if not registry.is_live(name):
                _print_new(followers)
                return 0
            if every_member and time.monotonic() - looked >= RECORD_EVERY:
                looked = time.monotonic()
                for new in _member_sources(registry, name):
                    if new not in followers:
                        followers[new] = LogFollower(new.path, offset=ends.get(new.path, 0))
            time.sleep(0.1)
        return exit_code(signals.received)


def _print_new(followers: dict[Source, LogFollower]) -> None:
    for source, follower in followers.items():
        for line in follower.read():
            out(source.prefix + line)


def _complete(path: Path) -> int:
    """Where the file's complete lines end now (a line being written is not yet shown)."""
    try:
        with open_regular(path, "rb") as handle:
            size = handle.seek(0, 2)
            handle.seek(max(0, size - TAIL_BYTES))
            data = handle.read(size - handle.tell())
    except OSError:
        return 0
    cut = data.rfind(b"\n")
    return size - len(data) + cut + 1 if cut >= 0 else size - len(data)


def _size(path: Path) -> int:
    try:
        return path.stat().st_size
    except OSError:
        return 0


def _tail(path: Path, lines: int, end: int) -> list[str]:
    """The last `lines` lines before byte `end`."""
    if lines <= 0 or end <= 0:
        return []
    try:
        with open_regular(path, "rb") as handle:
            handle.seek(max(0, end - TAIL_BYTES))
            data = handle.read(end - handle.tell())
    except OSError:
        return []
    return data.decode(errors="replace").splitlines()[-lines:]
