"""`llmdeploy status`: every deployment in every phase. Read-only: it never locks,
never repairs; liveness is judged by the owner's recorded (pid, start time)."""

from __future__ import annotations

import json
import time

from llmdeploy.hub.progress import human_bytes
from llmdeploy.output import out
from llmdeploy.run import procs
from llmdeploy.run.phases import Phase
from llmdeploy.run.readiness import Probe
from llmdeploy.run.state import Corrupt, Record, Registry

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
    table = [COLUMNS] + [[_cell(row[c]) for c in COLUMNS] for row in rows]
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


def _row(registry: Registry, record: Record) -> dict[str, object]:
    state = state_of(registry, record)
    health = None
    if state in ("ready", "orphaned"):
        probe = Probe(record.base_url, record.health_path, model=record.served_model_name)
        health = "ok" if probe.request("GET", record.health_path).status == 200 else "down"
    since = record.ready_at or record.started_at
    return {
        "name": record.name,
        "state": state,
        "run_id": record.run_id,
        "engine": record.engine,
        "model": record.served_model_name,
        "url": record.base_url + "/v1",
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
    }


def _detail(record: Record, state: str) -> str:
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


def _corrupt(found: Corrupt) -> dict[str, object]:
    row: dict[str, object] = {c: None for c in COLUMNS}
    row.update(name=found.name, state="corrupt", detail=f"{found.problem}; `down` removes it")
    return row


def _human(seconds: float) -> str:
    seconds = int(seconds)
    if seconds < 60:
        return f"{seconds}s"
    if seconds < 3600:
        return f"{seconds // 60}m{seconds % 60:02d}s"
    return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m"
