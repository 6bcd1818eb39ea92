"""Numbers on the command line (issue 9): every float/int option of every command refuses
negative values, zero where zero means nothing, nan, inf (except `bench --rate`), text and
absurdly long numbers, with one `error: --option: …` line and exit 2, before anything runs.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from conftest import cli

# How to reach each option: the command and the arguments it needs besides the option.
UP = ("up", "demo-cpu")
GEN = ("generate", "nothing-running", "-i", "in.jsonl", "-o", "out.jsonl")
# (command, option, zero is meaningful, inf is meaningful)
OPTIONS: list[tuple[tuple[str, ...], str, bool, bool]] = [
    (UP, "--timeout", False, False),
    (UP, "--grace", False, False),
    (("down", "x"), "--grace", False, False),
    (("logs", "x"), "--lines", True, False),
    (("logs", "x"), "-n", True, False),
    (("bench",), "--requests", False, False),
    (("bench",), "--duration", False, False),
    (("bench",), "--rate", False, True),
    (("bench",), "--burstiness", False, False),
    (("bench",), "--input-len", False, False),
    (("bench",), "--output-len", False, False),
    (("bench",), "--seed", True, False),
    (("bench",), "--temperature", True, False),
    (("bench",), "--warmup", True, False),
    (("bench",), "--timeout", False, False),
    (GEN, "--concurrency", False, False),
    (GEN, "--max-tokens", False, False),
    (GEN, "--timeout", False, False),
]


def _bad_values(zero_ok: bool, inf_ok: bool) -> list[str]:
    return ["-1", "nan"] + ([] if zero_ok else ["0"]) + ([] if inf_ok else ["inf"])


# Every option through the four the issue names; the other spellings (one rule checks
# them all) through one option of each kind, and the one that accepts inf.
MORE = ["abc", "NaN", "0.0", "-0", "1e999", "-inf", "9" * 5000, "1" * 20, ""]
CASES = [
    pytest.param(command, option, value, id=f"{command[0]}{option}={value[:8]}")
    for command, option, zero_ok, inf_ok in OPTIONS
    for value in _bad_values(zero_ok, inf_ok)
] + [
    pytest.param(command, option, value, id=f"{command[0]}{option}={value[:8]}")
    for command, option in [(UP, "--timeout"), (("logs", "x"), "--lines"), (("bench",), "--rate")]
    for value in MORE
    if not (option == "--lines" and value == "-0")  # that is 0 lines: fine
]


@pytest.mark.parametrize(("command", "option", "value"), CASES)
def test_bad_number_is_one_line_naming_the_option(
    tmp_path: Path,
    isolated_env: dict[str, str],
    command: tuple[str, ...],
    option: str,
    value: str,
) -> None:
    result = cli(*command, option, value, env=isolated_env, cwd=tmp_path)
    assert result.returncode == 2, result.stdout + result.stderr
    assert "Traceback" not in result.stdout + result.stderr
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    long_name = "--lines" if option == "-n" else option
    assert lines[0].startswith(f"error: {long_name}: must be "), lines[0]
    assert len(lines[0]) < 200, lines[0]
    assert not (tmp_path / "out.jsonl").exists()  # refused before anything ran


def test_zero_is_accepted_where_it_means_something(isolated_env: dict[str, str]) -> None:
    """`logs -n 0 -f` follows only new lines; warmup, seed and temperature 0 are ordinary.
    Each command then fails for another reason, which shows the number got through."""
    logs = cli("logs", "nosuch", "-n", "0", env=isolated_env)
    assert "--lines" not in logs.stderr, logs.stderr
    assert "no log" in logs.stderr, logs.stderr
    numbers = ["--warmup", "0", "--seed", "0", "--temperature", "0", "--rate", "inf"]
    bench = cli("bench", *numbers, "--endpoint", "neither", env=isolated_env)
    assert bench.returncode == 2, bench.stderr
    assert bench.stderr.startswith("error: --endpoint"), bench.stderr
