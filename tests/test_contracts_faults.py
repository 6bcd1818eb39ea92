"""An outside tester's pass over smoke's `tools`, `reasoning-field` and no-silent-null
contracts and over `generate`, against tests/instant_server.py scripted (--script) to
answer hostile or broken things over real HTTP: tool calls that are not JSON, off the
schema, under another name, an empty list or only text; both reasoning fields at once,
null / absent / empty; streamed and whole answers that disagree; content only in
reasoning; huge answers, bytes that are not UTF-8, a server that hangs up mid-answer.

The promises held here: every failure is a one-line reason in the table, the JSON and
the JUnit report, never a traceback; exit 8 for a failed check or null answers, 0 when
everything passed; `generate` keeps every row it got and says the diagnosis once."""

from __future__ import annotations

import json
import sys
import xml.etree.ElementTree as ET
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from conftest import INSTANT, cli

Rules = list[dict[str, Any]]
ROLE = {"role": "assistant", "content": ""}  # vLLM's first streamed delta


def message(content: Any = None, **fields: Any) -> dict[str, Any]:
    return {"role": "assistant", "content": content, **fields}


def script(tmp_path: Path, rules: Rules, name: str = "rules.json") -> Path:
    path = tmp_path / name
    path.write_text(json.dumps(rules))
    return path


def expectation(tmp_path: Path, *, pin: str | None = None, parser: str | None = "qwen3") -> Path:
    """A vLLM profile saying what to expect (never run: smoke --url --profile)."""
    reasoning = ""
    if parser:
        field = f", field: {pin}" if pin else ""
        reasoning = f"reasoning: {{parser: {parser}{field}}}\n"
    path = tmp_path / "expect.yaml"
    path.write_text(
        f"name: t\nmodel: {{source: local, path: {tmp_path}}}\nengine: vllm\n"
        f"serving: {{served_model_name: m}}\n{reasoning}tools: {{parser: hermes}}\n"
    )
    return path


class Smoke:
    """One `smoke --json --junit` run and one table run of the same checks, with the
    promises every run keeps checked on the way: no traceback, the exit code matching the
    verdict, one line per check in the table, JSON and JUnit telling the same story."""

    def __init__(
        self, tmp_path: Path, env: dict[str, str], url: str, profile: Path, only: tuple[str, ...]
    ) -> None:
        selection = [arg for check in only for arg in ("--only", check)]
        base = ("smoke", "--url", url, "--profile", str(profile), *selection)
        junit = tmp_path / "smoke.xml"
        result = cli(*base, "--json", "--junit", str(junit), env=env)
        table = cli(*base, env=env)
        for run in (result, table):
            assert "Traceback" not in run.stdout + run.stderr, run.stdout + run.stderr
        self.report = json.loads(result.stdout)
        self.checks = {c["id"]: c for c in self.report["checks"]}
        failed = [c for c, v in self.checks.items() if v["status"] == "fail"]
        self.code = result.returncode
        assert result.returncode == table.returncode == (8 if failed else 0), result.stderr
        if failed:
            assert f"error: smoke failed: {', '.join(failed)}" in result.stderr
        for check in self.checks.values():
            for text in (check["detail"], check["cause"] or ""):
                assert "\n" not in text and "\r" not in text, check
        # the table: a header, the reasoning field line if seen, one row per check, a total
        self.text = table.stdout
        rows = table.stdout.splitlines()
        seen = 1 if self.report["reasoning_field"] else 0
        assert len(rows) == 2 + seen + len(self.checks) + 1, table.stdout
        self.table = {r.split()[0]: r for r in rows[2 + seen : -1]}
        assert set(self.table) == set(self.checks), table.stdout
        suite = ET.parse(junit).getroot()[0]
        for case in suite.iter("testcase"):
            check = self.checks[str(case.get("name"))]
            failure = case.find("failure")
            if check["status"] == "fail":
                assert failure is not None and failure.get("message") == check["detail"]
            else:
                assert failure is None

    def __getitem__(self, check: str) -> dict[str, Any]:
        return self.checks[check]


