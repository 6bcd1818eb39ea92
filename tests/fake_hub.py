"""A loopback ModelScope hub: a real HTTP server the real `modelscope` client downloads from.

Standard library only; run as a program:

    python tests/fake_hub.py --root DIR --port 0 --port-file F [switches]

DIR holds models as DIR/<owner>/<name>/<revision>/<files…> (files may sit in subfolders).
Point the client at it with MODELSCOPE_ENDPOINT=http://127.0.0.1:PORT (and HOME at a temp dir).

Endpoints (the ones modelscope 1.40 / modelscope-hub 0.5 call for `snapshot_download`, plus the
repository look-ups that sit next to them):

  GET /api/v1/models/{owner}/{name}/repo/files?Revision=R&Recursive=True[&Root=DIR]
        listing: {"Code":200,"Success":true,"Data":{"Files":[{Name,Path,Type,Size,Sha256,…}]}}
  GET|HEAD /api/v1/models/{owner}/{name}/repo?Revision=R&FilePath=P
        the raw file; honours Range (206 + Content-Range, 416 when unsatisfiable)
  GET /api/v1/models/{owner}/{name}            model info
  GET /api/v1/models/{owner}/{name}/revisions  {"Data":{"RevisionMap":{"Branches":[…],"Tags":[]}}}
  GET /api/v1/repos/internalAccelerationInfo   404 (no intra-cloud acceleration here)
  anything else: 404 in the envelope below; POST/PUT/PATCH/DELETE: 405 (this hub is read-only)

An unknown model or revision answers what the real hub answers: HTTP 404 with the envelope
{"Code":10010205001,"Message":"…","RequestId":"…","Success":false}. Revision defaults to master.

Fault switches:
  --drop-after-bytes N  the first request of each file sends the headers (full length), N body
                        bytes, then closes the connection; later requests of that file are whole.
  --corrupt PATH        (repeatable) serve other bytes of the same size for that file (PATH as in
                        the listing, or owner/name/PATH) while the listing keeps the true sha256;
  --corrupt-times K     only the first K requests of such a file are corrupt (default: all).
  --slow-bps N          throttle file bodies to N bytes/s.
  --fail-5xx K          the first K requests in --fail-5xx-scope answer 500, 503, 500, 503, …
  --fail-5xx-scope S    download (default): only file downloads count — it drives the client's
                        per-file retry loop; listing: only repo/files; any: every request.
  --retry-after S       send Retry-After: S with those 5xx answers (the client honours it, so
                        0 makes retries instant in tests).
  --log FILE            append one JSON line per request, written when it ends: t (start,
                        epoch s), ms, method, path, query, range (the Range header), status,
                        bytes (body bytes really sent); file downloads add nth (the how-manieth
                        request of that file); faults add dropped / corrupt / injected_5xx, and
                        client_gone when the client hung up mid-body.

Quiet (no access log), threaded, and it exits 0 on SIGTERM or SIGINT.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import re
import signal
import socket
import sys
import threading
import time
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

NOT_FOUND_CODE = 10010205001  # the real hub's business code for "record not found"
CHUNK = 64 * 1024
PREFIX = "/api/v1/"


def parse(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--root", required=True, type=Path)
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=0)
    p.add_argument("--port-file", type=Path, default=None)
    p.add_argument("--drop-after-bytes", type=int, default=None, metavar="N")
    p.add_argument("--corrupt", action="append", default=[], metavar="FILEPATH")
    p.add_argument("--corrupt-times", type=int, default=None, metavar="K")
    p.add_argument("--slow-bps", type=int, default=None, metavar="N")
    p.add_argument("--fail-5xx", type=int, default=0, metavar="K")
    p.add_argument("--fail-5xx-scope", choices=["download", "listing", "any"], default="download")
    p.add_argument("--retry-after", type=float, default=None, metavar="SECONDS")
    p.add_argument("--log", type=Path, default=None)
    return p.parse_args(argv)


class Hub:
    """The repository contents (sha256 cached by path+mtime+size) and the fault state."""

    def __init__(self, args: argparse.Namespace) -> None:
        self.root: Path = args.root.resolve()
        self.args = args
        self.lock = threading.Lock()
        self.file_requests: dict[str, int] = {}  # owner/name/revision/path -> requests so far
        self.failures_left = args.fail_5xx
        self.failures_sent = 0
        self._sha: dict[tuple[str, int, int], str] = {}
        self._log_lock = threading.Lock()

    # ---- repository contents -------------------------------------------------------------
    def model_dir(self, owner: str, name: str) -> Path | None:
        if not _safe_segment(owner) or not _safe_segment(name):
            return None
        d = self.root / owner / name
        return d if d.is_dir() else None

    def revision_dir(self, owner: str, name: str, revision: str) -> Path | None:
        model = self.model_dir(owner, name)
        if model is None or not _safe_segment(revision):
            return None
        d = model / revision
        return d if d.is_dir() else None

    def sha256(self, path: Path) -> str:
        st = path.stat()
        key = (str(path), st.st_mtime_ns, st.st_size)
        with self.lock:
            cached = self._sha.get(key)
        if cached is None:
            digest = hashlib.sha256()
            with path.open("rb") as fh:
                while block := fh.read(1 << 20):
                    digest.update(block)
            cached = digest.hexdigest()
            with self.lock:
                self._sha[key] = cached
        return cached

    def listing(self, rev_dir: Path, root: str, recursive: bool) -> list[dict[str, Any]] | None:
        rev_dir = rev_dir.resolve()
        base: Path | None = rev_dir
        if root:
            base = _inside(rev_dir, root)
        if base is None or not base.is_dir():
            return None
        entries: list[dict[str, Any]] = []
        walker = sorted(base.rglob("*")) if recursive else sorted(base.iterdir())
        for p in walker:
            rel = p.relative_to(rev_dir).as_posix()
            if p.is_dir():
                entries.append(_entry(p.name, rel, "tree", 0, ""))
            elif p.is_file():
                entries.append(_entry(p.name, rel, "blob", p.stat().st_size, self.sha256(p)))
        return entries

    # ---- faults ------------------------------------------------------------------------
    def take_failure(self, kind: str) -> int | None:
        """The 5xx status to answer this request with, or None."""
        scope = self.args.fail_5xx_scope
        if scope != "any" and scope != kind:
            return None
        with self.lock:
            if self.failures_left <= 0:
                return None
            self.failures_left -= 1
            self.failures_sent += 1
            return 500 if self.failures_sent % 2 else 503

    def count_file_request(self, key: str) -> int:
        """Number this request of the file (1 for the first)."""
        with self.lock:
            n = self.file_requests.get(key, 0) + 1
            self.file_requests[key] = n
            return n

    def is_corrupt(self, owner: str, name: str, path: str, nth: int) -> bool:
        targets = set(self.args.corrupt)
        if path not in targets and f"{owner}/{name}/{path}" not in targets:
            return False
        return self.args.corrupt_times is None or nth <= self.args.corrupt_times

    def log(self, record: dict[str, Any]) -> None:
        if self.args.log is None:
            return
        line = json.dumps(record, sort_keys=True) + "\n"
        with self._log_lock, open(self.args.log, "a", encoding="utf-8") as fh:
            fh.write(line)


def _safe_segment(s: str) -> bool:
    return bool(s) and s not in (".", "..") and "/" not in s and "\\" not in s and "\0" not in s


def _inside(base: Path, rel: str) -> Path | None:
    """base/rel if it stays inside base, else None."""
    rel = rel.strip("/")
    if not rel or "\0" in rel:
        return None
    candidate = (base / rel).resolve()
    try:
        candidate.relative_to(base.resolve())
    except ValueError:
        return None
    return candidate


def _entry(name: str, path: str, kind: str, size: int, sha: str) -> dict[str, Any]:
    return {
        "Name": name,
        "Path": path,
        "Type": kind,
        "Size": size,
        "Sha256": sha,
        "IsLFS": False,
        "Mode": "40000" if kind == "tree" else "100644",
        "Id": hashlib.sha1(f"{path}:{sha}".encode()).hexdigest(),
        "CommittedDate": 0,
    }


def _parse_range(header: str | None, size: int) -> tuple[int, int] | str | None:
    """(start, end) inclusive; None for no/ignored Range; 'unsatisfiable' for a 416."""
    if not header:
        return None
    m = re.fullmatch(r"\s*bytes\s*=\s*(\d*)\s*-\s*(\d*)\s*", header)
    if m is None or (not m.group(1) and not m.group(2)):
        return None  # malformed or multi-range: ignore it and send the whole file (RFC 9110)
    if m.group(1):
        start = int(m.group(1))
        end = int(m.group(2)) if m.group(2) else size - 1
        if start >= size or end < start:
            return "unsatisfiable"
        return start, min(end, size - 1)
    suffix = int(m.group(2))
    if suffix == 0:
        return "unsatisfiable"
    return max(0, size - suffix), size - 1


def _corrupt(data: bytes, offset: int) -> bytes:
    """Wrong bytes of the same length, the same for any split into ranges."""
    return bytes(b ^ (0xA5 if (offset + i) % 2 else 0x5A) for i, b in enumerate(data))


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "FakeModelScopeHub/1.0"
    hub: Hub  # set on the class before serving

    # Quiet: no access log, no tracebacks for clients that go away.
    def log_message(self, format: str, *args: Any) -> None:
        pass

    def do_HEAD(self) -> None:
        self._dispatch(head=True)

    def do_GET(self) -> None:
        self._dispatch(head=False)

    def _unsupported(self) -> None:
        """Writes are not part of this hub: 405 in the hub's envelope, and logged."""
        length = int(self.headers.get("Content-Length") or 0)
        if length:
            self.rfile.read(length)
        self._dispatch(head=False, route=False)

    do_POST = do_PUT = do_PATCH = do_DELETE = _unsupported

    # ---- plumbing -------------------------------------------------------------------------
    def _dispatch(self, head: bool, route: bool = True) -> None:
        split = urlsplit(self.path)
        self._req_path = unquote(split.path)
        self._query = {k: v[-1] for k, v in parse_qs(split.query, keep_blank_values=True).items()}
        self._record: dict[str, Any] = {
            "t": round(time.time(), 3),
            "method": self.command,
            "path": self._req_path,
            "query": self._query,
            "range": self.headers.get("Range"),
            "status": None,
            "bytes": 0,
        }
        began = time.monotonic()
        try:
            if route:
                self._route(head)
            else:
                self._json(
                    405,
                    {
                        "Code": 405,
                        "Message": f"{self.command} is not supported here",
                        "RequestId": uuid.uuid4().hex,
                        "Success": False,
                    },
                )
        except (TimeoutError, BrokenPipeError, ConnectionResetError):
            self.close_connection = True
            self._record["client_gone"] = True
        finally:
            self._record["ms"] = round((time.monotonic() - began) * 1000, 1)
            self.hub.log(self._record)

    def _send(
        self,
        status: int,
        body: bytes,
        ctype: str,
        headers: dict[str, str] | None = None,
        head: bool = False,
    ) -> None:
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("X-Request-ID", self._record.get("request_id") or uuid.uuid4().hex)
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        self.end_headers()
        self._record["status"] = status
        if not head and body:
            self.wfile.write(body)
            self._record["bytes"] = len(body)

    def _json(
        self,
        status: int,
        payload: dict[str, Any],
        headers: dict[str, str] | None = None,
        head: bool = False,
    ) -> None:
        body = json.dumps(payload, ensure_ascii=False).encode("utf-8")
        self._send(status, body, "application/json; charset=utf-8", headers, head)

    def _ok(self, data: Any, head: bool = False) -> None:
        self._json(
            200,
            {
                "Code": 200,
                "Data": data,
                "Message": "success",
                "RequestId": uuid.uuid4().hex,
                "Success": True,
            },
            head=head,
        )

    def _not_found(self, message: str, head: bool = False) -> None:
        self._json(
            404,
            {
                "Code": NOT_FOUND_CODE,
                "Data": None,
                "Message": message,
                "RequestId": uuid.uuid4().hex,
                "Success": False,
            },
            head=head,
        )

    def _maybe_fail(self, kind: str, head: bool) -> bool:
        status = self.hub.take_failure(kind)
        if status is None:
            return False
        headers = {}
        if self.hub.args.retry_after is not None:
            headers["Retry-After"] = f"{self.hub.args.retry_after:g}"
        self._record["injected_5xx"] = True
        self._json(
            status,
            {
                "Code": status,
                "Message": "injected server error",
                "RequestId": uuid.uuid4().hex,
                "Success": False,
            },
            headers,
            head,
        )
        return True

    # ---- routes ---------------------------------------------------------------------------
    def _route(self, head: bool) -> None:
        path = self._req_path
        if not path.startswith(PREFIX):
            kind = "other"
        else:
            parts = path[len(PREFIX) :].strip("/").split("/")
            if parts[:1] == ["models"] and len(parts) == 5 and parts[3:] == ["repo", "files"]:
                kind = "listing"
            elif parts[:1] == ["models"] and len(parts) == 4 and parts[3] == "repo":
                kind = "download"
            else:
                kind = "other"
        if self._maybe_fail(kind, head):
            return
        if not path.startswith(PREFIX):
            self._not_found(f"no such endpoint: {path}", head)
            return
        parts = path[len(PREFIX) :].strip("/").split("/")
        if parts == ["repos", "internalAccelerationInfo"]:
            self._not_found("internal acceleration is not available", head)
            return
        if parts[0] != "models" or len(parts) < 3:
            self._not_found(f"no such endpoint: {path}", head)
            return
        owner, name, rest = parts[1], parts[2], parts[3:]
        model = self.hub.model_dir(owner, name)
        if model is None:
            # The real hub's words: "failed to get model info: record not found".
            self._not_found("获取模型信息失败，信息：record not found", head)  # noqa: RUF001
            return
        if rest == []:
            self._model_info(owner, name, model, head)
        elif rest == ["revisions"]:
            self._revisions(model, head)
        elif rest == ["repo", "files"]:
            self._files(owner, name, head)
        elif rest == ["repo"]:
            self._download(owner, name, head)
        else:
            self._not_found(f"no such endpoint: {path}", head)

    def _revision(self) -> str:
        return self._query.get("Revision") or "master"

    def _model_info(self, owner: str, name: str, model: Path, head: bool) -> None:
        revisions = sorted(p.name for p in model.iterdir() if p.is_dir())
        model_id = int(hashlib.sha256(f"{owner}/{name}".encode()).hexdigest()[:8], 16)
        info = {
            "Id": model_id,
            "Name": name,
            "Path": owner,
            "ChineseName": name,
            "Visibility": 5,
            "Revisions": revisions,
        }
        self._ok(info, head)

    def _revisions(self, model: Path, head: bool) -> None:
        branches = [
            {"Revision": p.name, "CreatedAt": int(p.stat().st_mtime)}
            for p in sorted(model.iterdir())
            if p.is_dir()
        ]
        self._ok({"RevisionMap": {"Branches": branches, "Tags": []}}, head)

    def _files(self, owner: str, name: str, head: bool) -> None:
        revision = self._revision()
        rev_dir = self.hub.revision_dir(owner, name, revision)
        if rev_dir is None:
            self._not_found(f"Revision {revision} of model {owner}/{name} not found", head)
            return
        recursive = self._query.get("Recursive", "false").lower() == "true"
        files = self.hub.listing(rev_dir, self._query.get("Root", ""), recursive)
        if files is None:
            self._not_found(f"Root {self._query.get('Root')} not found", head)
            return
        self._ok({"Files": files}, head)

    def _download(self, owner: str, name: str, head: bool) -> None:
        revision = self._revision()
        file_path = (self._query.get("FilePath") or "").lstrip("/")
        rev_dir = self.hub.revision_dir(owner, name, revision)
        if rev_dir is None:
            self._not_found(f"Revision {revision} of model {owner}/{name} not found", head)
            return
        target = _inside(rev_dir, file_path)
        if target is None or not target.is_file():
            self._not_found(f"File {file_path} not found", head)
            return
        size = target.stat().st_size
        nth = self.hub.count_file_request(f"{owner}/{name}/{revision}/{file_path}")
        self._record["nth"] = nth
        corrupt = self.hub.is_corrupt(owner, name, file_path, nth)
        if corrupt:
            self._record["corrupt"] = True
        rng = _parse_range(self.headers.get("Range"), size)
        common = {"Accept-Ranges": "bytes", "ETag": f'"{self.hub.sha256(target)}"'}
        if rng == "unsatisfiable":
            self._send(
                416,
                b"",
                "application/octet-stream",
                {**common, "Content-Range": f"bytes */{size}"},
                head,
            )
            return
        if isinstance(rng, tuple):
            start, end = rng
            status = 206
            common["Content-Range"] = f"bytes {start}-{end}/{size}"
        else:
            start, end, status = 0, size - 1, 200
        length = end - start + 1 if size else 0
        self.send_response(status)
        self.send_header("Content-Type", "application/octet-stream")
        self.send_header("Content-Length", str(length))
        self.send_header("Content-Disposition", f'attachment; filename="{target.name}"')
        for k, v in common.items():
            self.send_header(k, v)
        self.end_headers()
        self._record["status"] = status
        if head:
            return
        drop = self.hub.args.drop_after_bytes
        limit = length if drop is None or nth > 1 else min(length, drop)
        self._stream(target, start, limit, corrupt)
        if limit < length:
            self._record["dropped"] = True
            self.close_connection = True
            self.wfile.flush()
            try:
                self.connection.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    def _stream(self, target: Path, start: int, count: int, corrupt: bool) -> None:
        bps = self.hub.args.slow_bps
        step = CHUNK if not bps else max(1, min(CHUNK, bps // 20))
        began = time.monotonic()
        sent = 0
        with target.open("rb") as fh:
            fh.seek(start)
            while sent < count:
                data = fh.read(min(step, count - sent))
                if not data:
                    break
                if corrupt:
                    data = _corrupt(data, start + sent)
                self.wfile.write(data)
                sent += len(data)
                self._record["bytes"] = sent
                if bps:
                    self.wfile.flush()
                    ahead = sent / bps - (time.monotonic() - began)
                    if ahead > 0:
                        time.sleep(ahead)
        self.wfile.flush()


class Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 64

    def handle_error(self, request: Any, client_address: Any) -> None:
        pass  # quiet: clients that hang up mid-body are part of the tests


def main(argv: list[str] | None = None) -> int:
    args = parse(argv)
    if not args.root.is_dir():
        print(f"fake_hub: --root {args.root} is not a directory", file=sys.stderr)
        return 2
    Handler.hub = Hub(args)
    server = Server((args.host, args.port), Handler)
    port = server.server_address[1]
    if args.port_file is not None:
        tmp = args.port_file.with_name(args.port_file.name + ".tmp")
        tmp.write_text(f"{port}\n")
        os.replace(tmp, args.port_file)

    def stop(signum: int, frame: Any) -> None:
        threading.Thread(target=server.shutdown, daemon=True).start()

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    try:
        server.serve_forever(poll_interval=0.1)
    finally:
        server.server_close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
