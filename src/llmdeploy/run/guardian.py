"""The guardian: takes an engine's session down when its supervisor dies.

A supervisor (a foreground `llmdeploy up`) can be killed with SIGKILL, which no
handler can catch; vLLM's EngineCore and workers then keep running and holding the
GPU. So each supervisor starts this small program first, in a session of its own,
with a pipe on stdin whose write end only the supervisor holds:

    supervisor -> guardian:  "watch <session> <grace>\\n"  once the engine runs
                             "release\\n"                  after a clean stop
    EOF without "release" (the supervisor died) -> TERM, grace, KILL the session.

The guardian also inherits the deployment's lock, so a new `up` of the same name
waits until the old engine is really gone. Standard library only: it must start fast.
"""

from __future__ import annotations

import signal
import sys

from llmdeploy.run import procgroup


def main() -> int:
    # A terminal's Ctrl-C or hang-up goes to the supervisor, which stops cleanly;
    # the guardian must outlive it to clean up if it does not.
    for signum in (signal.SIGINT, signal.SIGHUP, signal.SIGTERM):
        signal.signal(signum, signal.SIG_IGN)
    session, grace = 0, 10.0
    for line in sys.stdin:
        words = line.split()
        if words[:1] == ["watch"] and len(words) == 3:
            session, grace = int(words[1]), float(words[2])
        elif words[:1] == ["release"]:
            session = 0
    if session:  # the supervisor is gone and did not release: clean up after it
        procgroup.terminate(session, grace)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