@pytest.fixture
def smoke(
    tmp_path: Path, isolated_env: dict[str, str], instant: Callable[..., str]
) -> Callable[..., Smoke]:
    def run(
        rules: Rules, *only: str, pin: str | None = None, parser: str | None = "qwen3"
    ) -> Smoke:
        url = instant("--script", str(script(tmp_path, rules)))
        profile = expectation(tmp_path, pin=pin, parser=parser)
        return Smoke(tmp_path, isolated_env, url, profile, only)

    return run


# --- tools ------------------------------------------------------------------------------

TOOLS = {"tools": True}


def call(name: str = "get_weather", arguments: Any = '{"city": "Paris", "days": 3}') -> Rules:
    function = {"name": name, "arguments": arguments}
    answer = message(None, tool_calls=[{"id": "c0", "type": "function", "function": function}])
    return [{"match": TOOLS, "message": answer, "finish_reason": "tool_calls"}]


def test_a_scripted_good_call_passes(smoke: Callable[..., Smoke]) -> None:
    run = smoke(call(), "tools")
    assert run["tools"]["status"] == "pass"
    assert run["tools"]["detail"] == 'get_weather({"city": "Paris", "days": 3})'


@pytest.mark.parametrize(
    ("rules", "detail"),
    [
        (call(arguments='{"city": "Paris", "days": 3'), "arguments are not JSON: "),
        (call(arguments='{"city": "Paris"} and more'), "arguments are not JSON: "),
        (call(arguments=""), "arguments are not JSON: ''"),
        (call(arguments='["Paris", 3]'), "arguments do not match the schema: ['Paris', 3]"),
        (call(arguments='{"city": "Rome", "days": 3}'), "arguments do not match the schema: city"),
        (call(arguments='{"city": "Paris", "days": "3"}'), "arguments do not match the schema: da"),
        (call(arguments='{"city": "Paris", "days": true}'), "arguments do not match the schema: d"),
        (
            call(arguments='{"city": "Paris", "days": 3, "unit": "C"}'),
            "arguments do not match the schema: {",
        ),
        # OpenAI's arguments are a string of JSON: a client's json.loads fails on an object
        (call(arguments={"city": "Paris", "days": 3}), "arguments are not a JSON string: {"),
        (call(arguments=None), "arguments are not a JSON string: None"),
        (call(name="get_time"), "tool_calls names 'get_time', not get_weather"),
        (
            [{"match": TOOLS, "message": message(None, tool_calls=[]), "finish_reason": "stop"}],
            "no tool_calls (finish stop); content None",
        ),
        (
            [
                {
                    "match": TOOLS,
                    "message": message(
                        None, tool_calls=[{"id": "c0", "type": "function", "function": None}]
                    ),
                }
            ],
            "tool_calls[0] has no function: ",
        ),
        (
            # the parser did not run: text that looks like a call is no call
            [
                {
                    "match": TOOLS,
                    "message": message(
                        '<tool_call>{"name": "get_weather", "arguments": {"city": "Paris", '
                        '"days": 3}}</tool_call>'
                    ),
                }
            ],
            "no tool_calls (finish stop); content '<tool_call>",
        ),
    ],
    ids=[
        "cut-json",
        "trailing-text",
        "empty-string",
        "array",
        "off-enum",
        "string-number",
        "bool-for-int",
        "extra-key",
        "object-not-string",
        "null-arguments",
        "other-name",
        "empty-list",
        "null-function",
        "text-only",
    ],
)
def test_broken_tool_calls_fail_with_one_line(
    smoke: Callable[..., Smoke], rules: Rules, detail: str
) -> None:
    run = smoke(rules, "tools")
    check = run["tools"]
    assert check["status"] == "fail" and check["detail"].startswith(detail), check
    assert " FAIL " in run.table["tools"]


