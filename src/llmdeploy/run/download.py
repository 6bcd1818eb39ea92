"""The pulling phase: the hub download runs as a tagged child process (hub/worker.py),
watched tick by tick, so a signal or `down` stops it at once (a later pull resumes it),
and its progress lands in the record for `status`."""

from __future__ import annotations

import os
import subprocess
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from llmdeploy import jsontext
from llmdeploy.errors import HubError
from llmdeploy.hub import lookup
from llmdeploy.hub.progress import human_bytes
from llmdeploy.hub.worker import PullJob, error_from
from llmdeploy.profile.source import ModelSpec
from llmdeploy.run.spawn import spawn

if TYPE_CHECKING:
    from llmdeploy.run.supervisor import RunOptions, Supervisor

RECORD_EVERY = 0.5  # seconds between progress writes to the record


class Download:
    def __init__(self, supervisor: Supervisor):
        self.sup = supervisor
        self.done: dict[str, Any] | None = None
        self.error: dict[str, Any] | None = None
        self.progress: tuple[int, int] | None = None
        self._buffer = b""

    @staticmethod
    def complete(model: ModelSpec, options: RunOptions) -> bool:
        # a found copy verified before counts too: the hub need not be asked again
        return lookup.ready_offline(model, Path(options.cache), os.environ)

    def run(self) -> None:
        sup = self.sup
        job = PullJob(
            sup.profile.model.model_dump(mode="json"), sup.options.cache, sup.options.offline
        )
        sup.ticker.check()  # nothing is started after a signal
        proc = spawn(
            job.to_argv(),
            env=os.environ,
            tag=sup.tag,
            log_path=sup.log_path,
            stdout=subprocess.PIPE,
        )
        assert proc.stdout is not None
        os.set_blocking(proc.stdout.fileno(), False)
        last_write = 0.0
        while proc.poll() is None:
            self._read(proc)
            if self.progress and time.monotonic() - last_write >= RECORD_EVERY:
                last_write = time.monotonic()
                self._record()
            sup.ensure_guardian()
            sup.ticker.tick(self._status(), 0.05)
        self._read(proc)
        proc.stdout.close()
        self._finish(proc.returncode)

    def _read(self, proc: subprocess.Popen[bytes]) -> None:
        assert proc.stdout is not None
        try:
            data = proc.stdout.read()
        except (BlockingIOError, ValueError):
            data = None
        if not data:
            return
        *lines, self._buffer = (self._buffer + data).split(b"\n")
        for line in lines:
            try:
                message = jsontext.loads(line)
            except ValueError:
                continue
            if "progress" in message:
                done, total = message["progress"]
                self.progress = (int(done), int(total))
            self.done = message.get("done", self.done)
            self.error = message.get("error", self.error)

    def _record(self) -> None:
        assert self.sup.owner is not None and self.progress is not None
        done, total = self.progress
        self.sup.owner.update(pull_done=done, pull_total=total)

    def _status(self) -> str:
        model = self.sup.profile.model.id
        if not self.progress:
            return f"pulling {model} …"
        done, total = self.progress
        pct = 100 * done / total if total else 100.0
        return f"pulling {model}: {human_bytes(done)} of {human_bytes(total)} ({pct:.0f} %)"

    def _finish(self, code: int) -> None:
        if self.progress:
            self._record()
        if code == 0 and self.done is not None:
            self.sup.note(
                f"pulled {self.sup.profile.model.id}: {self.done.get('fetched')} file(s), "
                f"{human_bytes(float(self.done.get('bytes_fetched', 0)))} fetched"
            )
            return
        if self.error is not None:
            raise error_from(self.error)
        raise HubError(f"the download of {self.sup.profile.model.id} died (exit code {code})")
