from __future__ import annotations

import json
import time

from llmdeploy.output import out
from llmdeploy.run import procgroup
from llmdeploy.run.readiness import Probe
from llmdeploy.run.state import Record, Registry


def run(*, as_json: bool) -> int:
    registry = Registry()
    rows = [_row(registry, registry.load(name)) for name in registry.names()]
    if as_json:
        out(json.dumps(rows, indent=2))
        return 0
    if not rows:
        out("no deployments")
        return 0
    columns = ["name", "state", "engine", "model", "url", "pid", "health", "uptime"]
    table = [columns] + [
        [str(row[c] if row[c] is not None else "-") for c in columns] for row in rows
    ]
    widths = [max(len(r[i]) for r in table) for i in range(len(columns))]
    for r in table:
        out("  ".join(cell.ljust(w) for cell, w in zip(r, widths, strict=True)).rstrip())
    return 0


def _row(registry: Registry, record: Record) -> dict[str, object]:
    live = registry.is_live(record.name)
    engine_left = bool(record.engine_pid and procgroup.members(record.engine_pid))
    state: str
    if live:
        state = record.phase
    elif engine_left:
        state = "orphaned"  # supervisor and guardian gone, engine not: `down` sweeps it
    else:
        state = "stale"
        registry.remove(record.name)  # shown once, then cleaned
    health = None
    if live or engine_left:
        probe = Probe(record.base_url, record.health_path, model=record.served_model_name)
        health = "ok" if probe.request("GET", record.health_path).status == 200 else "down"
    since = record.ready_at or record.started_at
    return {
        "name": record.name,
        "state": state,
        "engine": record.engine,
        "model": record.served_model_name,
        "url": record.base_url + "/v1",
        "pid": record.supervisor_pid,
        "engine_pid": record.engine_pid or None,
        "health": health,
        "uptime": _human(time.time() - since) if state not in ("stale",) else None,
        "log": record.log,
        "restarts": record.restarts,
    }


def _human(seconds: float) -> str:
    seconds = int(seconds)
    if seconds < 60:
        return f"{seconds}s"
    if seconds < 3600:
        return f"{seconds // 60}m{seconds % 60:02d}s"
    return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m"