def test_a_huge_text_answer_to_a_forced_call_is_cut_in_the_report(
    smoke: Callable[..., Smoke],
) -> None:
    answer = {"message": message("x"), "repeat": 4_000_000, "finish_reason": "length"}
    run = smoke([{"match": TOOLS, **answer}], "tools")
    check = run["tools"]
    assert check["status"] == "fail", check
    assert check["detail"] == "no tool_calls (finish length); content '" + "x" * 39
    assert len(run.table["tools"]) < 400


# --- the reasoning field ------------------------------------------------------------------

ON = {"thinking": True}


def thinking(whole: dict[str, Any], deltas: list[dict[str, Any]]) -> Rules:
    """What a thinking-on request gets, whole and streamed."""
    return [
        {"match": {**ON, "stream": False}, "message": whole, "finish_reason": "length"},
        {"match": {**ON, "stream": True}, "deltas": [ROLE, *deltas], "finish_reason": "length"},
    ]


def test_both_fields_with_the_same_text_pass_naming_both(smoke: Callable[..., Smoke]) -> None:
    both = {"reasoning": "a b", "reasoning_content": "a b"}
    run = smoke(thinking(message(None, **both), [both]), "reasoning-field", pin="reasoning")
    assert run["reasoning-field"]["status"] == "pass", run["reasoning-field"]
    assert run.report["reasoning_field"] == "reasoning and reasoning_content"


@pytest.mark.parametrize("streamed", [False, True])
def test_both_fields_with_different_text_fail(smoke: Callable[..., Smoke], streamed: bool) -> None:
    same = {"reasoning": "a b", "reasoning_content": "a b"}
    differ = {"reasoning": "a b", "reasoning_content": "c d"}
    whole, delta = (same, differ) if streamed else (differ, same)
    run = smoke(thinking(message(None, **whole), [delta]), "reasoning-field", pin="reasoning")
    check = run["reasoning-field"]
    where = "streamed" if streamed else "whole"
    assert check["status"] == "fail", check
    assert check["detail"] == (
        f"reasoning and reasoning_content carry different text ({where} answer): clients "
        "reading one get another reasoning than clients reading the other"
    )


@pytest.mark.parametrize("other", ["null", "empty", "absent"])
def test_the_pinned_field_null_empty_or_absent_fails(
    smoke: Callable[..., Smoke], other: str
) -> None:
    pinned = {
        "null": {"reasoning_content": None},
        "empty": {"reasoning_content": ""},
        "absent": {},
    }[other]
    fields = {"reasoning": "a b", **pinned}
    run = smoke(
        thinking(message(None, **fields), [fields]), "reasoning-field", pin="reasoning_content"
    )
    check = run["reasoning-field"]
    assert check["status"] == "fail", check
    assert check["detail"].startswith(
        "vllm (version unknown) answers under reasoning, not reasoning_content as "
        "reasoning.field pins"
    ), check
    assert run.report["reasoning_field"] == "reasoning"


@pytest.mark.parametrize("pin", ["reasoning", "reasoning_content"])
def test_streamed_and_whole_answers_under_different_names_fail_the_pin(
    smoke: Callable[..., Smoke], pin: str
) -> None:
    """Clients read the whole answer or the stream: the pinned name must carry the
    reasoning in both, not in one of them only."""
    other = "reasoning_content" if pin == "reasoning" else "reasoning"
    for whole, streamed in ((pin, other), (other, pin)):
        rules = thinking(message(None, **{whole: "a b"}), [{streamed: "a b"}])
        run = smoke(rules, "reasoning-field", pin=pin)
        check = run["reasoning-field"]
        assert check["status"] == "fail", (whole, streamed, check)
        mode = "streamed" if streamed == other else "whole"
        client = f"delta.{pin}" if mode == "streamed" else f"message.{pin}"
        assert (
            f"answers under {other} ({mode}), not {pin} as reasoning.field pins: clients "
            f"reading {client} get nothing" in check["detail"]
        ), check
        assert run.report["reasoning_field"] == f"{whole} (streamed: {streamed})"


