"""`llmdeploy bench` as a user runs it: real CLI processes against real servers —
tests/instant_server.py (via --url, or as a `command` profile for --compare) and the fake
engine. Request counts are checked on the server's side (/stats)."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest
import yaml
from conftest import INSTANT, cli
from helpers import FAKE_ENGINE, fake_stats, record, session_members, wait_no_members, wait_phase

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"

Start = Callable[..., str]


def bench(
    url: str, *args: str, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    return cli("bench", "--url", url, "--model", "m", *args, env=env)


def instant_profile(tmp_path: Path, name: str, *switches: str) -> Path:
    """A `command` profile serving the instant server with the given latency switches."""
    argv = [sys.executable, str(INSTANT), "--host", "{host}", "--port", "{port}", *switches]
    data = {
        "name": name,
        "model": {"source": "local", "path": str(tmp_path)},
        "engine": {"type": "command", "command": argv},
        "serving": {"port": "auto", "served_model_name": "m"},
        "readiness": {"timeout_s": 30},
    }
    path = tmp_path / f"{name}.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def test_table_and_json_keep_every_request(instant: Start, tmp_path: Path) -> None:
    url = instant("--ttft-ms", "5", "--itl-ms", "1")
    out = tmp_path / "reports" / "run.json"
    args = ("--requests", "12", "--concurrency", "3", "--output-len", "8", "--input-len", "20")
    result = bench(url, *args, "--slo", "ttft=2s,e2el=5s", "--json", str(out))
    assert result.returncode == 0, result.stderr
    table = result.stdout
    assert "12 completed, 0 failed" in table
    assert "closed loop, concurrency 3; 12 requests" in table
    assert "240 in, 96 out (server usage)" in table  # 12 x 20 words in, 12 x 8 tokens out
    assert "goodput:    100.0 % of requests" in table
    for row in ("TTFT", "TPOT", "ITL", "E2E latency"):
        assert f"\n{row} " in table
    doc = json.loads(out.read_text())
    assert doc["passed"] is True and len(doc["runs"]) == 1
    run = doc["runs"][0]
    assert run["concurrency"] == 3 and run["slos_ms"] == {"ttft": 2000.0, "e2el": 5000.0}
    assert run["summary"]["completed"] == 12 and run["summary"]["output_tokens"] == 96
    assert run["summary"]["median_ttft_ms"] >= 5
    assert len(run["requests"]) == 12
    assert all(len(r["chunk_times"]) == 8 and r["output_tokens"] == 8 for r in run["requests"])
    assert fake_stats(url)["requests"] == 12  # no hidden extra requests


def test_sweep_draws_a_png_chart(instant: Start, tmp_path: Path) -> None:
    url = instant("--ttft-ms", "2")
    chart, out = tmp_path / "sweep.png", tmp_path / "sweep.json"
    args = ("--requests", "8", "--concurrency", "1,2,4", "--output-len", "4")
    result = bench(url, *args, "--chart", str(chart), "--json", str(out))
    assert result.returncode == 0, result.stderr
    assert chart.read_bytes()[:8] == PNG_MAGIC
    for level in (1, 2, 4):
        assert f"== concurrency {level} ==" in result.stdout
    summary = result.stdout.split("\nlevel ")[1]  # the one-line-per-level table
    assert len([x for x in summary.splitlines() if x.startswith("concurrency ")]) == 3
    runs = json.loads(out.read_text())["runs"]
    assert [r["concurrency"] for r in runs] == [1, 2, 4]
    assert fake_stats(url)["requests"] == 24


def test_passing_gate_exits_0(instant: Start) -> None:
    url = instant()
    gates = ("--fail-if", "failed>0", "--fail-if", "output_tok_per_s<1")
    result = bench(url, "--requests", "5", "--output-len", "4", *gates)
    assert result.returncode == 0, result.stderr
    assert "FAIL" not in result.stdout


def test_failing_gate_exits_10_naming_the_figure(instant: Start, tmp_path: Path) -> None:
    url = instant("--ttft-ms", "30")
    out = tmp_path / "gate.json"
    gates = ("--fail-if", "p99_ttft_ms>10", "--fail-if", "failed>0")
    result = bench(url, "--requests", "4", "--output-len", "2", *gates, "--json", str(out))
    assert result.returncode == 10, result.stdout + result.stderr
    line = result.stderr.strip().splitlines()[-1]
    # the server waits 30 ms before the first token; a loaded machine only adds to that
    assert line.startswith("error: p99_ttft_ms = ") and "> 10 (--fail-if 'p99_ttft_ms>10')" in line
    assert float(line.split()[3]) >= 30, line
    assert "failed" not in line.split(";")[0].split("(")[0]  # only the gate that holds
    assert "FAIL: p99_ttft_ms = " in result.stdout
    doc = json.loads(out.read_text())  # written before the verdict, for CI to keep
    assert doc["passed"] is False
    assert doc["runs"][0]["violations"][0]["metric"] == "p99_ttft_ms"


@pytest.mark.parametrize(
    ("gate", "message"),
    [
        ("p99_ttft_ms=>500", "error: bad --fail-if expression 'p99_ttft_ms=>500'"),
        ("p99_tft_ms>500", "did you mean p99_ttft_ms"),
        ("p99_ttft_ms>fast", "error: bad --fail-if expression"),
    ],
)
def test_bad_gate_exits_2_before_any_load(instant: Start, gate: str, message: str) -> None:
    url = instant()
    result = bench(url, "--requests", "5", "--fail-if", "failed>0", "--fail-if", gate)
    assert result.returncode == 2
    assert message in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1 and "Traceback" not in result.stderr
    assert result.stdout == ""
    assert fake_stats(url)["requests"] == 0


def test_bad_options_exit_2_in_one_line(instant: Start, tmp_path: Path) -> None:
    url = instant()
    (tmp_path / "file").write_text("")
    for args, message in [
        (("--json", str(tmp_path / "file" / "r.json")), "cannot create its directory"),
        (("--concurrency", "1,x"), "--concurrency takes whole numbers"),
        (("--slo", "ttft=fast"), "bad SLO"),
        (("--prompts", "/nonexistent.jsonl"), "/nonexistent.jsonl: No such file"),
        (("--endpoint", "responses"), "--endpoint is chat or completions"),
        (("--rate", "5", "--chart", "x.png"), "--chart plots against concurrency"),
    ]:
        result = bench(url, *args)
        assert result.returncode == 2, (args, result.stderr)
        assert message in result.stderr and len(result.stderr.strip().splitlines()) == 1
    assert fake_stats(url)["requests"] == 0


def test_chart_without_matplotlib_is_refused_before_load(instant: Start, tmp_path: Path) -> None:
    blocker = tmp_path / "no-mpl" / "matplotlib"
    blocker.mkdir(parents=True)
    (blocker / "__init__.py").write_text("raise ImportError('not installed')\n")
    env = {**__import__("os").environ, "PYTHONPATH": str(blocker.parent)}
    url = instant()
    result = bench(url, "--chart", str(tmp_path / "c.png"), env=env)
    assert result.returncode == 2
    assert "--chart needs matplotlib" in result.stderr and "llmdeploy[bench]" in result.stderr
    assert fake_stats(url)["requests"] == 0


def test_completions_from_a_prompt_file_without_streaming(instant: Start, tmp_path: Path) -> None:
    url = instant()
    prompts = tmp_path / "p.jsonl"
    prompts.write_text('{"prompt": "one two three"}\n{"prompt": "four five", "max_tokens": 2}\n')
    out = tmp_path / "r.json"
    args = ("--prompts", str(prompts), "--endpoint", "completions", "--no-stream")
    result = bench(url, *args, "--requests", "4", "--output-len", "5", "--json", str(out))
    assert result.returncode == 0, result.stderr
    assert "/completions, not streaming" in result.stdout
    assert "10 in, 14 out (server usage)" in result.stdout  # 3+2+3+2 in; 5+2+5+2 out


def test_every_request_failing_exits_1(instant: Start) -> None:
    url = instant("--fail-every", "1")
    result = bench(url, "--requests", "3")
    assert result.returncode == 1
    assert "every request failed (concurrency 1): HTTP 500: injected failure" in result.stderr


def test_compare_two_profiles_side_by_side(tmp_path: Path, isolated_env: dict[str, str]) -> None:
    fast = instant_profile(tmp_path, "fast", "--ttft-ms", "2")
    slow = instant_profile(tmp_path, "slow", "--ttft-ms", "40")
    out = tmp_path / "ab.json"
    args = ("--requests", "6", "--output-len", "4", "--json", str(out))
    result = cli("bench", "--compare", str(fast), str(slow), *args, env=isolated_env)
    assert result.returncode == 0, result.stderr
    assert "== fast (A) vs slow (B) ==" in result.stdout
    row = next(x for x in result.stdout.splitlines() if x.startswith("median_ttft_ms"))
    ratio = float(row.split()[-1].rstrip("x"))
    assert ratio > 5, row  # 40 ms against 2 ms to the first token
    assert "stopped fast" in result.stderr and "stopped slow" in result.stderr
    runs = json.loads(out.read_text())["runs"]
    assert [r["side"] for r in runs] == ["fast", "slow"]
    assert runs[1]["summary"]["median_ttft_ms"] > 5 * runs[0]["summary"]["median_ttft_ms"]
    assert record(isolated_env, "fast") is None and record(isolated_env, "slow") is None


def test_compare_takes_a_down_when_b_fails_to_start(
    tmp_path: Path, isolated_env: dict[str, str]
) -> None:
    good = instant_profile(tmp_path, "good")
    bad = tmp_path / "bad.yaml"
    data = yaml.safe_load(good.read_text())
    data["name"] = "bad"
    data["engine"]["command"] = [sys.executable, str(FAKE_ENGINE), "--port", "{port}",
                                 "--exit-during-start", "1"]  # fmt: skip
    bad.write_text(yaml.safe_dump(data))
    result = cli("bench", "--compare", str(good), str(bad), "--requests", "2", env=isolated_env)
    assert result.returncode == 3, result.stdout + result.stderr
    assert "error: bad did not come up (exit 3)" in result.stderr
    assert "stopped good" in result.stderr
    assert record(isolated_env, "good") is None
    bad_left = record(isolated_env, "bad")  # a failed start is kept, with its reason, …
    assert bad_left is None or bad_left["phase"] == "failed"  # … until `down` removes it


def test_compare_refuses_a_bad_second_profile_before_starting(
    tmp_path: Path, isolated_env: dict[str, str]
) -> None:
    good = instant_profile(tmp_path, "good")
    typo = tmp_path / "typo.yaml"
    typo.write_text(good.read_text().replace("readiness:", "readines:"))
    result = cli("bench", "--compare", str(good), str(typo), env=isolated_env)
    assert result.returncode == 2
    assert "typo.yaml" in result.stderr and "ready at" not in result.stdout


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM])
def test_interrupted_compare_takes_its_deployment_down(
    tmp_path: Path, isolated_env: dict[str, str], signum: int
) -> None:
    slow = instant_profile(tmp_path, "slow", "--ttft-ms", "200")
    other = instant_profile(tmp_path, "other")
    proc = subprocess.Popen(
        [sys.executable, "-m", "llmdeploy", "bench", "--compare", str(slow), str(other),
         "--requests", "1000"],
        env=isolated_env, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
        stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        rec = wait_phase(isolated_env, "slow", "ready", timeout=30)
        time.sleep(0.5)  # the load is running now
        proc.send_signal(signum)
        _, stderr = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 128 + signum, stderr
    assert "interrupted" in stderr and "stopped slow" in stderr
    assert record(isolated_env, "slow") is None and record(isolated_env, "other") is None
    assert wait_no_members(int(str(rec["engine_pid"])), 5) == []
    assert session_members(int(str(rec["engine_pid"]))) == []
