"""Starting the processes of a deployment: each carries the deployment's tag (so it and
every descendant can be found later, see procs.py) and leads a session of its own."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import IO

from llmdeploy.engines.base import Launch
from llmdeploy.errors import StartError
from llmdeploy.files import open_regular
from llmdeploy.run import procs


def engine_environment(launch: Launch, base: Mapping[str, str]) -> dict[str, str]:
    env = {k: v for k, v in base.items() if k not in launch.unset_env}
    env.update(launch.env)
    return env


def spawn(
    argv: Sequence[str],
    *,
    env: Mapping[str, str],
    tag: str,
    log_path: Path,
    stdout: int | IO[bytes] | None = None,
) -> subprocess.Popen[bytes]:
    """Start `argv` tagged, in its own session, stderr (and stdout unless given) to the log."""
    tagged = {**env, procs.TAG_VAR: tag}
    with open_regular(log_path, "ab") as log:
        try:
            proc = subprocess.Popen(
                list(argv),
                env=tagged,
                stdin=subprocess.DEVNULL,
                stdout=log if stdout is None else stdout,
                stderr=log,
                start_new_session=True,
            )
        except OSError as exc:
            raise StartError(
                f"cannot run {argv[0]!r}: {exc.strerror or exc}",
                hint="install the engine (e.g. pip install 'llmdeploy[vllm]') "
                "or set engine.executable in the profile",
            ) from None
    procs.leave_to_popen(proc.pid)
    return proc


def spawn_guardian(state_dir: Path, name: str, run_id: str, lock_fd: int, grace: float) -> (
    subprocess.Popen[bytes]
):
    """The guardian (guardian.py): untagged (it must survive the sweeps it makes), in its
    own session (a terminal's Ctrl-C is for the supervisor), holding the lock."""
    env = {k: v for k, v in os.environ.items() if k != procs.TAG_VAR}
    argv = [sys.executable, "-m", "llmdeploy.run.guardian", "--state-dir", str(state_dir)]
    argv += ["--name", name, "--run-id", run_id, "--lock-fd", str(lock_fd)]
    argv += ["--grace", str(grace)]
    proc = subprocess.Popen(
        argv,
        env=env,
        stdin=subprocess.PIPE,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
        pass_fds=(lock_fd,),
    )
    procs.leave_to_popen(proc.pid)
    return proc
