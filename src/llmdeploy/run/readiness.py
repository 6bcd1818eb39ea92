"""Is the engine ready to serve? Health endpoint first, then (optionally) one real
1-token request, because `/v1/models` and early `/health` answers can come before
an engine serves. Plain http.client: fast, and nothing to install."""

from __future__ import annotations

import http.client
import json
from dataclasses import dataclass
from urllib.parse import urlsplit


@dataclass(frozen=True)
class Answer:
    status: int  # 0 when there was no HTTP answer (refused, reset, timed out)
    body: bytes = b""


class Probe:
    def __init__(
        self,
        base_url: str,
        health_path: str,
        *,
        model: str,
        api_key: str | None = None,
        timeout: float = 1.0,
    ):
        parts = urlsplit(base_url)
        self.host = parts.hostname or "127.0.0.1"
        self.port = parts.port or 80
        self.health_path = health_path
        self.model = model
        self.timeout = timeout
        self.headers = {"Content-Type": "application/json"}
        if api_key:
            self.headers["Authorization"] = f"Bearer {api_key}"

    def request(self, method: str, path: str, body: bytes | None = None) -> Answer:
        conn = http.client.HTTPConnection(self.host, self.port, timeout=self.timeout)
        try:
            conn.request(method, path, body=body, headers=self.headers)
            response = conn.getresponse()
            return Answer(response.status, response.read())
        except (OSError, http.client.HTTPException):
            # Refused, reset or hanging while the engine loads: "still starting".
            return Answer(0)
        finally:
            conn.close()

    def healthy(self) -> bool:
        return self.request("GET", self.health_path).status == 200

    def generate_one(self) -> Answer:
        body = {"model": self.model, "prompt": "Hello", "max_tokens": 1, "temperature": 0}
        return self.request("POST", "/v1/completions", json.dumps(body).encode())


def probe_verdict(answer: Answer) -> str:
    """'ok', 'wait' (try again), or 'fail' (the engine will not accept it)."""
    if answer.status == 200:
        try:
            return "ok" if json.loads(answer.body).get("choices") else "fail"
        except (ValueError, AttributeError):
            return "fail"
    if answer.status in (0, 408, 425, 429) or answer.status >= 500:
        return "wait"
    return "fail"