def test_unpinned_names_each_mode_when_they_differ(smoke: Callable[..., Smoke]) -> None:
    rules = thinking(message(None, reasoning="a b"), [{"reasoning_content": "a b"}])
    run = smoke(rules, "reasoning-field")
    assert run["reasoning-field"]["status"] == "pass"
    assert run.report["reasoning_field"] == "reasoning (streamed: reasoning_content)"
    assert "\nreasoning field: reasoning (streamed: reasoning_content)\n" in run.text


def test_no_reasoning_with_thinking_on_fails(smoke: Callable[..., Smoke]) -> None:
    rules = thinking(message("a b", reasoning=None, reasoning_content=""), [{"content": "a b"}])
    run = smoke(rules, "reasoning-field", "thinking-on", pin="reasoning")
    assert run["reasoning-field"]["detail"] == (
        "no reasoning or reasoning_content field with thinking on"
    )
    assert run["thinking-on"]["status"] == "fail"
    assert run.report["reasoning_field"] is None


# --- no silent nulls ----------------------------------------------------------------------

OFF = {"thinking": False}


def answers(whole: dict[str, Any], deltas: list[dict[str, Any]] | None = None) -> Rules:
    """What a thinking-off request gets (the JSON of json-schema included), whole and
    streamed (by default the whole answer's content, in two deltas)."""
    if deltas is None:
        text = str(whole.get("content") or "")
        deltas = [{"content": text[:2]}, {"content": text[2:]}]
    return [
        {"match": {**OFF, "stream": False}, "message": whole},
        {"match": {**OFF, "stream": True}, "deltas": [ROLE, *deltas]},
    ]


NULLS = "content is null with thinking off; the text landed in reasoning"
CAUSE = "reasoning parser qwen3 treats every answer as reasoning"


@pytest.mark.parametrize(
    ("whole", "detail"),
    [
        (message(None, reasoning="hello there"), NULLS),
        (message("", reasoning_content="hello there"), NULLS),
        (message(None, reasoning=None, reasoning_content="hello"), NULLS),
        (message("", reasoning=""), "no content (content '')"),
        (message(None), "no content (content None)"),
    ],
    ids=[
        "null+reasoning",
        "empty+reasoning_content",
        "null-reasoning+reasoning_content",
        "empty-nothing",
        "null-nothing",
    ],
)
def test_chat_without_content_fails(
    smoke: Callable[..., Smoke], whole: dict[str, Any], detail: str
) -> None:
    run = smoke(answers(whole), "chat", "thinking-off")
    for check in ("chat", "thinking-off"):
        assert run[check]["status"] == "fail", run[check]
    assert run["chat"]["detail"] == detail
    if detail == NULLS:
        assert run["thinking-off"]["detail"] == NULLS
        assert CAUSE in run["chat"]["cause"] and CAUSE in run["thinking-off"]["cause"]
        assert f"{NULLS} — likely cause: {CAUSE}" in run.table["chat"]


@pytest.mark.parametrize("content", [None, ""])
def test_reasoning_only_is_an_answer_with_thinking_on(
    smoke: Callable[..., Smoke], content: str | None
) -> None:
    rules = thinking(message(content, reasoning="a b c"), [{"reasoning": "a b c"}])
    rules += answers(message("hi there"))
    run = smoke(rules, "chat", "thinking-on", "thinking-off")
    assert [c["status"] for c in run.checks.values()] == ["pass"] * 3, run.checks
    assert run["thinking-on"]["detail"] == (
        "reasoning separated, 5 chars (content null: still thinking at max_tokens)"
    )


