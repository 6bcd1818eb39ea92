"""`bench --input-len N` means N tokens as the server counts them: prompts cut through the
server's own tokenizer endpoint (and, for TTFT as vLLM's benchmark measures it, a chunk
with empty text is a token). Real processes on loopback: tests/instant_server.py with
`--tokenizer vllm|sglang` (SGLang cannot serve on this machine) — a deterministic tokenizer
that, like BPE, re-tokenizes a cut word to another length, and counts usage with it — and
without one (the fallback to words). Real vLLM and llama.cpp: test_bench_tokens_real.py."""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from pathlib import Path

import pytest
from conftest import cli
from helpers import fake_stats

from llmdeploy.bench import LoadConfig, Prompt, RequestParams, run
from llmdeploy.bench.client import Endpoint
from llmdeploy.bench.token_prompts import build_sync
from llmdeploy.client.sse import ResponseReader

Start = Callable[..., str]
KEY = "sk-tok-test"


def bench(url: str, *args: str, key: str | None = None) -> tuple[int, str, str]:
    env = dict(os.environ)
    extra: tuple[str, ...] = ()
    if key is not None:
        env["TOK_KEY"], extra = key, ("--api-key-env", "TOK_KEY")
    done = cli("bench", "--url", url, "--model", "m", *extra, *args, env=env)
    return done.returncode, done.stdout, done.stderr


@pytest.mark.parametrize("flavour", ["vllm", "sglang"])
@pytest.mark.parametrize("endpoint", ["chat", "completions"])
def test_every_request_counts_exactly_input_len(
    instant: Start, tmp_path: Path, flavour: str, endpoint: str
) -> None:
    """vLLM's and SGLang's /tokenize (SGLang's behind the API key): each request's
    usage.prompt_tokens is --input-len — the chat template's tokens included for chat, the
    BOS for completions — every prompt distinct, across the levels of a sweep too."""
    url = instant("--tokenizer", flavour, "--api-key", KEY)
    out = tmp_path / "run.json"
    code, stdout, stderr = bench(
        url, "--endpoint", endpoint, "--input-len", "37", "--requests", "30",
        "--concurrency", "1,4", "--output-len", "2", "--json", str(out), key=KEY,
    )  # fmt: skip
    assert code == 0, stderr
    assert "warning" not in stdout + stderr
    counted = "POST /tokenize, chat template included" if endpoint == "chat" else "POST /tokenize;"
    assert stdout.count(f"prompts:  37 tokens each as the server counts them ({counted}") == 2
    assert stdout.count("tokens:     1,110 in, 60 out (server usage); 37 in per request") == 2
    runs = json.loads(out.read_text())["runs"]
    for level in runs:
        assert [r["prompt_tokens"] for r in level["requests"]] == [37] * 30
        assert level["prompts"]["kind"] == "tokens" and level["prompts"]["off_target"] == 0
    seen = fake_stats(url)
    assert seen["requests"] == 60 and seen["distinct_prompts"] == 60  # no prompt repeats
    # ≈ 2 round trips a prompt (detokenize a window, count it) + finding and calibrating
    calls = seen["tokenize"] + seen["detokenize"]
    assert calls == sum(r["prompts"]["calls"] for r in runs)
    assert calls <= 3 * 60 + 10, seen


