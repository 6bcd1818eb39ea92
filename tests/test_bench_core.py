"""The core of `llmdeploy bench`: metrics by hand-computed examples, gates, prompts, the
HTTP/SSE parsing, and the runner against real server processes on loopback."""

from __future__ import annotations

import asyncio
import json
import socket
import subprocess
import sys
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from helpers import FAKE_ENGINE, fake_stats

from llmdeploy.bench import (
    METRIC_NAMES,
    LoadConfig,
    Prompt,
    RequestParams,
    RequestRecord,
    arrival_times,
    build_body,
    compute,
    evaluate,
    format_table,
    load_jsonl,
    load_prompts,
    load_sharegpt,
    parse_gate,
    parse_gates,
    parse_slos,
    percentile,
    random_prompts,
    run,
    to_json,
)
from llmdeploy.client.http11 import HTTPConnection
from llmdeploy.client.sse import ResponseReader


# -- metrics ---------------------------------------------------------------------------------
def rec(
    latency: float,
    chunks: list[float],
    prompt: int | None,
    output: int | None,
    error: str | None = None,
    stream: bool = True,
) -> RequestRecord:
    return RequestRecord(
        index=0,
        start=0.0,
        stream=stream,
        latency=latency,
        ttft=chunks[0] if chunks else None,
        chunk_times=chunks,
        prompt_tokens=prompt,
        output_tokens=output,
        error=error,
    )


# r1 asked for 16 tokens but the model stopped after 3 (its 2nd chunk carried two tokens):
# TPOT must divide by the 2 tokens really generated after the first, not by 15.
RECORDS = [
    rec(1.0, [0.2, 0.4, 0.6, 1.0], 10, 5),  # tpot 0.8/4 = 0.2, itl .2 .2 .4
    rec(0.5, [0.1, 0.5], 20, 3),  # tpot 0.4/2 = 0.2, itl .4
    rec(0.3, [0.3], 5, 1),  # one token: no tpot, no itl
    rec(0.05, [], None, None, error="HTTP 500: boom"),
]


def test_percentile_interpolates_like_numpy() -> None:
    assert percentile([4, 1, 3, 2], 50) == 2.5
    assert percentile([1, 2, 3, 4], 90) == pytest.approx(3.7)
    assert percentile([1, 2, 3, 4], 99) == pytest.approx(3.97)
    assert percentile([7], 99) == 7
    with pytest.raises(ValueError):
        percentile([], 50)


def test_tpot_uses_server_token_count_and_skips_single_tokens() -> None:
    assert RECORDS[0].tpot == pytest.approx(0.2)
    assert RECORDS[1].tpot == pytest.approx(0.2)  # not 0.4/15: the output ended early
    assert RECORDS[2].tpot is None
    assert RECORDS[3].tpot is None
    assert rec(1.0, [0.5], 10, None).tpot is None  # no usage: never guessed
    assert RECORDS[0].itl == pytest.approx([0.2, 0.2, 0.4])


def test_compute_hand_example() -> None:
    m = compute(RECORDS, 2.0)
    assert tuple(m) == METRIC_NAMES
    expected = {
        "requests": 4,
        "completed": 3,
        "failed": 1,
        "error_rate": 0.25,
        "duration_s": 2.0,
        "req_per_s": 1.5,
        "input_tokens": 35,
        "output_tokens": 9,
        "input_tok_per_s": 17.5,
        "output_tok_per_s": 4.5,
        "total_tok_per_s": 22.0,
        "requests_without_usage": 0,
        "mean_ttft_ms": 200.0,
        "median_ttft_ms": 200.0,
        "p90_ttft_ms": 280.0,
        "p99_ttft_ms": 298.0,
        "mean_tpot_ms": 200.0,
        "p99_tpot_ms": 200.0,
        "mean_itl_ms": 300.0,
        "median_itl_ms": 300.0,
        "p90_itl_ms": 400.0,
        "mean_e2el_ms": 600.0,
        "median_e2el_ms": 500.0,
        "p90_e2el_ms": 900.0,
        "p99_e2el_ms": 990.0,
    }
    for name, value in expected.items():
        assert m[name] == pytest.approx(value), name
    assert m["goodput_fraction"] is None and m["goodput_req_per_s"] is None
    assert m["max_send_lag_ms"] is None


