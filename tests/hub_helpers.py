"""A loopback ModelScope hub (tests/fake_hub.py) as a real process, for tests; a Hugging
Face tree listing (tests/fake_hf_tree.py); acme/tiny on them, and placed in a user's cache
by the real `snapshot_download`."""

from __future__ import annotations

import hashlib
import json
import os
import random
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


# --- acme/tiny, as the cache-reuse tests use it ---------------------------------------------

TINY_FILES = {"config.json": 20, "weights.bin": 600_000, "sub/tokenizer.json": 30_000}
# The real client in its own interpreter (it reads MODELSCOPE_ENDPOINT once per process).
PLACE = (
    "import sys; from modelscope import snapshot_download; "
    "print(snapshot_download(sys.argv[1], cache_dir=sys.argv[2]))"
)


def write_tiny(root: Path, revisions: dict[str, int]) -> Path:
    """acme/tiny under `root` at each revision, random bytes from its seed."""
    for revision, seed in revisions.items():
        rng = random.Random(seed)
        for rel, size in TINY_FILES.items():
            path = root / "acme" / "tiny" / revision / rel
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(rng.randbytes(size))
    return root


class Hubs:
    """Hubs started one after another over one model tree; stop() ends them all."""

    def __init__(self, root: Path, workdir: Path) -> None:
        self.root, self.workdir, self.started = root, workdir, list[Hub]()

    def start(self) -> Hub:
        hub = Hub(self.root, self.workdir / f"hub{len(self.started)}", ())
        self.started.append(hub)
        return hub

    def stop(self) -> None:
        for hub in self.started:
            hub.stop()


def hub_env(isolated_env: dict[str, str], hub: Hub) -> dict[str, str]:
    """The test environment pointed at `hub`, with no hub or cache variable of the caller's."""
    env = {k: v for k, v in isolated_env.items() if not k.startswith(("MODELSCOPE_", "HF_"))}
    env.update(MODELSCOPE_ENDPOINT=hub.url, NO_PROXY="127.0.0.1,localhost", TQDM_DISABLE="1")
    return env


def place_tiny(env: dict[str, str], cache_dir: Path) -> Path:
    """acme/tiny as a user's own `snapshot_download(id, cache_dir=…)` leaves it."""
    proc = subprocess.run(
        [sys.executable, "-c", PLACE, MODEL, str(cache_dir)],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 0, proc.stderr
    path = Path(proc.stdout.strip().splitlines()[-1])
    # the layout modelscope 1.40.2 / modelscope-hub 0.5.1 writes: no metadata beside the files
    assert path == cache_dir / "models" / "acme--tiny" / "snapshots" / "master"
    assert {p.relative_to(path).as_posix() for p in path.rglob("*") if p.is_file()} == set(
        TINY_FILES
    )
    return path


def hf_layout(hub_root: Path, cache: Path, commit: str) -> Path:
    """acme/tiny (master) in a Hugging Face cache as huggingface_hub lays it out: blobs
    named by sha256, snapshot entries linking to them, refs/main naming the commit."""
    repo = cache / "models--acme--tiny"
    snapshot = repo / "snapshots" / commit
    for rel in TINY_FILES:
        data = (hub_root / "acme" / "tiny" / "master" / rel).read_bytes()
        blob = repo / "blobs" / hashlib.sha256(data).hexdigest()
        blob.parent.mkdir(parents=True, exist_ok=True)
        blob.write_bytes(data)
        link = snapshot / rel
        link.parent.mkdir(parents=True, exist_ok=True)
        link.symlink_to(os.path.relpath(blob, link.parent))
    (repo / "refs").mkdir(exist_ok=True)
    (repo / "refs" / "main").write_text(commit)
    return snapshot
