"""The loopback ModelScope hub (tests/fake_hub.py), driven by the REAL modelscope client.

The hub runs as a real process on 127.0.0.1; the client runs in its own interpreter with
MODELSCOPE_ENDPOINT pointing at the hub and HOME in a temp dir (modelscope-hub reads both once
per process, and writes ~/.modelscope/credentials/session and ~/.cache/modelscope/.lock/).

What the real client (modelscope 1.40.2 on modelscope-hub 0.5.1) does, as these tests pin down:
- a dropped body is retried at once and resumed with `Range: bytes=<received>-` (a 206);
- a sha256 mismatch deletes the bytes and downloads the whole file again (3 tries, 1 s then
  2 s apart), then fails with modelscope_hub.errors.FileDownloadError ("[E1003] …");
- 5xx on a file download is retried (0 s, then 2 s, 4 s …; Retry-After is honoured), 6 tries;
- an unknown model or revision is requests.exceptions.HTTPError ("[E3020] [404] …"), caused
  by modelscope_hub.errors.NotExistError;
- a kill -9 mid-file leaves `<file>.incomplete` beside the target, and the next run resumes it
  with a Range request;
- a second run re-lists the repo but fetches no file (size + sha256 of the local copy match).

The hub-only tests at the bottom need nothing but the standard library.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import os
import random
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from hub_helpers import Hub

MODEL = "acme/tiny"
BIG = "sub/weights.bin"
BIG_SIZE = 2 * 1024 * 1024 + 123

needs_client = pytest.mark.skipif(
    importlib.util.find_spec("modelscope") is None
    and os.environ.get("LLMDEPLOY_REQUIRE_ENGINES") != "1",  # `make test` must not skip
    reason="the modelscope client is not installed in this environment",
)

# The client, in its own interpreter: one snapshot_download(**kwargs), the outcome as JSON.
CLIENT = r"""
import json, sys
from modelscope import snapshot_download
from modelscope.hub.callback import ProgressCallback

kwargs = json.loads(sys.argv[1])
progress = {}

class Recorder(ProgressCallback):
    def __init__(self, filename, file_size):
        super().__init__(filename, file_size)
        progress.setdefault(filename, {"size": file_size, "seen": 0, "ended": 0})
    def update(self, size):
        progress[self.filename]["seen"] += size
    def end(self):
        progress[self.filename]["ended"] += 1

if kwargs.pop("_progress", False):
    kwargs["progress_callbacks"] = [Recorder]
try:
    out = {"ok": True, "path": snapshot_download(**kwargs)}
except Exception as e:
    cause = e.__cause__
    out = {
        "ok": False,
        "type": f"{type(e).__module__}.{type(e).__qualname__}",
        "message": str(e),
        "status": getattr(getattr(e, "response", None), "status_code", None),
        "cause": f"{type(cause).__module__}.{type(cause).__qualname__}" if cause else None,
        "failed": sorted(getattr(e, "failed_files", None) or {}),
    }
