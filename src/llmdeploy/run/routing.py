"""Telling the running router which replicas to send requests to: SMG's control-plane
`/workers` API (POST to add, DELETE /workers/{id} to remove), authorised by the key the
router was started with for this run (engines/router.py)."""

from __future__ import annotations

import json

from llmdeploy.client.blocking import BlockingClient

TIMEOUT = 5.0


class RouterError(Exception):
    """The router refused (`status`) or did not answer (status 0)."""

    def __init__(self, message: str, status: int = 0):
        super().__init__(message)
        self.status = status


class RouterAdmin:
    def __init__(self, base_url: str, admin_key: str, worker_key: str | None):
        self.client = BlockingClient(
            base_url, api_key=admin_key, timeout=TIMEOUT, user_agent="llmdeploy-admin"
        )
        self.worker_key = worker_key
        self.ids: dict[str, str] = {}  # replica URL -> the router's worker id

    def add(self, url: str) -> None:
        body: dict[str, object] = {"url": url}
        if self.worker_key:
            body["api_key"] = self.worker_key
        try:
            answer = self._call("POST", "/workers", body)
        except RouterError as exc:
            # A removal SMG has queued but not finished: the old entry still holds the URL.
            if exc.status != 409:
                raise
            answer = {"worker_id": self._find(url)}
        worker = answer.get("worker_id")
        if not isinstance(worker, str):
            raise RouterError(f"the router did not name the worker it added for {url}")
        self.ids[url] = worker

    def remove(self, url: str) -> None:
        worker = self.ids.pop(url, None)
        if worker is not None:
            self._call("DELETE", f"/workers/{worker}", None)

    def _find(self, url: str) -> str | None:
        listing = self._call("GET", "/workers", None).get("workers")
        for worker in listing if isinstance(listing, list) else []:
            if isinstance(worker, dict) and worker.get("url") == url:
                found = worker.get("id")
                return found if isinstance(found, str) else None
        return None

    def forget(self) -> None:
        """The router was replaced: it knows no worker any more."""
        self.ids.clear()

    def close(self) -> None:
        self.client.close()

    def _call(self, method: str, path: str, body: object) -> dict[str, object]:
        try:
            response = self.client.request(method, path, body)
        except OSError as exc:
            raise RouterError(f"{method} {path}: no answer from the router ({exc})") from None
        if response.status >= 300:
            text = response.body.decode(errors="replace")[:200]
            raise RouterError(f"{method} {path}: HTTP {response.status}: {text}", response.status)
        try:
            data = json.loads(response.body or b"{}")
        except ValueError:
            return {}
        return data if isinstance(data, dict) else {}