@pytest.mark.parametrize("endpoint", ["chat", "completions"])
def test_builder_is_exact_where_cut_words_retokenize_differently(
    instant: Start, endpoint: Endpoint
) -> None:
    """The library call, over lengths from one token of text up: exact every time, the
    same prompts for the same seed, others for another."""
    url = instant("--tokenizer", "vllm")
    params = RequestParams(model="m", endpoint=endpoint)
    added = 5 if endpoint == "chat" else 1  # the fake's chat template, or its BOS
    for n in (added + 1, added + 2, 16, 100, 513):
        a, b = build_sync(url, params, input_len=n, sets=[(40, 7), (40, 8)])
        assert a.origin.off_target == 0 and b.origin.off_target == 0, n
        assert a.origin.calls <= 3 * 40 + 12, (n, a.origin)
        texts = [p.text or "" for p in a.prompts]
        if n >= 16:
            assert len(set(texts)) == 40, n
            assert not set(texts) & {p.text for p in b.prompts}, n
    again = build_sync(url, params, input_len=100, sets=[(40, 7)])[0]
    first = build_sync(url, params, input_len=100, sets=[(40, 7)])[0]
    assert [p.text for p in again.prompts] == [p.text for p in first.prompts]
    # what the server counts for each, asked independently of the builder
    before = fake_stats(url)
    done = cli(
        "bench", "--url", url, "--model", "m", "--endpoint", endpoint,
        "--input-len", "100", "--requests", "40", "--output-len", "1", "--seed", "7",
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    after = fake_stats(url)
    assert after["prompt_tokens"] - before["prompt_tokens"] == 40 * 100


def test_without_a_tokenizer_endpoint_prompts_are_words_with_a_warning(
    instant: Start, tmp_path: Path
) -> None:
    url = instant()  # no /tokenize, no /extras/tokenize: 404 for both
    out = tmp_path / "run.json"
    code, stdout, stderr = bench(
        url, "--input-len", "20", "--requests", "6", "--output-len", "2", "--json", str(out)
    )
    assert code == 0, stderr
    warning = (
        f"warning: {url} has no tokenizer endpoint (POST /tokenize: HTTP 404: no route "
        "/tokenize; POST /extras/tokenize: HTTP 404: no route /extras/tokenize): "
        "--input-len 20 counts words, not tokens"
    )
    assert stderr.count(warning) == 1, stderr
    assert warning in stdout  # and under the table it concerns
    assert "prompts:  20 random words each (not tokens: no tokenizer endpoint)" in stdout
    assert "tokens:     120 in, 12 out (server usage); 20 in per request" in stdout  # words
    run = json.loads(out.read_text())["runs"][0]
    assert run["prompts"]["kind"] == "words" and run["prompts"]["input_len"] == 20
    assert fake_stats(url)["requests"] == 6  # the look for a tokenizer sent no completion


def test_tokenizer_requests_carry_the_api_key(instant: Start) -> None:
    """SGLang guards /tokenize with the API key: a wrong key is refused there, before any
    load, naming the endpoint and the likely cause."""
    url = instant("--tokenizer", "sglang", "--api-key", KEY)
    code, stdout, stderr = bench(url, "--requests", "4", key="sk-wrong")
    assert code == 1, stdout + stderr
    assert (
        "error: the server refused its tokenizer request (POST /tokenize: HTTP 401: "
        "Unauthorized)" in stderr
    )
    assert "hint: check the API key" in stderr
    counts = fake_stats(url)
    assert counts["requests"] == 0 and counts["tokenize"] == 0  # refused: uncounted
    code, _, stderr = bench(url, "--requests", "4", "--output-len", "1", key=KEY)
    assert code == 0, stderr
    assert fake_stats(url)["requests"] == 4


def test_input_len_below_what_the_chat_template_adds_exits_2(instant: Start) -> None:
    url = instant("--tokenizer", "vllm")
    code, stdout, stderr = bench(url, "--input-len", "5", "--requests", "4")
    assert code == 2, stdout + stderr
    assert (
        "error: --input-len 5 leaves no room for a prompt: a /v1/chat/completions request "
        "counts 5 tokens of its own (chat template); give at least 6"
    ) in stderr
    assert fake_stats(url)["requests"] == 0
    code, _, stderr = bench(url, "--input-len", "6", "--requests", "4", "--output-len", "1")
    assert code == 0, stderr
    assert fake_stats(url)["prompt_tokens"] == 4 * 6


def test_an_empty_text_chunk_is_a_token_as_vllm_streams_it() -> None:
    """vLLM streams one chunk per token, `"text": ""` while it holds back the bytes of an
    incomplete UTF-8 character (a random byte-level model does that often), and `vllm
    bench serve` stamps TTFT and ITL at every such chunk; so do we. Chat's role
    announcement and an empty chunk that only carries finish_reason are not tokens."""
    completions = (
        b'data: {"choices":[{"text":""}]}\n\n'  # token 1: half a character
        b'data: {"choices":[{"text":"\xc3\xa9"}]}\n\n'  # token 2 completes it
        b'data: {"choices":[{"text":"x","finish_reason":"length"}]}\n\n'
        b'data: {"choices":[{"text":"","finish_reason":"length"}]}\n\n'  # end only
        b'data: {"choices":[],"usage":{"prompt_tokens":4,"completion_tokens":3}}\n\n'
        b"data: [DONE]\n\n"
    )
    chat = (
        b'data: {"choices":[{"delta":{"role":"assistant","content":""}}]}\n\n'
        b'data: {"choices":[{"delta":{"content":""}}]}\n\n'
        b'data: {"choices":[{"delta":{"reasoning":"r"}}]}\n\n'
        b'data: {"choices":[{"delta":{},"finish_reason":"stop"}]}\n\n'
        b"data: [DONE]\n\n"
    )
    for body, is_chat, stamped in ((completions, False, [0.0, 1.0, 2.0]), (chat, True, [1.0, 2.0])):
        sink = ResponseReader(stream=True, chat=is_chat)
        sink.head(200)
        for i, event in enumerate(body.split(b"\n\n")[:-1]):
            sink.body(event + b"\n\n", float(i))
        sink.finalize(9.0)
        assert sink.error is None and sink.times == stamped, is_chat


def test_a_closed_loop_first_wave_leaves_together(instant: Start) -> None:
    """The closed loop's connections are open before the clock starts, so its first
    `concurrency` requests leave together (as `vllm bench serve`'s do) rather than the one
    reusing the reachability check's socket first and the others after their handshakes —
    on vLLM that one is prefilled alone and the loop stays out of step (TTFT reads high;
    benchmarks/bench_vs_vllm.py shows it). On an idle loopback a handshake takes
    microseconds, so this only guards the shape: one wave, one socket per worker."""
    url = instant("--ttft-ms", "20")
    params = RequestParams(model="m", max_tokens=2)
    prompts = [Prompt(text=f"p{i}") for i in range(16)]
    result = run(url, params, prompts, LoadConfig(8, requests=16))
    first = sorted(r.start for r in result.records)[:8]
    assert first[-1] - first[0] < 0.05, first  # one wave: the event loop sends 8 in a row
    assert result.connections == 8
