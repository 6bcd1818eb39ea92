"""The entry point's fast path (`validate`/`plan` without Typer) must say exactly what
the Typer path says: same stdout, stderr and exit code, good input and bad."""

from __future__ import annotations

from pathlib import Path

import pytest
from conftest import PROFILES, cli


@pytest.mark.parametrize("verb", ["validate", "plan"])
@pytest.mark.parametrize("content", ["good", "bad"])
def test_fast_path_says_what_typer_says(
    tmp_path: Path, isolated_env: dict[str, str], verb: str, content: str
) -> None:
    profile = PROFILES / "qwen3-8b.yaml"
    if content == "bad":
        profile = tmp_path / "bad.yaml"
        profile.write_text("name: x\nmodel: {id: a/b}\nengine: vllm\nserving: {port: -4}\n")
    fast = cli(verb, str(profile), env=isolated_env)
    typer = cli(verb, "--", str(profile), env=isolated_env)  # `--` is not on the fast path
    assert (fast.returncode, fast.stdout, fast.stderr) == (
        typer.returncode,
        typer.stdout,
        typer.stderr,
    )
    assert fast.returncode == (0 if content == "good" else 2), fast.stderr


def test_anything_else_still_goes_to_typer(isolated_env: dict[str, str]) -> None:
    result = cli("plan", "--help", env=isolated_env)
    assert result.returncode == 0 and "--engine-version" in result.stdout
    bogus = cli("plan", "a", "b", env=isolated_env)
    assert bogus.returncode == 2 and "Got unexpected extra argument" in bogus.stderr
