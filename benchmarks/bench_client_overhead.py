"""How much load the bench client can generate, and how much it adds to each request.

Against tests/instant_server.py (a separate process answering from precomputed bytes:
16-token SSE streams with usage), this measures
  1. a raw blocking-socket client, sequential: the floor (server + loopback + nothing);
  2. our client at concurrency 1: wall time per request and its measured E2E latency —
     the differences to (1) are what the client adds to each request;
  3. our client's sustained requests/s at several concurrencies, with its own CPU per
     request and the server's CPU use (so a saturated server is visible, not hidden);
  4. if aiohttp is importable (PYTHONPATH), the same closed loop with a minimal aiohttp
     streaming client, for comparison;
  5. the blocking client (readiness polls, `status`) against http.client, which the
     readiness probe used before: µs per GET /health.
Goals on a 2-core machine: ≥ 1,000 requests/s, ≤ 1 ms added per request.

Run: .venv/bin/python benchmarks/bench_client_overhead.py [requests per run, default 3000]
"""

from __future__ import annotations

import asyncio
import json
import os
import socket
import statistics
import subprocess
import sys
import time
from pathlib import Path

from llmdeploy.bench import LoadConfig, RequestParams, compute, random_prompts, run

ROOT = Path(__file__).resolve().parent.parent
INSTANT = ROOT / "tests" / "instant_server.py"
TOKENS = 16
PARAMS = RequestParams(model="m", max_tokens=TOKENS)
PROMPTS = random_prompts(64, 32, seed=0)
CLK = os.sysconf("SC_CLK_TCK")


def start_server() -> tuple[subprocess.Popen[str], str, int]:
    proc = subprocess.Popen(
        [sys.executable, str(INSTANT), "--port", "0"], stdout=subprocess.PIPE, text=True
    )
    assert proc.stdout is not None
    address = proc.stdout.readline().split()[-1]
    host, port = address.rsplit(":", 1)
    return proc, host, int(port)


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLK  # utime + stime


def raw_client(host: str, port: int, n: int) -> float:
    """Mean seconds per sequential request with the least possible client work."""
    body = json.dumps(
        {
            "model": "m",
            "messages": [{"role": "user", "content": PROMPTS[0].text}],
            "max_tokens": TOKENS,
            "stream": True,
            "stream_options": {"include_usage": True},
        }
    ).encode()
    request = (
        b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        b"Content-Length: %d\r\n\r\n%s" % (len(body), body)
    )
    with socket.create_connection((host, port)) as s:
        s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        times = []
        for _ in range(n):
            start = time.perf_counter()
            s.sendall(request)
            data = b""
            while not data.endswith(b"0\r\n\r\n"):
                data += s.recv(65536)
            times.append(time.perf_counter() - start)
    return statistics.fmean(times[n // 10 :])  # the first tenth warms up


async def aiohttp_closed_loop(url: str, concurrency: int, n: int) -> float:
    import aiohttp  # optional: only to compare

    body = {
        "model": "m",
        "messages": [{"role": "user", "content": PROMPTS[0].text}],
        "max_tokens": TOKENS,
        "stream": True,
        "stream_options": {"include_usage": True},
    }
    left = n
    connector = aiohttp.TCPConnector(limit=concurrency)
    async with aiohttp.ClientSession(connector=connector) as session:

        async def worker() -> None:
            nonlocal left
            while left > 0:
                left -= 1
                async with session.post(url + "/v1/chat/completions", json=body) as r:
                    async for line in r.content:
                        if line.startswith(b"data: {"):
                            json.loads(line[6:])

        start = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        return n / (time.perf_counter() - start)


def blocking_health(url: str, host: str, port: int, n: int) -> None:
    """GET /health n times: http.client with a connection per request (the readiness
    probe before the HTTP layer), and the layer's blocking client (one kept socket)."""
    import http.client

    start = time.perf_counter()
    for _ in range(n):
        conn = http.client.HTTPConnection(host, port, timeout=1)
        conn.request("GET", "/health")
        conn.getresponse().read()
        conn.close()
    old = (time.perf_counter() - start) / n
    try:
        from llmdeploy.client.blocking import BlockingClient
    except ImportError:  # a checkout from before the HTTP layer
        print(f"http.client, new connection each: {old * 1e6:5.0f} µs per GET /health")
        return
    client = BlockingClient(url, timeout=1)
    start = time.perf_counter()
    for _ in range(n):
        client.request("GET", "/health")
    new = (time.perf_counter() - start) / n
    client.close()
    print(
        f"GET /health: http.client, new connection each {old * 1e6:5.0f} µs; "
        f"blocking client, kept socket {new * 1e6:5.0f} µs"
    )


def main() -> int:
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 3000
    proc, host, port = start_server()
    url = f"http://{host}:{port}"
    try:
        print(f"instant server pid {proc.pid} at {url}; {TOKENS}-token streams; {n} requests/run")
        raw = raw_client(host, port, n)
        print(f"raw socket client, sequential:   {raw * 1e6:7.0f} µs per request (the floor)")

        result = run(url, PARAMS, PROMPTS, LoadConfig(1, requests=n, warmup=200))
        m = compute(result.records, result.duration)
        wall = result.duration / n
        e2e = (m["mean_e2el_ms"] or 0) / 1000
        print(f"bench client, concurrency 1:     {wall * 1e6:7.0f} µs per request (wall)")
        print(f"  added per request (wall):      {(wall - raw) * 1e6:7.0f} µs  (goal ≤ 1000)")
        print(
            f"  measured mean E2E:             {e2e * 1e6:7.0f} µs, "
            f"inflation over the floor {(e2e - raw) * 1e6:.0f} µs"
        )

        best = 0.0
        for concurrency in (1, 4, 16, 64):
            cpu0, srv0 = time.process_time(), cpu_seconds(proc.pid)
            load = LoadConfig(concurrency, requests=n, warmup=concurrency * 4)
            result = run(url, PARAMS, PROMPTS, load)
            cpu, srv = time.process_time() - cpu0, cpu_seconds(proc.pid) - srv0
            m = compute(result.records, result.duration)
            rps = m["req_per_s"] or 0.0
            best = max(best, rps)
            assert m["failed"] == 0 and m["output_tokens"] == n * TOKENS
            print(
                f"concurrency {concurrency:3d}: {rps:7,.0f} req/s, "
                f"{m['output_tok_per_s'] or 0:9,.0f} output tok/s, "
                f"p50 E2E {m['median_e2el_ms'] or 0:6.2f} ms, "
                f"client CPU {cpu / (n + load.warmup) * 1e6:4.0f} µs/req, "
                f"server CPU {srv / result.duration * 100:3.0f} % of a core"
            )
        print(f"goal ≥ 1,000 req/s: {'met' if best >= 1000 else 'MISSED'} (best {best:,.0f})")
        print(f"goal ≤ 1 ms added:  {'met' if wall - raw <= 0.001 else 'MISSED'}")
        blocking_health(url, host, port, min(n, 2000))
        try:
            for concurrency in (1, 16):
                rps = asyncio.run(aiohttp_closed_loop(url, concurrency, n))
                print(
                    f"aiohttp (minimal SSE reader), concurrency {concurrency:3d}: {rps:7,.0f} req/s"
                )
        except ImportError:
            print("aiohttp: not importable, comparison skipped")
    finally:
        proc.terminate()
        proc.wait(10)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
