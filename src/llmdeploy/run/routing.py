"""Telling the running router which replicas to send requests to: SMG's control-plane
`/workers` API (POST to add, DELETE /workers/{id} to remove), authorised by the key the
router was started with for this run (engines/router.py)."""

from __future__ import annotations

from llmdeploy import jsontext
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
        # 409 while SMG still drains an earlier entry of this URL: the caller tries again
        # (adopting that entry would lose the replica when the drain ends).
        answer = self._call("POST", "/workers", body)
        worker = answer.get("worker_id")
        if not isinstance(worker, str):
            raise RouterError(f"the router did not name the worker it added for {url}")
        self.ids[url] = worker

    def remove(self, url: str, *, drain: bool) -> None:
        """No new requests to `url`. SMG keeps a removed worker draining 5 s (what is in
        flight finishes); a second DELETE ends that at once — for a replica that is gone."""
        worker = self.ids.pop(url, None)
        for _ in range(0 if worker is None else 1 if drain else 2):
            try:
                self._call("DELETE", f"/workers/{worker}", None)
            except RouterError as exc:
                if exc.status != 404:  # already gone: what was asked
                    raise

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
            data = jsontext.loads(response.body or b"{}")
        except ValueError:
            return {}
        return data if isinstance(data, dict) else {}