def test_goodput_under_slos() -> None:
    # ttft ≤ 250 and tpot ≤ 250: r0, r1 pass; r2 (ttft 300) and the failure do not.
    m = compute(RECORDS, 2.0, parse_slos("ttft=250ms,tpot=250ms"))
    assert m["goodput_fraction"] == 0.5 and m["goodput_req_per_s"] == 1.0
    # tpot ≤ 100: r0 and r1 fail; r2 has one token, no TPOT, so it passes (as in vLLM).
    m = compute(RECORDS, 2.0, parse_slos("tpot=100,e2el=2s"))
    assert m["goodput_fraction"] == 0.25
    # non-streamed requests have no TTFT, so a TTFT SLO cannot be met
    m = compute([rec(0.1, [], 5, 5, stream=False)], 1.0, {"ttft": 500.0})
    assert m["goodput_fraction"] == 0.0


def test_missing_usage_makes_token_figures_unknown() -> None:
    m = compute([RECORDS[0], rec(0.5, [0.1, 0.5], None, None)], 1.0)
    assert m["requests_without_usage"] == 1
    assert m["output_tokens"] is None and m["output_tok_per_s"] is None
    assert m["mean_tpot_ms"] == pytest.approx(200.0)  # only the request with usage
    empty = compute([], 0.0)
    assert empty["req_per_s"] is None and empty["mean_ttft_ms"] is None


def test_open_loop_send_lag() -> None:
    late = RequestRecord(index=0, start=0.105, stream=True, scheduled=0.1, latency=0.1)
    assert compute([late], 1.0)["max_send_lag_ms"] == pytest.approx(5.0)


def test_parse_slos() -> None:
    assert parse_slos("ttft=500ms, tpot=50,e2el=2s") == {"ttft": 500, "tpot": 50, "e2el": 2000}
    for bad, needle in [("ttft:500", "bad SLO"), ("itl=5ms", "unknown SLO"), ("", "bad SLO")]:
        with pytest.raises(ValueError, match=needle):
            parse_slos(bad)


# -- gates -----------------------------------------------------------------------------------
def test_gates_pass_and_fail() -> None:
    metrics = {"p99_ttft_ms": 612.5, "output_tok_per_s": 150.0, "failed": 0.0}
    gates = parse_gates(["p99_ttft_ms>500", "output_tok_per_s < 100", "failed>=1"])
    (v,) = evaluate(gates, metrics)
    assert v.gate.metric == "p99_ttft_ms" and v.value == 612.5
    assert "612.5 > 500" in str(v) and "p99_ttft_ms>500" in str(v)
    assert evaluate(parse_gates(["p99_ttft_ms>700", "failed>0"]), metrics) == []
    assert evaluate([parse_gate("failed == 0")], metrics)[0].value == 0.0
    assert parse_gate("p99_ttft_ms>=5e2").threshold == 500.0
    assert parse_gate("p99_ttft_ms<=-1").op == "<="


def test_gate_on_unmeasured_metric_fails() -> None:
    (v,) = evaluate([parse_gate("goodput_fraction<0.9")], {"goodput_fraction": None})
    assert v.value is None and "not measured" in str(v)


@pytest.mark.parametrize("expr", ["p99_ttft_ms", "p99_ttft_ms>", "p99_ttft_ms=>5", "a>b", "!=3"])
def test_gate_syntax_errors_name_the_expression(expr: str) -> None:
    with pytest.raises(ValueError, match="bad --fail-if expression") as e:
        parse_gate(expr)
    assert repr(expr) in str(e.value)


def test_gate_unknown_metric_lists_known_names() -> None:
    with pytest.raises(ValueError) as e:
        parse_gate("p99_ttf_ms>500")
    message = str(e.value)
    assert "'p99_ttf_ms>500'" in message and "did you mean p99_ttft_ms" in message
    assert all(name in message for name in METRIC_NAMES)


# -- prompts and request bodies --------------------------------------------------------------
def test_random_prompts_are_seeded() -> None:
    a, b = random_prompts(5, 32, seed=3), random_prompts(5, 32, seed=3)
    assert a == b and a != random_prompts(5, 32, seed=4)
    assert all(len((p.text or "").split()) == 32 for p in a)
    assert len({p.text for p in a}) == 5
    with pytest.raises(ValueError):
        random_prompts(0, 5)


