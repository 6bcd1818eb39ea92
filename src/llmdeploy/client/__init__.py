"""The one HTTP layer: every request llmdeploy itself sends to a server goes through here
(readiness and status probes, bench, generate, smoke's raw requests; smoke's API checks
use the official OpenAI client on purpose — that is what they check).

- base.Server — where (`http(s)://host:port[/prefix][/v1]`), API key header, request heads
- aio.Client — async: `request(method, path, payload) -> Response` (JSON), `exchange(data,
  sink)` for a response read as it arrives (SSE: sse.ResponseReader), `check()`; keep-alive
  pool sized to the requests in flight; a timeout per response and per connect
- blocking.BlockingClient — the same `request()` for synchronous code, one idle connection
- parser.ResponseParser — the HTTP/1.1 framing both use; http11 — its asyncio transport
- interrupt.Interrupts — SIGINT/SIGTERM/SIGHUP end a command's waits (exit 128+signum)

Failures are OSError (ConnectionError, TimeoutError); an HTTP error status is a Response.
Submodules are imported by name: a command that only polls must not pay for asyncio.
"""
