"""The guardian: stops a deployment's processes when its supervisor dies.

A supervisor (`llmdeploy up`, foreground or background) can be killed with SIGKILL,
which no handler catches; vLLM's EngineCore and workers would then keep running and
holding the GPU. So the supervisor starts this small program *first* — before any
download or engine exists — in a session of its own, with:

- the deployment's tag (`procs.TAG_VAR`), so it knows what to look for before
  anything is spawned: every process the supervisor spawns carries that tag;
- a pipe on stdin whose write end only the supervisor holds;
- the deployment's lock (inherited), so it is an owner while it lives.

    supervisor -> guardian:  "grace <seconds>"        the stop grace (may change)
                             "engine <pid> <start>"   an engine's session, once spawned
                                                      (every replica's and the router's)
                             "proc <pid> <start>"     a process of the run (it may
                                                      have lost its tag: procs.py)
                             "shm <path>"             a /dev/shm file the run maps
                             "release"                after a clean stop
    EOF without "release" -> stop every tagged process, then record the deployment as
    failed (or remove it, if it was being stopped anyway).

Standard library only: it must start fast.
"""

from __future__ import annotations

import argparse
import signal
import sys
from pathlib import Path

from llmdeploy.run import procs
from llmdeploy.run.phases import Phase
from llmdeploy.run.state import Owner, Record, Registry


def main() -> int:
    # A terminal's Ctrl-C or hang-up goes to the supervisor, which stops cleanly; the
    # guardian must outlive it to clean up if it does not.
    for signum in (signal.SIGINT, signal.SIGHUP, signal.SIGTERM):
        signal.signal(signum, signal.SIG_IGN)
    parser = argparse.ArgumentParser(prog="llmdeploy-guardian")
    parser.add_argument("--state-dir", type=Path, required=True)
    parser.add_argument("--name", required=True)
    parser.add_argument("--run-id", required=True)
    parser.add_argument("--lock-fd", type=int, required=True)
    parser.add_argument("--grace", type=float, default=15.0)
    args = parser.parse_args()
    grace, engines, released = args.grace, [], False
    shm: set[str] = set()
    known: set[procs.Proc] = set()
    prune_at = 1024  # the dead are dropped when the set doubles: bounded, cheap
    for line in sys.stdin:
        words = line.split()
        if words[:1] == ["grace"] and len(words) == 2:
            grace = float(words[1])
        elif words[:1] == ["engine"] and len(words) == 3:
            engines.append(procs.Proc(int(words[1]), int(words[2])))
        elif words[:1] == ["proc"] and len(words) == 3:
            known.add(procs.Proc(int(words[1]), int(words[2])))
            if len(known) >= prune_at:
                known = {p for p in known if p.alive()}
                prune_at = max(1024, 2 * len(known))
        elif words[:1] == ["shm"] and len(words) >= 2:
            shm.add(line[4:].rstrip("\n"))
        elif words[:1] == ["release"]:
            released = True
    if not released:
        _clean_up(args, grace, engines, known, shm)
    return 0


def _clean_up(
    args: argparse.Namespace,
    grace: float,
    engines: list[procs.Proc],
    known: set[procs.Proc],
    shm: set[str],
) -> None:
    tag = Registry(args.state_dir).tag_prefix(args.name) + args.run_id
    left = procs.stop(
        lambda: procs.find(procs.tagged(tag), sessions=engines, known=known), grace
    )
    # Before the record says so: a deployment recorded as stopped has nothing left.
    procs.remove_shm(shm)
    registry = Registry(args.state_dir)
    owner = Owner(registry, args.name, args.lock_fd)
    found = registry.read(args.name)
    if not isinstance(found, Record) or found.run_id != args.run_id:
        return
    owner.adopt(found)
    if found.phase is Phase.STOPPING and not left:
        owner.remove()  # it was being stopped: finish the stop
        return
    reason = f"supervisor (pid {found.supervisor.pid}) died; the guardian stopped its processes"
    if left:
        reason += f", but {', '.join(p.label() for p in left)} survived"
    if found.phase is not Phase.FAILED:
        if found.phase is not Phase.STOPPING:
            owner.move(Phase.STOPPING)
        owner.move(Phase.FAILED, reason=reason, tail=[], next_attempt_at=None)


if __name__ == "__main__":
    raise SystemExit(main())