def test_jsonl_prompts(tmp_path: Path) -> None:
    path = tmp_path / "p.jsonl"
    lines = [
        {"prompt": "hello"},
        {"messages": [{"role": "system", "content": "s"}, {"role": "user", "content": "u"}]},
        {"prompt": "x", "max_tokens": 7},
    ]
    path.write_text("\n".join(json.dumps(x) for x in lines) + "\n\n")
    prompts = load_prompts(path)
    assert [p.as_text() for p in prompts] == ["hello", "s\nu", "x"]
    assert prompts[1].as_messages()[1] == {"role": "user", "content": "u"}
    assert prompts[2].max_tokens == 7
    path.write_text('{"prompt": "ok"}\n{"text": "no"}\n')
    with pytest.raises(ValueError, match=r"p\.jsonl:2"):
        load_jsonl(path)
    path.write_text('{"prompt": "ok"}\nnot json\n')
    with pytest.raises(ValueError, match=r"p\.jsonl:2: not JSON"):
        load_jsonl(path)


def test_sharegpt_prompts(tmp_path: Path) -> None:
    path = tmp_path / "sg.json"
    data = [
        {"conversations": [{"from": "gpt", "value": "hi"}, {"from": "human", "value": "Q1"}]},
        {"conversations": [{"from": "gpt", "value": "only the model"}]},
        {"id": "no conversations"},
        {"conversations": [{"from": "human", "value": "Q2"}, {"from": "human", "value": "no"}]},
    ]
    path.write_text(json.dumps(data))
    assert [p.text for p in load_sharegpt(path)] == ["Q1", "Q2"]
    assert [p.text for p in load_prompts(path)] == ["Q1", "Q2"]
    path.write_text(json.dumps([{"conversations": []}]))
    with pytest.raises(ValueError, match="no conversation with a human turn"):
        load_sharegpt(path)


def test_request_body() -> None:
    params = RequestParams(model="m", max_tokens=32, ignore_eos=True, temperature=0.0)
    body = build_body(Prompt(text="hi"), params)
    assert body == {
        "model": "m",
        "stream": True,
        "messages": [{"role": "user", "content": "hi"}],
        "max_tokens": 32,
        "stream_options": {"include_usage": True},
        "temperature": 0.0,
        "ignore_eos": True,
    }
    params = RequestParams(model="m", endpoint="completions", stream=False, extra_body={"top_k": 5})
    body = build_body(Prompt(text="hi", max_tokens=3), params)
    assert body == {"model": "m", "stream": False, "prompt": "hi", "max_tokens": 3, "top_k": 5}


def test_arrival_times() -> None:
    times = arrival_times(50.0, seed=1, count=2000)
    assert times == arrival_times(50.0, seed=1, count=2000) and times[0] == 0.0
    assert times[-1] / (len(times) - 1) == pytest.approx(1 / 50, rel=0.1)  # mean gap
    assert all(t < 2.0 for t in arrival_times(50.0, seed=1, duration=2.0))
    assert arrival_times(float("inf"), count=3) == [0.0, 0.0, 0.0]
    with pytest.raises(ValueError):
        LoadConfig(concurrency=4)  # neither requests nor duration


# -- wire formats, fed in every possible split ------------------------------------------------
SSE = (
    b": ping\r\n\r\n"
    b'data: {"choices":[{"delta":{"role":"assistant","content":""}}]}\r\n\r\n'
    b'data: {"choices":[{"delta":{"reasoning_content":"think"}}]}\r\n\r\n'
    b'data: {"choices":[{"delta":{"reasoning":"more"}}]}\n\n'
    b'data: {"choices":[{"delta":{"content":"answer"},"finish_reason":"stop"}]}\n\n'
    b'data: {"choices":[],"usage":{"prompt_tokens":4,"completion_tokens":3}}\n\n'
    b"data: [DONE]\n\n"
)


def test_sse_parser_any_split() -> None:
    for cut in range(len(SSE)):
        sink = ResponseReader(stream=True, chat=True)
        sink.head(200)
        sink.body(SSE[:cut], 1.0)
        sink.body(SSE[cut:], 2.0)
        sink.finalize(3.0)
        assert sink.error is None and len(sink.times) == 3, cut
        assert sink.usage == {"prompt_tokens": 4, "completion_tokens": 3}
        assert sink.finish == "stop" and sink.chars == len("thinkmoreanswer")


