"""The reasoning field as a contract: smoke names the field the engine answers under, and
a profile that pins `reasoning.field` fails smoke when the engine uses the other name —
against the fake engine standing in for vLLM (real HTTP, the official OpenAI client)."""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest
from conftest import cli
from test_smoke import fake_vllm, running  # noqa: F401 (the fixture)

PIN = "reasoning_content"


def pinned(tmp_path: Path, name: str, engine_field: str, version: str = "") -> Path:
    """A profile pinning `reasoning_content`, its engine answering under `engine_field`."""
    profile = fake_vllm(tmp_path, name, "qwen3", "--reasoning-field", engine_field)
    text = profile.read_text().replace(
        "reasoning: {parser: qwen3}", f"reasoning: {{parser: qwen3, field: {PIN}}}"
    )
    if version:
        text = text.replace("engine: {type: vllm,", f"engine: {{type: vllm, version: {version},")
    profile.write_text(text)
    return profile


def test_a_renamed_field_fails_naming_both_and_the_version(
    tmp_path: Path,
    isolated_env: dict[str, str],
    running: object,  # noqa: F811
) -> None:
    running(pinned(tmp_path, "renamed", "reasoning", "0.32.0"))  # type: ignore[operator]
    junit = tmp_path / "smoke.xml"
    result = cli("smoke", "renamed", "--json", "--junit", str(junit), env=isolated_env)
    assert result.returncode == 8, result.stdout + result.stderr
    report = json.loads(result.stdout)
    assert report["reasoning_field"] == "reasoning"
    assert report["reasoning_field_pinned"] == PIN
    by_id = {c["id"]: c for c in report["checks"]}
    check = by_id["reasoning-field"]
    assert check["status"] == "fail"
    assert check["detail"].startswith(
        "vllm 0.32.0 answers under reasoning, not reasoning_content as reasoning.field pins"
    )
    assert "reasoning_content → reasoning" in check["cause"]
    assert "smoke failed: reasoning-field" in result.stderr
    # the other checks accept either name: only the contract check fails
    assert [c for c, v in by_id.items() if v["status"] == "fail"] == ["reasoning-field"]
    properties = {p.get("name"): p.get("value") for p in ET.parse(junit).iter("property")}
    assert properties == {"reasoning_field": "reasoning", "reasoning_field_pinned": PIN}


def test_the_pinned_field_passes_and_is_named_in_the_table(
    tmp_path: Path,
    isolated_env: dict[str, str],
    running: object,  # noqa: F811
) -> None:
    running(pinned(tmp_path, "kept", PIN))  # type: ignore[operator]
    result = cli("smoke", "kept", "--only", "reasoning-field", "--only", "thinking-on",
                 env=isolated_env)  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr
    assert "\nreasoning field: reasoning_content (reasoning.field pins reasoning_content)\n" in (
        result.stdout
    )
    line = next(x for x in result.stdout.splitlines() if x.startswith("reasoning-field "))
    assert " PASS " in line and "as reasoning.field pins" in line


@pytest.mark.parametrize(
    ("reasoning", "message"),
    [
        ("{field: reasoning_content}", ":4 reasoning.field: needs reasoning.parser"),
        (
            "{parser: qwen3, field: reasoningcontent}",
            ":4 reasoning.field: Input should be 'reasoning' or 'reasoning_content'",
        ),
    ],
)
def test_bad_field_is_a_one_line_profile_error(
    tmp_path: Path, isolated_env: dict[str, str], reasoning: str, message: str
) -> None:
    profile = tmp_path / "p.yaml"
    profile.write_text(
        f"name: p\nmodel: {{source: local, path: {tmp_path}}}\nengine: vllm\n"
        f"reasoning: {reasoning}\n"
    )
    result = cli("validate", str(profile), env=isolated_env)
    assert result.returncode == 2
    (line,) = result.stderr.strip().splitlines()
    assert line.startswith(f"error: {profile}{message}")
