"""One-line diagnoses of an engine's failure from its last log lines."""

from __future__ import annotations

import re
from collections.abc import Sequence
from pathlib import Path

from llmdeploy.files import open_regular

# (pattern, diagnosis), most specific first. Patterns are engines' own messages.
_RULES: list[tuple[re.Pattern[str], str]] = [
    (
        re.compile(r"address already in use|errno 98\b", re.I),
        "address in use: another process holds the port (choose another or `port: auto`)",
    ),
    (
        re.compile(r"unrecognized arguments?:?\s*(.*)|no such option:?\s*(.*)", re.I),
        "unrecognized arguments{0}: the engine version does not know a flag "
        "(check engine.version and extra_args; `llmdeploy plan --engine-version`)",
    ),
    (
        re.compile(r"invalid choice: '([^']+)'", re.I),
        "invalid choice {0}: the engine does not accept this value (e.g. a reasoning parser name)",
    ),
    (
        re.compile(
            r"out of memory|OutOfMemoryError|CUDA error: out of memory|"
            r"No available memory for the cache blocks|Cannot allocate memory|"
            r"Free memory on device .* is less than desired",
            re.I,
        ),
        "out of memory: lower resources.memory_fraction or max_model_len, or use more GPUs",
    ),
    (
        # What transformers says when a model needs it — not vLLM's own start-up line, which
        # prints `trust_remote_code=False` among its settings on every start.
        re.compile(
            r"trust_remote_code=True|contains custom code|"
            r"requires you to execute the configuration file",
            re.I,
        ),
        "the model ships its own code: set resources.trust_remote_code: true",
    ),
    (
        re.compile(
            r"architectures? .*(?:not supported|are not supported)|"
            r"Model architectures .* failed to be inspected|"
            r"unknown model architecture|does not recognize this architecture",
            re.I,
        ),
        "unsupported architecture: this engine version cannot load the model (newer engine?)",
    ),
    (
        re.compile(
            r"No such file or directory|does not appear to have a file named|"
            r"Failed to load model from file|not a valid model",
            re.I,
        ),
        "the model files are missing or unreadable at the given path",
    ),
    (
        re.compile(r"ModuleNotFoundError: No module named '([^']+)'"),
        "module {0} is not installed: install the engine (e.g. pip install 'llmdeploy[vllm]')",
    ),
]


def diagnose(lines: Sequence[str]) -> str | None:
    text = "\n".join(lines)
    for pattern, message in _RULES:
        match = pattern.search(text)
        if match:
            found = next((g.strip() for g in match.groups() if g and g.strip()), "")
            return message.format(f" {found}" if found and "{0}" in message else "").replace(
                "  ", " "
            )
    return None


def tail(path: Path, lines: int = 40, max_bytes: int = 256_000, *, start: int = 0) -> list[str]:
    """The last `lines` lines of a file at or after byte `start` (where one run's lines
    begin: a diagnosis must never quote an earlier run), reading at most `max_bytes`."""
    try:
        with open_regular(path, "rb") as handle:
            handle.seek(0, 2)
            size = handle.tell()
            handle.seek(max(start, size - max_bytes, 0))
            data = handle.read()
    except OSError:
        return []
    return data.decode(errors="replace").splitlines()[-lines:] if lines > 0 else []