def test_sse_error_event_and_non_sse_body() -> None:
    sink = ResponseReader(stream=True, chat=True)
    sink.head(200)
    sink.body(b'data: {"error": {"message": "out of KV cache"}}\n\ndata: [DONE]\n\n', 1.0)
    sink.finalize(1.0)
    assert sink.error == "error in stream: out of KV cache"
    sink = ResponseReader(stream=True, chat=False)
    sink.head(200)
    sink.body(b'{"choices": []}', 1.0)
    sink.finalize(1.0)
    assert sink.error is not None and "no SSE events" in sink.error


class _Transport(asyncio.Transport):
    def write(self, data: Any) -> None:
        pass

    def close(self) -> None:
        pass


def _feed(response: bytes, step: int) -> tuple[ResponseReader, HTTPConnection]:
    async def go() -> tuple[ResponseReader, HTTPConnection]:
        conn = HTTPConnection()
        conn.connection_made(_Transport())
        sink = ResponseReader(stream=True, chat=True)
        done = conn.request(b"GET / HTTP/1.1\r\n\r\n", sink)
        for i in range(0, len(response), step):
            conn.data_received(response[i : i + step])
        await asyncio.wait_for(done, 1)
        return sink, conn

    return asyncio.run(go())


def test_http_chunked_response_in_any_pieces() -> None:
    pieces = [SSE[i : i + 37] for i in range(0, len(SSE), 37)]  # chunks cut mid-line
    body = b"".join(b"%x\r\n%s\r\n" % (len(p), p) for p in pieces)
    response = (
        b"HTTP/1.1 100 Continue\r\n\r\n"
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n" + body + b"0\r\n\r\n"
    )
    for step in (*range(1, 41), len(response)):
        sink, conn = _feed(response, step)
        sink.finalize(0.0)
        assert sink.status == 200 and sink.error is None and len(sink.times) == 3, step
        assert conn.reusable


def test_http_content_length_and_connection_close() -> None:
    response = b"HTTP/1.1 404 Not Found\r\nContent-Length: 20\r\nConnection: close\r\n\r\n"
    sink, conn = _feed(response + b'{"error":"no model"}', 3)
    sink.finalize(0.0)
    assert sink.error == "HTTP 404: no model" and not conn.reusable


# -- real processes --------------------------------------------------------------------------
Start = Callable[..., str]


def test_closed_loop_against_real_server(instant: Start) -> None:
    url = instant()
    before = fake_stats(url)
    params = RequestParams(model="m", max_tokens=16)
    result = run(url, params, random_prompts(50, 24, seed=1), LoadConfig(8, requests=200))
    after = fake_stats(url)
    assert len(result.records) == 200 and [r.index for r in result.records] == list(range(200))
    assert all(r.ok for r in result.records), {r.error for r in result.records}
    assert result.connections <= 8
    m = compute(result.records, result.duration)
    assert m["completed"] == 200 and m["failed"] == 0
    assert m["output_tokens"] == after["completion_tokens"] - before["completion_tokens"] == 3200
    assert m["input_tokens"] == after["prompt_tokens"] - before["prompt_tokens"] == 200 * 24
    assert all(r.ttft is not None and len(r.chunk_times) == 16 for r in result.records)
    assert all(r.finish_reason == "length" for r in result.records)


def test_poisson_open_loop_against_real_server(instant: Start) -> None:
    url = instant()
    load = LoadConfig(rate=100.0, duration=2.0, seed=7)
    result = run(url, RequestParams(model="m", max_tokens=8), random_prompts(10, 16), load)
    assert len(result.records) == len(arrival_times(100.0, seed=7, duration=2.0))
    assert all(r.ok for r in result.records)
    m = compute(result.records, result.duration)
    assert m["output_tokens"] == fake_stats(url)["completion_tokens"] == 8 * len(result.records)
    assert m["max_send_lag_ms"] is not None and m["max_send_lag_ms"] < 500
    assert 1.9 < result.duration < 4


def test_timings_and_early_end_with_a_paced_server(instant: Start) -> None:
    url = instant(
        "--ttft-ms", "40", "--itl-ms", "10", "--eos-after", "4", "--reasoning-tokens", "2"
    )
    prompts = random_prompts(4, 8)
    result = run(url, RequestParams(model="m", max_tokens=16), prompts, LoadConfig(2, requests=4))
    for r in result.records:
        assert r.ok and r.output_tokens == 4 and r.finish_reason == "stop"
        assert r.ttft is not None and r.ttft >= 0.04  # the first token was reasoning text
        assert r.tpot is not None and 0.008 < r.tpot < 0.05
    long = run(
        url,
        RequestParams(model="m", max_tokens=16, ignore_eos=True),
        prompts,
        LoadConfig(1, requests=1),
    )
    assert long.records[0].output_tokens == 16


