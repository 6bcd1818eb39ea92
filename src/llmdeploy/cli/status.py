"""`llmdeploy status`: every deployment in every phase. Read-only: it never locks,
never repairs; liveness is judged by the owner's recorded (pid, start time).

A routed deployment's row is followed by one indented row per member (`  r0`, …,
`  router`), as its record has them; `--json` lists them under `members`."""

from __future__ import annotations

import json
import time
from typing import cast

from llmdeploy.hub.progress import human_bytes
from llmdeploy.output import out
from llmdeploy.run import procs
from llmdeploy.run.members import ROUTER, MemberPhase, MemberState, is_replica
from llmdeploy.run.phases import Phase
from llmdeploy.run.readiness import Probe
from llmdeploy.run.state import Corrupt, Record, Registry

Row = dict[str, object]
COLUMNS = ["name", "state", "engine", "model", "url", "pid", "health", "uptime", "detail"]


def run(*, as_json: bool) -> int:
    registry = Registry()
    rows = []
    for name in registry.names():
        found = registry.read(name)
        if found is not None:
            rows.append(_corrupt(found) if isinstance(found, Corrupt) else _row(registry, found))
    if as_json:
        out(json.dumps(rows, indent=2))
        return 0
    if not rows:
        out("no deployments")
        return 0
    table = [COLUMNS]
    for row in rows:
        table.append([_cell(row[c]) for c in COLUMNS])
        table += [_member_cells(member) for member in cast(list[Row], row["members"])]
    widths = [max(len(r[i]) for r in table) for i in range(len(COLUMNS))]
    for r in table:
        out("  ".join(cell.ljust(w) for cell, w in zip(r, widths, strict=True)).rstrip())
    return 0


def _cell(value: object) -> str:
    return "-" if value is None or value == "" else str(value)


def state_of(registry: Registry, record: Record) -> str:
    """The phase, unless the owner is gone: then `orphaned` if processes of the
    deployment are left, else `dead` (both removable with `down`)."""
    if record.phase.terminal or record.owner_alive():
        return record.phase.value
    prefix = registry.tag_prefix(record.name)
    if procs.find(lambda v: v.startswith(prefix)):
        return "orphaned"
    return "dead"


def _row(registry: Registry, record: Record) -> Row:
    state = state_of(registry, record)
    health = None
    serves = bool(record.health_path)  # a multi-node deployment's node K serves no HTTP
    if state in ("ready", "orphaned") and serves:
        probe = Probe(record.base_url, record.health_path, model=record.served_model_name)
        health = "ok" if probe.request("GET", record.health_path).status == 200 else "down"
    since = record.ready_at or record.started_at
    return {
        "name": record.name,
        "state": state,
        "run_id": record.run_id,
        "engine": record.engine,
        "model": record.served_model_name,
        "url": record.base_url + "/v1" if serves else None,
        "pid": record.supervisor.pid,
        "engine_pid": record.engine_proc.pid if record.engine_proc else None,
        "health": health,
        "uptime": _human(time.time() - since) if state == "ready" else None,
        "detail": _detail(record, state),
        "log": record.log,
        "restarts": record.restarts,
        "next_attempt_at": record.next_attempt_at,
        "pull_done": record.pull_done,
        "pull_total": record.pull_total,
        "reason": record.reason,
        "tail": record.tail,
        "desired_replicas": record.desired_replicas,
        "members": [_member(record, state, m) for m in record.members],
    }


def _detail(record: Record, state: str) -> str:
    detail = _engine_detail(record, state)
    if not any(is_replica(m.name) for m in record.members):
        return detail  # one engine (a Ray head, if any, is listed but not counted)
    if state not in ("starting", "ready", "restarting"):
        return detail
    return "; ".join(part for part in (_replicas_detail(record), detail) if part)


def _engine_detail(record: Record, state: str) -> str:
    if state == "pulling" and record.pull_total:
        done = record.pull_done or 0
        pct = 100 * done / record.pull_total
        return f"{human_bytes(done)} of {human_bytes(record.pull_total)} ({pct:.0f} %)"
    if state == "restarting" and record.next_attempt_at:
        wait = max(0.0, record.next_attempt_at - time.time())
        return f"restart {record.restarts}, next attempt in {wait:.0f} s"
    if record.phase is Phase.FAILED:
        return record.reason or "failed"
    if state in ("orphaned", "dead"):
        return f"supervisor gone; `llmdeploy down {record.name}` cleans up"
    return f"{record.restarts} restart(s)" if record.restarts else ""


def _replicas_detail(record: Record) -> str:
    """'3/3 replicas ready', with those draining or failed named."""
    replicas = [m for m in record.members if is_replica(m.name)]
    ready = sum(m.phase is MemberPhase.READY for m in replicas)
    draining = sum(m.phase is MemberPhase.DRAINING for m in replicas)
    failed = sum(m.phase is MemberPhase.FAILED for m in replicas)
    wanted = record.desired_replicas or len(replicas) - draining
    text = f"{ready}/{wanted} replicas ready"
    text += f", {draining} draining" if draining else ""
    return text + (f", {failed} failed" if failed else "")


def _member(record: Record, state: str, member: MemberState) -> Row:
    """One member as `status --json` shows it. Its recorded phase is the truth only
    while the deployment's owner runs; after, it is stopped (or orphaned, if it runs)."""
    alive = member.proc is not None and member.proc.alive()
    owned = not record.phase.terminal and state == record.phase.value  # its owner runs
    phase = member.phase.value
    if not owned and member.phase is not MemberPhase.FAILED:
        phase = "orphaned" if alive else "stopped"
    is_router = member.name == ROUTER
    shown_url = f"http://127.0.0.1:{member.port}" if is_replica(member.name) else None
    return {
        "name": member.name,
        "phase": phase,
        "port": member.port,
        "url": record.base_url if is_router else shown_url,
        "pid": member.proc.pid if alive and member.proc else None,
        "restarts": member.restarts,
        "reason": member.reason,
    }


def _member_cells(member: Row) -> list[str]:
    """A member's row of the table, under its deployment's (indented name)."""
    detail = member["reason"] if member["phase"] == "failed" else None
    if not detail and member["restarts"]:
        detail = f"{member['restarts']} restart(s)"
    cells: Row = {c: None for c in COLUMNS}
    cells.update(name=f"  {member['name']}", state=member["phase"], url=member["url"])
    cells.update(pid=member["pid"], detail=detail)
    return [_cell(cells[c]) for c in COLUMNS]


def _corrupt(found: Corrupt) -> Row:
    row: Row = {c: None for c in COLUMNS}
    row.update(name=found.name, state="corrupt", detail=f"{found.problem}; `down` removes it")
    row.update(desired_replicas=None, members=[])
    return row


def _human(seconds: float) -> str:
    seconds = int(seconds)
    if seconds < 60:
        return f"{seconds}s"
    if seconds < 3600:
        return f"{seconds // 60}m{seconds % 60:02d}s"
    return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m"