def test_json_in_reasoning_with_empty_content_is_named(smoke: Callable[..., Smoke]) -> None:
    run = smoke(answers(message("", reasoning='{"answer": 5, "ok": true}')), "json-schema")
    assert run["json-schema"]["detail"] == "content is null; the JSON landed in reasoning"


def test_a_stream_whose_text_is_all_reasoning_fails_with_thinking_off(
    smoke: Callable[..., Smoke],
) -> None:
    """The whole answer has content, the stream only reasoning: chat and thinking-off
    pass, yet a streaming client reading delta.content gets nothing."""
    rules = answers(message("hello there"), [{"reasoning": "hello"}, {"reasoning": " there"}])
    run = smoke(rules, "chat", "thinking-off", "stream")
    assert run["chat"]["status"] == run["thinking-off"]["status"] == "pass"
    assert run["stream"]["status"] == "fail"
    assert run["stream"]["detail"] == (
        "the stream carries no content with thinking off (the text came as reasoning "
        "deltas); the whole answer has content"
    )


def test_stream_and_whole_in_the_same_fields_pass(smoke: Callable[..., Smoke]) -> None:
    run = smoke(answers(message("hello there")), "stream")
    assert run["stream"]["status"] == "pass", run["stream"]


# --- broken transport -------------------------------------------------------------------

CHAT_OFF = {"match": OFF}
USAGE = '"usage":{"prompt_tokens":3,"completion_tokens":5,"total_tokens":8}'


def raw_chat(content: str) -> str:
    """A chat completion as text whose characters are the bytes to send."""
    return (
        '{"id":"s","object":"chat.completion","created":0,"model":"m","choices":[{"index":0,'
        f'"message":{{"role":"assistant","content":"{content}"}},"finish_reason":"stop"}}],'
        f"{USAGE}}}"
    )


@pytest.mark.parametrize(
    ("rule", "check"),
    [
        ({"match": {**OFF, "stream": False}, "body": raw_chat("caf\u00e9 \u00ff\u00fe")}, "chat"),
        ({"match": {**OFF, "stream": False}, "message": message("hello"), "cut": 150}, "chat"),
        (
            {"match": {**OFF, "stream": True}, "deltas": [ROLE, {"content": "hello"}], "cut": 250},
            "stream",
        ),
        (
            {
                "match": {**OFF, "stream": False},
                "status": 500,
                "json": {"error": {"message": 'boom\n  File "x", line 1\r\n\ud800'}},
            },
            "chat",
        ),
        ({"match": {**OFF, "stream": False}, "status": 500, "json": "\ud800 boom\nagain"}, "chat"),
        ({"match": {**OFF, "stream": False}, "status": 502, "body": "x" * 2_000_000}, "chat"),
        ({"match": {**OFF, "stream": False}, "body": "[" * 100_000}, "chat"),
    ],
    ids=[
        "not-utf8",
        "cut-whole",
        "cut-stream",
        "error-lines",
        "error-surrogate",
        "huge-error",
        "deep-json",
    ],
)
def test_a_broken_answer_is_one_line_not_a_traceback(
    smoke: Callable[..., Smoke], rule: dict[str, Any], check: str
) -> None:
    rules = [rule, *answers(message("hello there"))]
    run = smoke(rules, check)
    assert run[check]["status"] == "fail", run[check]
    assert len(run[check]["detail"]) <= 300 and run[check]["detail"], run[check]
    assert " FAIL " in run.table[check]


def test_a_huge_answer_passes_and_stays_out_of_the_report(smoke: Callable[..., Smoke]) -> None:
    rules = [{"match": {**OFF, "stream": False}, "message": message("w "), "repeat": 3_000_000}]
    run = smoke(rules, "chat")
    assert run["chat"]["status"] == "pass", run["chat"]
    assert len(run.table["chat"]) < 200


