"""A loopback ModelScope hub (tests/fake_hub.py) as a real process, for tests."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

FAKE_HUB = Path(__file__).parent / "fake_hub.py"
MODEL = "acme/tiny"


class Hub:
    """One fake_hub.py process."""

    def __init__(self, root: Path, workdir: Path, switches: tuple[str, ...]) -> None:
        workdir.mkdir(parents=True, exist_ok=True)
        self.root = root
        self.log = workdir / "requests.jsonl"
        self.stderr_path = workdir / "hub.stderr"
        port_file = workdir / "port"
        with open(self.stderr_path, "wb") as err:
            self.proc = subprocess.Popen(
                [
                    sys.executable,
                    str(FAKE_HUB),
                    "--root",
                    str(root),
                    "--port",
                    "0",
                    "--port-file",
                    str(port_file),
                    "--log",
                    str(self.log),
                    *switches,
                ],
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=err,
            )
        deadline = time.monotonic() + 10
        while not port_file.exists():
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"fake hub did not start: {self.stderr_path.read_text()}")
            time.sleep(0.02)
        self.port = int(port_file.read_text())
        self.url = f"http://127.0.0.1:{self.port}"

    def records(self) -> list[dict[str, Any]]:
        if not self.log.exists():
            return []
        return [json.loads(line) for line in self.log.read_text().splitlines()]

    def file_requests(self, path: str | None = None) -> list[dict[str, Any]]:
        return [
            r
            for r in self.records()
            if r["path"] == f"/api/v1/models/{MODEL}/repo"
            and (path is None or r["query"].get("FilePath") == path)
        ]

    def stop(self) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
                return -9
        return self.proc.returncode


@contextmanager
def serve_hf_tree(source: Path, work: Path, lfs_from: int = 0) -> Iterator[tuple[str, Path]]:
    """fake_hf_tree.py serving `source` as acme/tiny: (its URL, its request log)."""
    work.mkdir()
    port_file, log = work / "port", work / "requests.jsonl"
    script = Path(__file__).with_name("fake_hf_tree.py")
    argv = [sys.executable, str(script), str(source), str(log), str(port_file), str(lfs_from)]
    proc = subprocess.Popen(argv)
    try:
        deadline = time.monotonic() + 30
        while not port_file.exists() and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.02)
        assert port_file.exists(), "the Hugging Face hub did not start"
        yield f"http://127.0.0.1:{port_file.read_text()}", log
    finally:
        proc.terminate()
        proc.wait(timeout=10)
