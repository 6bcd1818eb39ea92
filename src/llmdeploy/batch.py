"""`llmdeploy generate`: a JSONL file of prompts through a served model into a JSONL file
of answers, a bounded number of requests in flight, resumable.

Every input line has an id: its `id` field, else its line number. Every finished prompt
appends one line to the output at once (flushed), so an interrupted run loses only the
requests in flight, and a rerun skips every id already in the output. A failed prompt is
not written: the rerun retries it. Output lines come in the order prompts finish.
"""

from __future__ import annotations

import asyncio
import fcntl
import json
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

from llmdeploy import jsontext
from llmdeploy.bench.prompts import parse_jsonl_line
from llmdeploy.client.aio import Client
from llmdeploy.client.base import Response
from llmdeploy.errors import ConflictError, InputError

# Engines name the thinking text `reasoning` (recent vLLM) or `reasoning_content` (SGLang,
# older vLLM); both land in the record's `reasoning`, apart from the `answer`.
REASONING_FIELDS = ("reasoning", "reasoning_content")
CHAT = "/v1/chat/completions"


@dataclass(frozen=True)
class Item:
    id: Any  # as the input gave it (str or int), or the line number
    line: int
    messages: list[dict[str, Any]]
    max_tokens: int | None = None

    @property
    def key(self) -> str:
        return str(self.id)


@dataclass(frozen=True)
class Settings:
    """What every request asks for: the model and the profile's preset for the mode."""

    model: str
    thinking: bool
    sampling: Mapping[str, float] = field(default_factory=dict)  # temperature, top_p, …
    template_switch: bool = False  # send chat_template_kwargs.enable_thinking (a parser)
    engine: str = "unknown"
    max_tokens: int | None = None
    reasoning_parser: str | None = None  # the profile's, for the diagnosis of null answers


@dataclass
class Outcome:
    written: int = 0
    failed: dict[str, str] = field(default_factory=dict)  # id -> error


def read_items(path: Path) -> list[Item]:
    """The prompts of a JSONL file; every problem is InputError naming `file:line`."""
    items: list[Item] = []
    seen: dict[str, int] = {}
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except OSError as exc:
        raise InputError(f"{path}: {exc.strerror or exc}") from None
    for number, text in enumerate(lines, 1):
        if text.strip():
            item = _item(f"{path}:{number}", number, text)
            if item.key in seen:
                raise InputError(f"{path}:{number}: id {item.id!r} repeats line {seen[item.key]}")
            seen[item.key] = number
            items.append(item)
    if not items:
        raise InputError(f"{path}: no prompts")
    return items


def _item(where: str, number: int, text: str) -> Item:
    try:
        prompt, obj = parse_jsonl_line(text, where)  # the same line format as `bench`
    except ValueError as exc:
        raise InputError(str(exc)) from None
    ident = obj.get("id", number)
    if not isinstance(ident, (str, int)) or isinstance(ident, bool):
        raise InputError(f"{where}: id must be a string or an integer")
    return Item(ident, number, prompt.as_messages(), prompt.max_tokens)


