"""Just enough of the Hugging Face API for `HfApi().list_repo_tree` (the listing llmdeploy
verifies a found copy against), as the real hub answers it: `oid` is the git blob id (sha1
of "blob <size>\\0" + bytes); only files of LFS_FROM bytes or more carry an `lfs` sha256.
Every request is logged as a JSON line; any other path answers 404.

    python fake_hf_tree.py ROOT LOG PORT_FILE [LFS_FROM]   (serves ROOT as acme/tiny)
"""

from __future__ import annotations

import hashlib
import json
import sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

TREE = "/api/models/acme/tiny/tree/main"


def listing(root: Path, lfs_from: int) -> list[dict[str, Any]]:
    items = []
    for path in sorted(root.rglob("*")):
        if not path.is_file():
            continue
        data = path.read_bytes()
        item: dict[str, Any] = {
            "type": "file",
            "size": len(data),
            "path": path.relative_to(root).as_posix(),
            "oid": hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest(),
        }
        if len(data) >= lfs_from:
            sha256 = hashlib.sha256(data).hexdigest()
            item["lfs"] = {"oid": sha256, "size": len(data), "pointerSize": 130}
        items.append(item)
    return items


def main() -> None:
    root, log, port_file = Path(sys.argv[1]), sys.argv[2], sys.argv[3]
    lfs_from = int(sys.argv[4]) if len(sys.argv) > 4 else 0

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args: Any) -> None:
            pass

        def do_GET(self) -> None:
            with open(log, "a") as f:
                f.write(json.dumps({"path": self.path}) + "\n")
            found = self.path.startswith(TREE)
            body = json.dumps(listing(root, lfs_from)).encode() if found else b""
            self.send_response(200 if found else 404)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    ready = Path(port_file + ".tmp")
    ready.write_text(str(server.server_address[1]))
    ready.replace(port_file)  # whole, for a reader waiting for it to exist
    server.serve_forever()


if __name__ == "__main__":
    main()