out["progress"] = progress
print("RESULT " + json.dumps(out), flush=True)
"""


# ---------------------------------------------------------------------------------------------
# fixtures
# ---------------------------------------------------------------------------------------------
def _write(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)


@pytest.fixture(scope="module")
def hub_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """DIR/<owner>/<name>/<revision>/<files…>: acme/tiny at master (5 files) and v1."""
    root = tmp_path_factory.mktemp("hubroot")
    rng = random.Random(1234)
    master = root / "acme" / "tiny" / "master"
    _write(master / "config.json", b'{"hidden_size": 128}\n')
    _write(master / "README.md", b"# tiny\n" * 50)
    _write(master / BIG, rng.randbytes(BIG_SIZE))
    _write(master / "sub" / "deeper" / "tokenizer.json", rng.randbytes(40_000))
    _write(master / "empty.txt", b"")
    _write(root / "acme" / "tiny" / "v1" / "config.json", b'{"hidden_size": 64}\n')
    return root


def master_files(root: Path) -> dict[str, bytes]:
    base = root / "acme" / "tiny" / "master"
    return {p.relative_to(base).as_posix(): p.read_bytes() for p in base.rglob("*") if p.is_file()}


@pytest.fixture
def start_hub(hub_root: Path, tmp_path: Path) -> Iterator[Callable[..., Hub]]:
    """Start hubs with switches; at the end each must stop on SIGTERM (exit 0) and be quiet."""
    hubs: list[Hub] = []

    def start(*switches: str) -> Hub:
        hub = Hub(hub_root, tmp_path / f"hub{len(hubs)}", switches)
        hubs.append(hub)
        return hub

    yield start
    for hub in hubs:
        assert hub.stop() == 0, "the hub did not exit 0 on SIGTERM"
        assert hub.stderr_path.read_text() == "", "the hub is not quiet"


def client_env(hub: Hub, home: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MODELSCOPE_", "MS_"))}
    env.update(HOME=str(home), MODELSCOPE_ENDPOINT=hub.url, TQDM_DISABLE="1")
    env["NO_PROXY"] = env["no_proxy"] = "127.0.0.1,localhost"
    return env


def client_argv(**kwargs: Any) -> list[str]:
    return [sys.executable, "-c", CLIENT, json.dumps(kwargs)]


def download(hub: Hub, home: Path, **kwargs: Any) -> dict[str, Any]:
    """Run the real snapshot_download(**kwargs) in a fresh interpreter against `hub`."""
    kwargs.setdefault("model_id", MODEL)
    proc = subprocess.run(
        client_argv(**kwargs),
        env=client_env(hub, home),
        capture_output=True,
        text=True,
        timeout=60,
        stdin=subprocess.DEVNULL,
    )
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT ")]
    assert lines, f"client crashed (rc {proc.returncode}):\n{proc.stderr[-3000:]}"
    result: dict[str, Any] = json.loads(lines[-1][len("RESULT ") :])
    result["stderr"] = proc.stderr
    return result


def tree(path: Path) -> dict[str, bytes]:
    return {p.relative_to(path).as_posix(): p.read_bytes() for p in path.rglob("*") if p.is_file()}


# ---------------------------------------------------------------------------------------------
# the real client against the hub
# ---------------------------------------------------------------------------------------------
@needs_client
def test_clean_download_is_byte_identical(
    start_hub: Callable[..., Hub], hub_root: Path, tmp_path: Path
) -> None:
    hub = start_hub()
    out = tmp_path / "out"
    res = download(hub, tmp_path / "home", revision="master", local_dir=str(out), _progress=True)
    assert res["ok"], res
    assert Path(res["path"]) == out
    assert tree(out) == master_files(hub_root)  # byte-identical, nothing else left in local_dir

    # The calls, in order: the recursive listing, the acceleration probe, one GET per file.
    recs = hub.records()
    assert recs[0]["path"] == f"/api/v1/models/{MODEL}/repo/files"
    assert recs[0]["query"] == {"Revision": "master", "Recursive": "True"}
    assert recs[1]["path"] == "/api/v1/repos/internalAccelerationInfo"
    assert recs[1]["status"] == 404
    files = recs[2:]
    assert sorted(r["query"]["FilePath"] for r in files) == sorted(master_files(hub_root))
    assert all(r["path"] == f"/api/v1/models/{MODEL}/repo" for r in files)
    assert all(r["query"]["Revision"] == "master" and r["range"] is None for r in files)
    assert all(r["status"] == 200 for r in files)

    # progress_callbacks: one instance per file, (filename, size), updates add up to the size.
    progress = res["progress"]
    assert set(progress) == set(master_files(hub_root))
    for name, p in progress.items():
        assert p["size"] == p["seen"] == len(master_files(hub_root)[name])
        assert p["ended"] >= 1

    # Only ~/.modelscope/credentials/session and the lock files land in HOME.
    home = tmp_path / "home"
    assert (home / ".modelscope" / "credentials" / "session").is_file()
    locks = list((home / ".cache" / "modelscope" / ".lock").glob("file_*.lock"))
    assert len(locks) == len(master_files(hub_root))


@needs_client
def test_revision_and_cache_dir_layout(
    start_hub: Callable[..., Hub], hub_root: Path, tmp_path: Path
) -> None:
    hub = start_hub()
    cache = tmp_path / "cache"
    res = download(hub, tmp_path / "home", revision="v1", cache_dir=str(cache))
    assert res["ok"], res
    snapshot = cache / "models" / "acme--tiny" / "snapshots" / "v1"
    assert Path(res["path"]) == snapshot
    assert tree(snapshot) == {"config.json": b'{"hidden_size": 64}\n'}
    assert list((cache / ".lock").glob("file_*.lock"))  # locks follow cache_dir

    # revision=None means master.
    res = download(hub, tmp_path / "home", cache_dir=str(cache))
    assert res["ok"], res
    assert Path(res["path"]) == cache / "models" / "acme--tiny" / "snapshots" / "master"


@needs_client
def test_allow_patterns_list_only_that_folder(
    start_hub: Callable[..., Hub], hub_root: Path, tmp_path: Path
) -> None:
    hub = start_hub()
    out = tmp_path / "out"
    res = download(hub, tmp_path / "home", local_dir=str(out), allow_patterns=["sub/*"])
    assert res["ok"], res
    want = {k: v for k, v in master_files(hub_root).items() if k.startswith("sub/")}
    assert tree(out) == want
    # A literal folder prefix in allow_patterns becomes the listing's Root.
    assert hub.records()[0]["query"] == {"Revision": "master", "Recursive": "True", "Root": "sub"}


@needs_client
def test_second_download_fetches_nothing(
    start_hub: Callable[..., Hub], hub_root: Path, tmp_path: Path
) -> None:
    hub = start_hub()
    out, home = tmp_path / "out", tmp_path / "home"
    assert download(hub, home, revision="master", local_dir=str(out))["ok"]
    first = len(hub.records())
    res = download(hub, home, revision="master", local_dir=str(out))
    assert res["ok"], res
    again = hub.records()[first:]
    # Only the listing: every local file matched the listed Size and Sha256.
    assert [r["path"] for r in again] == [f"/api/v1/models/{MODEL}/repo/files"]
    assert tree(out) == master_files(hub_root)

    # A local file with the right size but wrong bytes is replaced (sha256 decides).
    (out / "config.json").write_bytes(b"X" * len(master_files(hub_root)["config.json"]))
    n = len(hub.records())
    assert download(hub, home, revision="master", local_dir=str(out))["ok"]
    refetched = [r["query"].get("FilePath") for r in hub.records()[n:]]
    assert [f for f in refetched if f] == ["config.json"]
    assert tree(out) == master_files(hub_root)


@needs_client
@pytest.mark.parametrize(
    ("model", "revision", "server_message"),
    [
        ("acme/nope", "master", "record not found"),
        (MODEL, "v9", "Revision v9 of model acme/tiny not found"),
    ],
)
def test_unknown_model_or_revision_raises(
    start_hub: Callable[..., Hub], tmp_path: Path, model: str, revision: str, server_message: str
) -> None:
    hub = start_hub()
    out = tmp_path / "out"
    res = download(hub, tmp_path / "home", model_id=model, revision=revision, local_dir=str(out))
    assert not res["ok"]
    assert res["type"] == "requests.exceptions.HTTPError"
    assert res["cause"] == "modelscope_hub.errors.NotExistError"
    assert res["status"] == 404
    assert res["message"].startswith("[E3020] [404] ")
    assert server_message in res["message"]
    assert "code=10010205001" in res["message"]
    assert [r["status"] for r in hub.records()] == [404]  # the listing only, not retried
    assert tree(out) == {}  # local_dir is created, but stays empty


@needs_client
def test_dropped_connection_is_resumed_with_range(
    start_hub: Callable[..., Hub], hub_root: Path, tmp_path: Path
) -> None:
    cut = 100_000
    hub = start_hub("--drop-after-bytes", str(cut))
    out = tmp_path / "out"
    res = download(hub, tmp_path / "home", revision="master", local_dir=str(out), _progress=True)
    assert res["ok"], res
    assert tree(out) == master_files(hub_root)
    first, second = hub.file_requests(BIG)
    assert (first["status"], first["range"], first["bytes"]) == (200, None, cut)
    assert first["dropped"]
    assert (second["status"], second["range"]) == (206, f"bytes={cut}-")
    assert second["bytes"] == BIG_SIZE - cut
    assert "retrying in 0s" in res["stderr"]  # the first retry is immediate
    assert res["progress"][BIG]["seen"] == BIG_SIZE  # progress is not double-counted


@needs_client
def test_corrupt_once_is_verified_and_downloaded_again(
    start_hub: Callable[..., Hub], hub_root: Path, tmp_path: Path
) -> None:
    hub = start_hub("--corrupt", BIG, "--corrupt-times", "1")
    out = tmp_path / "out"
    res = download(hub, tmp_path / "home", revision="master", local_dir=str(out))
    assert res["ok"], res
    assert tree(out) == master_files(hub_root)
    reqs = hub.file_requests(BIG)
    # The bad copy is thrown away whole: the second request is a full GET, not a resume.
    assert [(r["status"], r["range"], r.get("corrupt", False)) for r in reqs] == [
        (200, None, True),
        (200, None, False),
    ]
    assert "Hash validation failed for sub/weights.bin, retrying in 1s (1/3)" in res["stderr"]


@needs_client
def test_corrupt_forever_fails_with_file_download_error(
    start_hub: Callable[..., Hub], hub_root: Path, tmp_path: Path
) -> None:
    hub = start_hub("--corrupt", "config.json")
    out = tmp_path / "out"
    res = download(hub, tmp_path / "home", revision="master", local_dir=str(out))
    assert not res["ok"]
    assert res["type"] == "modelscope_hub.errors.FileDownloadError"
    assert res["message"].startswith(
        "[E1003] 1 of 5 file(s) failed to download from acme/tiny@master"
    )
    assert "config.json: [E2020] Hash mismatch for config.json: expected " in res["message"]
    assert res["failed"] == ["config.json"]
    assert len(hub.file_requests("config.json")) == 3  # three tries, then it gives up
    # The other files are complete; nothing of the bad file (nor a partial) is left.
    good = {k: v for k, v in master_files(hub_root).items() if k != "config.json"}
    assert tree(out) == good


@needs_client
def test_5xx_on_downloads_is_retried(
    start_hub: Callable[..., Hub], hub_root: Path, tmp_path: Path
) -> None:
    hub = start_hub("--fail-5xx", "2")
    out = tmp_path / "out"
    res = download(hub, tmp_path / "home", revision="master", local_dir=str(out))
    assert res["ok"], res
    assert tree(out) == master_files(hub_root)
    recs = hub.file_requests()
    injected = [i for i, r in enumerate(recs) if r.get("injected_5xx")]
    # Files download in parallel: the log is in order of answer, not of injection.
    assert sorted(recs[i]["status"] for i in injected) == [500, 503]
    for i in injected:  # each failed file was asked for again, and then served
        again = [r for r in recs[i + 1 :] if r["query"] == recs[i]["query"]]
        assert again and again[-1]["status"] == 200
    # The first retry of a file is immediate, a second one waits 2 s (then 4, 8, 16 s).
    assert "(ServerError), retrying in 0s" in res["stderr"]


@needs_client
def test_5xx_on_listing_is_retried_and_retry_after_is_honoured(
    start_hub: Callable[..., Hub], hub_root: Path, tmp_path: Path
) -> None:
    hub = start_hub("--fail-5xx", "2", "--fail-5xx-scope", "any", "--retry-after", "0")
    out = tmp_path / "out"
    t0 = time.monotonic()
    res = download(hub, tmp_path / "home", revision="master", local_dir=str(out))
    assert res["ok"], res
    assert time.monotonic() - t0 < 5  # without Retry-After the listing waits 1 s + 2 s
    assert tree(out) == master_files(hub_root)
    recs = hub.records()
    assert [(r["path"].rsplit("/", 1)[-1], r["status"]) for r in recs[:3]] == [
        ("files", 500),
        ("files", 503),
        ("files", 200),
    ]
    assert "listing failed (ServerError), retry in 0s (1/4)" in res["stderr"]


@needs_client
def test_persistent_5xx_gives_up_after_six_tries_per_file(
    start_hub: Callable[..., Hub], tmp_path: Path
) -> None:
    hub = start_hub("--fail-5xx", "1000", "--retry-after", "0")
    res = download(hub, tmp_path / "home", revision="master", local_dir=str(tmp_path / "out"))
    assert not res["ok"]
    assert res["type"] == "modelscope_hub.errors.FileDownloadError"
    assert res["message"].startswith("[E1003] 5 of 5 file(s) failed")
    assert "[E1002] [50" in res["message"]  # each file's ServerError
    assert len(hub.file_requests(BIG)) == 6  # 1 + MODELSCOPE_DOWNLOAD_MAX_RETRIES (5)


@needs_client
def test_kill_9_mid_file_resumes_from_the_partial_file(
    start_hub: Callable[..., Hub], hub_root: Path, tmp_path: Path
) -> None:
    slow = start_hub("--slow-bps", "1000000")
    out, home = tmp_path / "out", tmp_path / "home"
    partial = out / (BIG + ".incomplete")
    proc = subprocess.Popen(
        client_argv(model_id=MODEL, revision="master", local_dir=str(out)),
        env=client_env(slow, home),
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 20
        while not (partial.exists() and partial.stat().st_size >= 256 * 1024):
            assert proc.poll() is None, "the client finished before it could be killed"
            assert time.monotonic() < deadline, "no partial file appeared"
            time.sleep(0.02)
    finally:
        proc.kill()  # SIGKILL: no cleanup of any kind
        proc.wait()
    have = partial.stat().st_size
    assert 0 < have < BIG_SIZE
    assert not (out / BIG).exists()
    assert not (out / "._____temp").exists()  # modelscope < 1.38 used that; 1.40 does not

    # The lock files stay behind (flock dies with the process), and block nothing.
    assert list((home / ".cache" / "modelscope" / ".lock").glob("file_*.lock"))
    fresh = start_hub()
    res = download(fresh, home, revision="master", local_dir=str(out))
    assert res["ok"], res
    assert tree(out) == master_files(hub_root)
    (req,) = fresh.file_requests(BIG)
    assert (req["status"], req["range"], req["bytes"]) == (206, f"bytes={have}-", BIG_SIZE - have)


# ---------------------------------------------------------------------------------------------
# the hub on its own (standard library only)
# ---------------------------------------------------------------------------------------------
def _get(
    url: str, headers: dict[str, str] | None = None, method: str = "GET"
) -> tuple[int, dict[str, str], bytes]:
    req = urllib.request.Request(url, headers=headers or {}, method=method)
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    try:
        with opener.open(req, timeout=10) as resp:
            return resp.status, dict(resp.headers), resp.read()
    except urllib.error.HTTPError as e:
        with e:
            return e.code, dict(e.headers), e.read()


def test_hub_listing_and_ranges(start_hub: Callable[..., Hub], hub_root: Path) -> None:
    hub = start_hub()
    api = f"{hub.url}/api/v1/models/{MODEL}"
    status, _, body = _get(f"{api}/repo/files?Revision=master&Recursive=True")
    data = json.loads(body)
    assert (status, data["Code"], data["Success"]) == (200, 200, True)
    blobs = {f["Path"]: f for f in data["Data"]["Files"] if f["Type"] == "blob"}
    files = master_files(hub_root)
    assert set(blobs) == set(files)
    for path, content in files.items():
        assert blobs[path]["Size"] == len(content)
        assert blobs[path]["Sha256"] == hashlib.sha256(content).hexdigest()
        assert blobs[path]["Name"] == path.rsplit("/", 1)[-1]
    dirs = {f["Path"] for f in data["Data"]["Files"] if f["Type"] == "tree"}
    assert {"sub", "sub/deeper"} <= dirs

    _, _, body = _get(f"{api}/repo/files?Revision=master&Recursive=False&Root=sub")
    assert sorted(f["Path"] for f in json.loads(body)["Data"]["Files"]) == ["sub/deeper", BIG]

    big = files[BIG]
    url = f"{api}/repo?Revision=master&FilePath={BIG}"
    assert _get(url)[2] == big
    status, headers, body = _get(url, {"Range": "bytes=10-19"})
    assert (status, headers["Content-Range"], body) == (206, f"bytes 10-19/{BIG_SIZE}", big[10:20])
    status, _, body = _get(url, {"Range": "bytes=-5"})
    assert (status, body) == (206, big[-5:])
    status, headers, _ = _get(url, {"Range": f"bytes={BIG_SIZE}-"})
    assert (status, headers["Content-Range"]) == (416, f"bytes */{BIG_SIZE}")
    status, headers, body = _get(url, method="HEAD")
    assert (status, headers["Content-Length"], body) == (200, str(BIG_SIZE), b"")

    for bad in (
        f"{hub.url}/api/v1/models/acme/nope/repo/files?Revision=master",
        f"{api}/repo/files?Revision=nope",
        f"{api}/repo?Revision=master&FilePath=../../../etc/passwd",
        f"{hub.url}/api/v1/repos/internalAccelerationInfo",
    ):
        status, _, body = _get(bad)
        assert status == 404 and json.loads(body)["Success"] is False, bad

    status, _, body = _get(f"{api}/revisions")
    branches = json.loads(body)["Data"]["RevisionMap"]["Branches"]
    assert (status, [b["Revision"] for b in branches]) == (200, ["master", "v1"])

    status, _, _ = _get(f"{api}/repo/files", method="POST")
    assert status == 405  # read-only

    # The hub logs a request when its handler thread ends, which can be after the client
    # has its answer (and has sent the next request): wait for all 13, match by content.
    deadline = time.monotonic() + 30
    while len(logged := hub.records()) < 13:
        assert time.monotonic() < deadline, logged
        time.sleep(0.02)
    ranged = [r for r in logged if r.get("range") == "bytes=10-19"]
    assert [r["bytes"] for r in ranged] == [10], ranged
    assert [r["status"] for r in logged if r["method"] == "POST"] == [405]


def test_hub_slow_and_corrupt_switches(start_hub: Callable[..., Hub], hub_root: Path) -> None:
    hub = start_hub("--slow-bps", "200000", "--corrupt", "README.md", "--corrupt-times", "1")
    url = f"{hub.url}/api/v1/models/{MODEL}/repo?Revision=master&FilePath="
    t0 = time.monotonic()
    _, _, body = _get(url + "sub/deeper/tokenizer.json")  # 40 000 bytes at 200 000 B/s
    assert time.monotonic() - t0 >= 0.15
    assert body == master_files(hub_root)["sub/deeper/tokenizer.json"]
    readme = master_files(hub_root)["README.md"]
    first, second = _get(url + "README.md")[2], _get(url + "README.md")[2]
    assert len(first) == len(readme) and first != readme and second == readme