@contextmanager
def open_output(path: Path) -> Iterator[TextIO]:
    """The output, opened for appending and locked for the run: two runs writing one file
    would both do every prompt still missing."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        handle = open(path, "a", encoding="utf-8")  # noqa: SIM115 (closed by the `with` below)
    except OSError as exc:
        raise InputError(f"{path}: {exc.strerror or exc}") from None
    with handle:
        try:
            fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise ConflictError(f"another run is writing to {path}") from None
        yield handle


def finished_ids(path: Path) -> set[str]:
    """Ids already in the output. A torn last line (the writer was killed mid-line) is cut
    off, so the next record starts on a line of its own and the prompt is redone."""
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        return set()
    end = data.rfind(b"\n") + 1
    if end < len(data):
        with open(path, "r+b") as handle:
            handle.truncate(end)
    return {str(row["id"]) for row in _rows(data[:end]) if "id" in row}


def null_answers(path: Path) -> list[str]:
    """Ids in the output whose answer is null although thinking was off, with the text in
    the reasoning field instead (smoke's thinking-off failure): written and kept, since the
    text is there, but no client reading `content` gets an answer."""
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        return []
    return [
        str(row.get("id"))
        for row in _rows(data)
        if row.get("thinking") is False and not row.get("answer") and row.get("reasoning")
    ]


def _rows(data: bytes) -> Iterator[dict[str, Any]]:
    for line in data.splitlines():
        try:
            obj = jsontext.loads(line)
        except ValueError:
            continue
        if isinstance(obj, dict):
            yield obj


def body(item: Item, settings: Settings) -> dict[str, Any]:
    """The chat request of one prompt: the sampling preset of its thinking mode, and the
    chat template switch where the deployment has a reasoning parser."""
    out: dict[str, Any] = {"model": settings.model, "messages": item.messages}
    limit = item.max_tokens or settings.max_tokens
    if limit is not None:
        out["max_tokens"] = limit
    out.update(settings.sampling)
    if settings.template_switch:
        out["chat_template_kwargs"] = {"enable_thinking": settings.thinking}
        if settings.engine == "sglang":
            out["separate_reasoning"] = True
    return out


def record(item: Item, response: Any, settings: Settings) -> dict[str, Any]:
    """One output line: the answer and the reasoning apart."""
    choice = response["choices"][0]
    message = choice.get("message") or {}
    reasoning = next((message[k] for k in REASONING_FIELDS if message.get(k)), None)
    return {
        "id": item.id,
        "answer": message.get("content"),
        "reasoning": reasoning,
        "finish_reason": choice.get("finish_reason"),
        "thinking": settings.thinking,
        "usage": response.get("usage"),
    }


Progress = Callable[[Outcome], None]
# One prompt's failure (network, timeout, HTTP error, a response of the wrong shape): noted,
# not written, retried by the next run. Anything else is a bug and stops the run.
FAILURES = (OSError, asyncio.TimeoutError, ValueError, LookupError, TypeError, AttributeError)


async def run_async(
    base_url: str,
    items: list[Item],
    settings: Settings,
    output: TextIO,
    *,
    concurrency: int,
    api_key: str | None = None,
    timeout: float = 600.0,
    progress: Progress | None = None,
    outcome: Outcome | None = None,
) -> Outcome:
    """Send every item, at most `concurrency` at once; append each record as it finishes
    (counted in `outcome`, which the caller may pass to read it after an interrupt).
    A cancellation stops every request at once and starts no new one."""
    client = Client(base_url, api_key=api_key, timeout=timeout, user_agent="llmdeploy-generate")
    outcome = Outcome() if outcome is None else outcome
    pending = iter(items)

    async def worker() -> None:
        for item in pending:  # one shared iterator: each item goes to exactly one worker
            try:
                answer = await client.request("POST", CHAT, body(item, settings))
                line = _line(record(item, _parse(answer), settings))
            except FAILURES as exc:
                # one line: a server's error message may hold its own traceback
                outcome.failed[item.key] = " ".join(f"{type(exc).__name__}: {exc}".split())
            else:
                output.write(line + "\n")
                output.flush()  # one finished prompt, one line on disk: nothing to redo
                outcome.written += 1
            if progress is not None:
                progress(outcome)

    try:
        await client.check()
        await asyncio.gather(*(worker() for _ in range(min(concurrency, len(items)))))
    finally:
        client.close()
    return outcome


def run(base_url: str, items: list[Item], settings: Settings, output: TextIO, **kw: Any) -> Outcome:
    return asyncio.run(run_async(base_url, items, settings, output, **kw))


def _line(row: dict[str, Any]) -> str:
    """One output line, UTF-8 as it reads — unless the answer holds a lone surrogate (valid
    JSON, `"\\ud800"`, but no UTF-8 exists for it: writing it ended the run with a
    traceback), then with every non-ASCII character escaped, the same JSON value."""
    line = json.dumps(row, ensure_ascii=False)
    try:
        line.encode("utf-8")
    except UnicodeEncodeError:
        line = json.dumps(row)
    return line


def _parse(response: Response) -> Any:
    """The chat completion, or ValueError saying what came instead. A body that is not
    valid UTF-8 is read with U+FFFD for its bad bytes: the answer is kept as the server
    gave it, not failed — a rerun would get the same bytes again and never finish."""
    if response.status != 200:
        raise ValueError(f"HTTP {response.status}: {response.error}")
    try:
        obj = jsontext.loads(response.body.decode("utf-8", "replace"))
    except ValueError:
        obj = None
    if not isinstance(obj, dict) or not obj.get("choices"):
        raise ValueError(f"not a chat completion: {response.body[:200]!r}")
    return obj
