"""The one HTTP layer (llmdeploy.client) against real servers on loopback: JSON and SSE,
the API key header, keep-alive reuse counted on the server's side, timeouts, a server
closing idle sockets, HTTP/1.0 bodies ended by closing — for the async client (bench,
generate, smoke) and the blocking one (readiness, status) — and the readiness Probe
built on it. Plus the property the interrupt work rests on: a cancelled request always
ends cancelled, whatever the moment."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from helpers import FAKE_ENGINE, fake_stats
from sysview import free_port

from llmdeploy.client.aio import Client
from llmdeploy.client.base import Server, Timing
from llmdeploy.client.blocking import BlockingClient
from llmdeploy.client.sse import ResponseReader
from llmdeploy.run.readiness import Answer, Probe, probe_verdict

Start = Callable[..., str]
CHAT = "/v1/chat/completions"


def ask(tokens: int = 4, **extra: Any) -> dict[str, Any]:
    return {"model": "m", "messages": [{"role": "user", "content": "a b c"}],
            "max_tokens": tokens, **extra}  # fmt: skip


# -- addresses and heads ---------------------------------------------------------------------
def test_server_address_prefix_and_key() -> None:
    s = Server.parse("http://127.0.0.1:8000/v1/", api_key="sk-1")
    assert (s.host, s.port, s.prefix, s.tls) == ("127.0.0.1", 8000, "", False)
    tls = Server.parse("https://gpu-box/team/v1")
    assert (tls.port, tls.prefix, tls.tls) == (443, "/team", True)
    assert tls.encode("GET", "/health").startswith(b"GET /team/health HTTP/1.1\r\n")
    get = s.encode("GET", "/v1/models")
    assert b"Authorization: Bearer sk-1\r\n" in get and b"Content-Type" not in get
    assert b"Accept-Encoding: identity\r\n" in get  # the parser reads identity bodies only
    assert "sk-1" not in repr(s)
    with pytest.raises(ValueError, match="http"):
        Server.parse("127.0.0.1:8000")


# -- the async client ------------------------------------------------------------------------
def test_async_json_key_and_one_connection_for_many_requests(instant: Start) -> None:
    url = instant("--api-key", "sekret")

    async def go() -> tuple[list[int], Any, Any, int]:
        keyed, anonymous = Client(url, api_key="sekret"), Client(url + "/v1")
        try:
            codes = [(await keyed.request("POST", CHAT, ask())).status for _ in range(10)]
            models = await keyed.request("GET", "/v1/models")
            denied = await anonymous.request("GET", "/v1/models")
        finally:
            keyed.close()
            anonymous.close()
        return codes, models, denied, keyed.pool.opened

    codes, models, denied, opened = asyncio.run(go())
    assert codes == [200] * 10 and models.json()["data"][0]["id"] == "m"
    assert (denied.status, denied.error) == (401, "invalid API key")
    assert opened == 1  # one socket per client, reused; the third is this /stats request
    assert fake_stats(url)["connections"] == 3


def test_async_stream_read_as_it_arrives(instant: Start) -> None:
    url = instant("--ttft-ms", "30", "--itl-ms", "10")

    async def go() -> tuple[ResponseReader, Timing]:
        client = Client(url)
        sink, timing = ResponseReader(stream=True, chat=True), Timing()
        body = json.dumps(ask(5, stream=True, stream_options={"include_usage": True}))
        try:
            await client.exchange(client.server.head("POST", CHAT) + b"%d\r\n\r\n%s" % (
                len(body), body.encode()), sink, timing)  # fmt: skip
        finally:
            client.close()
        sink.finalize(timing.ended)
        return sink, timing

    sink, timing = asyncio.run(go())
    assert sink.error is None and len(sink.times) == 5 and sink.finish == "length"
    assert sink.usage == {"prompt_tokens": 3, "completion_tokens": 5, "total_tokens": 8}
    assert timing.sent + 0.03 <= sink.times[0] <= sink.times[-1] <= timing.ended
    assert sink.times[-1] - sink.times[0] >= 0.035  # paced: stamped on arrival, not at the end


def test_async_timeout_refused_and_stale_sockets(instant: Start) -> None:
    slow, dropping = instant("--ttft-ms", "3000"), instant("--close-after", "1")

    async def go() -> tuple[float, list[int], int]:
        client = Client(slow, timeout=0.3)
        start = time.monotonic()
        with pytest.raises(TimeoutError, match=r"no complete response in 0\.3 s"):
            await client.request("POST", CHAT, ask())
        took = time.monotonic() - start
        client.close()
        with pytest.raises(ConnectionError, match=r"cannot connect to http://127\.0\.0\.1:"):
            await Client(f"http://127.0.0.1:{free_port()}").check()
        # The server drops each socket after one answer without saying so: every next
        # request finds its idle socket closed and must be sent again on a fresh one.
        client = Client(dropping)
        codes = [(await client.request("POST", CHAT, ask())).status for _ in range(8)]
        client.close()
        return took, codes, client.pool.opened

    took, codes, opened = asyncio.run(go())
    assert 0.29 < took < 2
    assert codes == [200] * 8 and opened == 8


def test_a_cancelled_request_always_ends_cancelled(instant: Start) -> None:
    """Cancel a request at every event-loop iteration from its start — connecting, sending,
    waiting — with a fresh connection each time. It must end in CancelledError every time.
    With asyncio.wait_for around the connect (as before) some offsets return normally on
    Python 3.10/3.11: the cancellation is swallowed (python/cpython#86296)."""
    url = instant("--ttft-ms", "500")

    async def attempt(ticks: int) -> str:
        client = Client(url)
        task = asyncio.ensure_future(client.request("POST", CHAT, ask()))
        for _ in range(ticks):
            await asyncio.sleep(0)
        task.cancel()
        try:
            await task
        except asyncio.CancelledError:
            return "cancelled"
        finally:
            client.close()
        return f"completed after {ticks} ticks"

    async def go() -> list[str]:
        return [await attempt(ticks) for ticks in range(30)]

    assert set(asyncio.run(go())) == {"cancelled"}


# -- the blocking client and the readiness probe ---------------------------------------------
def test_blocking_client_keeps_one_socket_and_bounds_each_request(instant: Start) -> None:
    url = instant("--ttft-ms", "1500", "--api-key", "k")
    client = BlockingClient(url, api_key="k", timeout=0.3)
    try:
        assert [client.request("GET", "/health").status for _ in range(20)] == [200] * 20
        assert client.request("GET", "/v1/models").json()["data"][0]["id"] == "m"
        start = time.monotonic()
        with pytest.raises(TimeoutError):
            client.request("POST", CHAT, ask())  # answered after 1.5 s
        assert time.monotonic() - start < 1.5
        assert client.request("GET", "/health").status == 200  # on a fresh socket
    finally:
        client.close()
    assert client.opened == 2 and fake_stats(url)["connections"] == 3  # +1: /stats itself
    with pytest.raises(ConnectionRefusedError):
        BlockingClient(f"http://127.0.0.1:{free_port()}", timeout=1).request("GET", "/health")


def test_blocking_client_resends_on_a_socket_the_server_closed(instant: Start) -> None:
    client = BlockingClient(instant("--close-after", "1"), timeout=5)
    assert [client.request("POST", CHAT, ask()).status for _ in range(6)] == [200] * 6
    assert client.opened == 6
    client.close()


@pytest.fixture
def fake_engine() -> Iterator[str]:
    """tests/fake_engine.py: HTTP/1.0, every body ended by closing the connection."""
    port = free_port()
    proc = subprocess.Popen([sys.executable, str(FAKE_ENGINE), "--port", str(port)])
    url = f"http://127.0.0.1:{port}"
    try:
        probe = Probe(url, "/health", model="fake", timeout=1)
        deadline = time.monotonic() + 20
        while not probe.healthy():
            assert time.monotonic() < deadline and proc.poll() is None, "fake engine never up"
            time.sleep(0.05)
        yield url
    finally:
        proc.terminate()
        proc.wait(10)


def test_probe_against_an_http10_engine(fake_engine: str) -> None:
    probe = Probe(fake_engine, "/health", model="fake")
    assert probe.healthy() and probe.healthy()
    answer = probe.generate_one()
    assert probe_verdict(answer) == "ok" and json.loads(answer.body)["choices"]
    assert probe.client.opened == 3  # HTTP/1.0: no keep-alive, a socket per request
    probe.close()


def test_probe_answers_and_verdicts(instant: Start) -> None:
    url = instant("--api-key", "k")
    keyed = Probe(url, "/health", model="m", api_key="k")
    assert keyed.healthy() and probe_verdict(keyed.generate_one()) == "ok"
    # `status` uses it this way: one request, read the status, drop the probe.
    assert Probe(url, "/health", model="m").request("GET", "/health").status == 200
    denied = Probe(url, "/health", model="m").generate_one()
    assert denied.status == 401 and probe_verdict(denied) == "fail"
    nobody = Probe(f"http://127.0.0.1:{free_port()}", "/health", model="m")
    assert nobody.request("GET", "/health") == Answer(0) and not nobody.healthy()
    assert probe_verdict(Answer(0)) == probe_verdict(Answer(503)) == "wait"
    assert probe_verdict(Answer(200, b'{"choices": []}')) == "fail"
