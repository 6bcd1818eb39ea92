"""Is the engine ready to serve? Health endpoint first, then (optionally) one real
1-token request, because `/v1/models` and early `/health` answers can come before
an engine serves. Through the blocking client of the one HTTP layer (llmdeploy.client):
no asyncio to import, one keep-alive socket for the many polls of a start."""

from __future__ import annotations

import json
from dataclasses import dataclass

from llmdeploy import jsontext
from llmdeploy.client.blocking import BlockingClient


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
        self.health_path = health_path
        self.model = model
        self.timeout = timeout
        self.client = BlockingClient(
            base_url, api_key=api_key, timeout=timeout, user_agent="llmdeploy-probe"
        )

    def request(self, method: str, path: str, body: bytes | None = None) -> Answer:
        try:
            response = self.client.request(method, path, body=body)
        except OSError:
            # Refused, reset or hanging while the engine loads: "still starting".
            return Answer(0)
        return Answer(response.status, response.body)

    def healthy(self) -> bool:
        return self.request("GET", self.health_path).status == 200

    def generate_one(self) -> Answer:
        body = {"model": self.model, "prompt": "Hello", "max_tokens": 1, "temperature": 0}
        return self.request("POST", "/v1/completions", json.dumps(body).encode())

    def close(self) -> None:
        self.client.close()


def probe_verdict(answer: Answer) -> str:
    """'ok', 'wait' (try again), or 'fail' (the engine will not accept it)."""
    if answer.status == 200:
        try:
            return "ok" if jsontext.loads(answer.body).get("choices") else "fail"
        except (ValueError, AttributeError):
            return "fail"
    if answer.status in (0, 408, 425, 429) or answer.status >= 500:
        return "wait"
    return "fail"