def test_hostile_model_listing_and_version_stay_one_line(smoke: Callable[..., Smoke]) -> None:
    """Text a server chose (a max_model_len, a version) never breaks a report's line."""
    listing = {"object": "list", "data": [{"id": "m", "max_model_len": "512\nFAIL  forged"}]}
    rules = [
        {"match": {"path": "/v1/models"}, "json": listing},
        {"match": {"path": "/version"}, "json": {"version": "0.32\nPASS\ud800" + "v" * 5000}},
        *thinking(message(None, reasoning="a b"), [{"reasoning": "a b"}]),
    ]
    run = smoke(rules, "models", "reasoning-field", pin="reasoning_content")
    assert run["models"]["status"] == "pass"
    assert run["models"]["detail"] == "'m' listed, max_model_len 512 FAIL forged"
    detail = run["reasoning-field"]["detail"]
    assert run["reasoning-field"]["status"] == "fail"
    assert detail.startswith("vllm 0.32 PASS\\ud800vvv"), detail
    assert len(detail) <= 300


# --- generate -------------------------------------------------------------------------------


@pytest.fixture
def deployed(tmp_path: Path, isolated_env: dict[str, str]) -> Iterator[Callable[[Rules], str]]:
    """The scripted server as a real deployment (`engine: command`, up --detach), for
    `generate`, which talks to deployments; taken down after the test."""
    names: list[str] = []

    def up(rules: Rules) -> str:
        command = [
            sys.executable,
            str(INSTANT),
            "--port",
            "{port}",
            "--host",
            "{host}",
            "--script",
            str(script(tmp_path, rules, "generate.json")),
        ]
        profile = tmp_path / "scripted.yaml"
        profile.write_text(
            f"name: scripted\nmodel: {{source: local, path: {tmp_path}}}\n"
            f"engine: {{type: command, command: {json.dumps(command)}}}\n"
            "serving: {port: auto, served_model_name: m}\nreadiness: {timeout_s: 30}\n"
        )
        result = cli("up", str(profile), "--detach", env=isolated_env)
        assert result.returncode == 0, result.stdout + result.stderr
        names.append("scripted")
        return "scripted"

    yield up
    for name in names:
        assert cli("down", name, env=isolated_env).returncode == 0


def prompts(path: Path, ids: list[str]) -> Path:
    """One prompt per id; its text is the id's word (what the script matches on)."""
    path.write_text("".join(json.dumps({"id": i, "prompt": f"{i} please"}) + "\n" for i in ids))
    return path


def rows(path: Path) -> dict[str, dict[str, Any]]:
    out: dict[str, dict[str, Any]] = {}
    for line in path.read_bytes().decode("utf-8").splitlines():  # strict: the file is UTF-8
        row = json.loads(line)
        assert row["id"] not in out, f"{row['id']} written twice"
        out[row["id"]] = row
    return out


def by_text(text: str, **rule: Any) -> dict[str, Any]:
    return {"match": {"text": text}, **rule}