def test_completions_and_non_streaming(instant: Start) -> None:
    url = instant()
    for params in (
        RequestParams(model="m", endpoint="completions", max_tokens=5),
        RequestParams(model="m", stream=False, max_tokens=5),
        RequestParams(model="m", endpoint="completions", stream=False, max_tokens=5),
    ):
        result = run(url + "/v1", params, random_prompts(3, 4), LoadConfig(2, requests=6))
        assert all(r.ok and r.output_tokens == 5 and r.prompt_tokens == 4 for r in result.records)
        assert all((r.ttft is not None) == params.stream for r in result.records)


def test_failures_are_recorded_per_request(instant: Start) -> None:
    url = instant("--fail-every", "5", "--api-key", "sekret")
    params, prompts = RequestParams(model="m", max_tokens=4), random_prompts(5, 4)
    result = run(url, params, prompts, LoadConfig(4, requests=100), api_key="sekret")
    errors = [r.error for r in result.records if not r.ok]
    assert errors == ["HTTP 500: injected failure"] * 20
    m = compute(result.records, result.duration)
    assert m["failed"] == 20 and m["output_tokens"] == 80 * 4
    denied = run(url, params, prompts, LoadConfig(2, requests=4), api_key="wrong")
    assert {r.error for r in denied.records} == {"HTTP 401: invalid API key"}
    assert {r.status for r in denied.records} == {401}


def test_timeouts_and_unreachable_server(instant: Start) -> None:
    url = instant("--ttft-ms", "3000")
    result = run(
        url, RequestParams(model="m"), random_prompts(2, 4), LoadConfig(2, requests=2), timeout=0.3
    )
    for r in result.records:
        assert r.error is not None and r.error.startswith("TimeoutError")
        assert 0.29 < r.latency < 1.5
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with pytest.raises(ConnectionError, match=f"cannot connect to http://127.0.0.1:{port}"):
        run(
            f"http://127.0.0.1:{port}",
            RequestParams(model="m"),
            random_prompts(1, 1),
            LoadConfig(requests=1),
        )


def test_server_dropping_idle_keepalive_sockets_is_not_an_error(instant: Start) -> None:
    url = instant("--close-after", "3")
    result = run(
        url,
        RequestParams(model="m", max_tokens=4),
        random_prompts(5, 4),
        LoadConfig(4, requests=120),
    )
    assert all(r.ok for r in result.records), {r.error for r in result.records}
    assert result.connections >= 120 // 3


def test_fake_engine_http10_reasoning_field(tmp_path: Path) -> None:
    """tests/fake_engine.py: HTTP/1.0 (a body ended by closing), thinking in `reasoning`."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    proc = subprocess.Popen([sys.executable, str(FAKE_ENGINE), "--port", str(port)])
    try:
        url = f"http://127.0.0.1:{port}"
        for _ in range(100):
            try:
                urllib.request.urlopen(url + "/health", timeout=1).close()
                break
            except OSError:
                asyncio.run(asyncio.sleep(0.05))
        params = RequestParams(model="fake", max_tokens=8)
        result = run(url, params, random_prompts(3, 4), LoadConfig(2, requests=10))
        assert all(r.ok and r.ttft is not None and r.output_tokens == 8 for r in result.records)
        assert all(r.output_chars > 0 for r in result.records)
    finally:
        proc.terminate()
        proc.wait(10)


def test_reports(instant: Start) -> None:
    url = instant()
    params = RequestParams(model="m", max_tokens=4)
    result = run(url, params, random_prompts(3, 4), LoadConfig(2, requests=10), api_key="k3y")
    slos = parse_slos("ttft=1s,e2el=2s")
    m = compute(result.records, result.duration, slos)
    violations = evaluate(parse_gates(["req_per_s<1e9", "failed>0"]), m)
    table = format_table(result, m, slos=slos, violations=violations)
    assert "10 completed, 0 failed" in table and "TTFT" in table and "E2E latency" in table
    assert "goodput:    100.0 %" in table and "FAIL: req_per_s" in table
    doc = to_json(result, m, slos=slos, violations=violations)
    text = json.dumps(doc, allow_nan=False)
    assert "k3y" not in text
    assert doc["passed"] is False and len(doc["requests"]) == 10
    assert doc["requests"][0]["chunk_times"] and doc["summary"]["completed"] == 10
