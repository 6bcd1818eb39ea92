"""The only owner of an engine process's lifecycle.

    idle --start()--> running --stop()--> stopped
                         └── (exits by itself) --> exited

The engine runs as the leader of a new session, so its whole tree can be signalled
and verified at once (vLLM's EngineCore and workers survive a kill of the API
server alone). A guardian process, started first, takes the session down if this
process dies without stopping it (see guardian.py).
"""

from __future__ import annotations

import enum
import os
import subprocess
import sys
import time
from collections.abc import Mapping
from pathlib import Path

from llmdeploy.engines.base import Launch
from llmdeploy.errors import LlmdeployError, StartError
from llmdeploy.run import procgroup


class Phase(enum.Enum):
    IDLE = "idle"
    RUNNING = "running"
    EXITED = "exited"
    STOPPED = "stopped"


class WrongPhase(LlmdeployError):
    pass


def engine_environment(launch: Launch, base: Mapping[str, str]) -> dict[str, str]:
    env = {k: v for k, v in base.items() if k not in launch.unset_env}
    env.update(launch.env)
    return env


class Supervisor:
    def __init__(
        self,
        launch: Launch,
        log_path: Path,
        *,
        lock_fd: int | None = None,
        grace: float = 15.0,
        environ: Mapping[str, str] | None = None,
    ):
        self.launch = launch
        self.log_path = log_path
        self.lock_fd = lock_fd
        self.grace = grace
        self.environ = os.environ if environ is None else environ
        self.phase = Phase.IDLE
        self.started_at = 0.0
        self.returncode: int | None = None
        self._proc: subprocess.Popen[bytes] | None = None
        self._guardian: subprocess.Popen[bytes] | None = None

    def _expect(self, *phases: Phase) -> None:
        if self.phase not in phases:
            wanted = " or ".join(p.value for p in phases)
            raise WrongPhase(f"engine supervisor is {self.phase.value}, expected {wanted}")

    @property
    def pid(self) -> int:
        assert self._proc is not None
        return self._proc.pid

    def start(self) -> None:
        self._expect(Phase.IDLE)
        self._guardian = subprocess.Popen(
            [sys.executable, "-m", "llmdeploy.run.guardian"],
            stdin=subprocess.PIPE,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
            pass_fds=(self.lock_fd,) if self.lock_fd is not None else (),
        )
        with open(self.log_path, "ab") as log:
            try:
                self._proc = subprocess.Popen(
                    list(self.launch.argv),
                    env=engine_environment(self.launch, self.environ),
                    stdin=subprocess.DEVNULL,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    start_new_session=True,
                )
            except OSError as exc:
                self._release_guardian()
                raise StartError(
                    f"cannot run {self.launch.argv[0]!r}: {exc.strerror or exc}",
                    hint="install the engine (e.g. pip install 'llmdeploy[vllm]') "
                    "or set engine.executable in the profile",
                ) from None
        self.started_at = time.monotonic()
        self.phase = Phase.RUNNING
        self._tell_guardian(f"watch {self._proc.pid} {self.grace}\n")

    def poll(self) -> int | None:
        """The engine's exit code once it has exited by itself, else None."""
        if self.phase is Phase.RUNNING and self._proc is not None:
            code = self._proc.poll()
            if code is not None:
                self.returncode = code
                self.phase = Phase.EXITED
        return self.returncode

    def stop(self, grace: float | None = None) -> list[procgroup.Member]:
        """TERM the engine's session, wait, KILL, verify; then release the guardian.
        Returns the processes that survived (empty when all is well)."""
        self._expect(Phase.RUNNING, Phase.EXITED)
        assert self._proc is not None
        # The leader may be gone while its children live on: always sweep the session.
        survivors = procgroup.terminate(self._proc.pid, self.grace if grace is None else grace)
        try:
            self.returncode = self._proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            pass
        self.phase = Phase.STOPPED
        if not survivors:
            self._release_guardian()
        return survivors

    def _tell_guardian(self, message: str) -> None:
        if self._guardian and self._guardian.stdin:
            try:
                self._guardian.stdin.write(message.encode())
                self._guardian.stdin.flush()
            except OSError:
                pass

    def _release_guardian(self) -> None:
        if self._guardian is None:
            return
        self._tell_guardian("release\n")
        if self._guardian.stdin:
            try:
                self._guardian.stdin.close()
            except OSError:
                pass
        try:
            self._guardian.wait(timeout=5)
        except subprocess.TimeoutExpired:
            self._guardian.kill()
        self._guardian = None