def test_generate_mixed_good_and_null_rows(
    tmp_path: Path, isolated_env: dict[str, str], deployed: Callable[[Rules], str]
) -> None:
    """Thinking off: every row is kept, null answers (null or "", text in either reasoning
    field) get smoke's diagnosis once, naming them, and exit 8; thinking on, the same
    answers are what was asked for: exit 0."""
    name = deployed(
        [
            by_text("good", message=message("fine")),
            by_text("nulled", message=message(None, reasoning="the text")),
            by_text("emptied", message=message("", reasoning=None, reasoning_content="the text")),
        ]
    )
    ids = [f"good{i}" for i in range(5)] + ["nulled0", "nulled1", "emptied0"]
    source, output = prompts(tmp_path / "in.jsonl", ids), tmp_path / "out.jsonl"
    result = cli(
        "generate", name, "-i", str(source), "-o", str(output), "--no-thinking", env=isolated_env
    )
    assert result.returncode == 8, result.stdout + result.stderr
    assert "Traceback" not in result.stderr
    assert "8 of 8 prompts written" in result.stdout
    got = rows(output)
    assert set(got) == set(ids)
    assert all(got[f"good{i}"]["answer"] == "fine" for i in range(5))
    assert got["emptied0"]["answer"] == "" and got["emptied0"]["reasoning"] == "the text"
    errors = [x for x in result.stderr.splitlines() if x.startswith("error:")]
    assert len(errors) == 1, result.stderr  # once, not per row
    assert errors[0].startswith(
        "error: 3 answers: content is null with thinking off; the text landed in reasoning (ids "
    )
    assert sorted(errors[0].split("(ids ")[1].rstrip(")").split(", ")) == sorted(ids[5:])
    assert not any(
        f"good{i}" in result.stderr for i in range(5)
    ) and "likely cause: thinking was not switched off" in (result.stderr)
    thinking = tmp_path / "thinking.jsonl"
    fine = cli(
        "generate", name, "-i", str(source), "-o", str(thinking), "--thinking", env=isolated_env
    )
    assert fine.returncode == 0, fine.stderr
    assert len(rows(thinking)) == 8


def test_generate_keeps_every_row_it_got_from_a_broken_server(
    tmp_path: Path, isolated_env: dict[str, str], deployed: Callable[[Rules], str]
) -> None:
    """Good, null, huge, not-UTF-8 and lone-surrogate answers are kept; a server hanging
    up mid-answer and a multi-line HTTP 500 fail their prompt, each in one line; the run
    says both the failures and the null answers, and exits 1 (a rerun retries the
    failures and keeps what it has)."""
    huge = 2_000_000
    name = deployed(
        [
            by_text("good", message=message("fine")),
            by_text("nulled", message=message(None, reasoning="the text")),
            by_text("huge", message=message("w "), repeat=huge),
            by_text("badbytes", body=raw_chat("caf\u00e9 \u00ff ok")),
            by_text("surrogate", message=message("\ud800 lone")),
            by_text("cutoff", message=message("never whole"), cut=120),
            by_text(
                "boom",
                status=500,
                json={"error": {"message": "boom\nTraceback (most recent call last):\n  x"}},
            ),
        ]
    )
    kept = ["good0", "good1", "nulled0", "huge0", "badbytes0", "surrogate0"]
    failed = ["cutoff0", "boom0"]
    source, output = prompts(tmp_path / "in.jsonl", kept + failed), tmp_path / "out.jsonl"
    args = ("generate", name, "-i", str(source), "-o", str(output), "--no-thinking")
    result = cli(*args, env=isolated_env)
    assert result.returncode == 1, result.stdout + result.stderr
    assert "Traceback (most recent call last):\n" not in result.stderr, result.stderr
    assert "6 of 8 prompts written" in result.stdout
    got = rows(output)
    assert set(got) == set(kept)
    assert got["huge0"]["answer"] == "w " * huge
    assert got["badbytes0"]["answer"] == "caf\ufffd \ufffd ok"
    assert got["surrogate0"]["answer"] == "\ud800 lone"
    lines = result.stderr.splitlines()
    assert "error: 2 of 8 prompts failed; run the same command again to retry only those" in lines
    for key in failed:  # one line each
        assert len([x for x in lines if x.startswith(f"id {key}: ")]) == 1, lines
    assert any(x.startswith("id boom0: ValueError: HTTP 500: boom Traceback (most") for x in lines)
    assert any(x.startswith("id cutoff0: ConnectionError: ") for x in lines), lines
    (hint,) = [x for x in lines if x.startswith("hint: ")]
    assert hint.startswith(
        "hint: also 1 answers: content is null with thinking off; the text landed in "
        "reasoning (ids nulled0); likely cause: "
    ), hint
    again = cli(*args, env=isolated_env)
    assert again.returncode == 1 and "0 of 2 prompts written" in again.stdout, again.stderr
    assert set(rows(output)) == set(kept)
