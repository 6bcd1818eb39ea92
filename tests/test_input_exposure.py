"""`serving.host` that other machines can reach (issue 9): `plan` and `validate` say so
in one `warning:` line on stderr, louder without an API key, and still succeed."""

from __future__ import annotations

from pathlib import Path

import pytest
from conftest import cli

GOOD = "name: web\nmodel: {id: Qwen/Qwen3-8B}\nengine: vllm\n"


def _profile(tmp_path: Path, serving: str) -> Path:
    path = tmp_path / "web.yaml"
    path.write_text(GOOD + f"serving: {serving}\n")
    return path


@pytest.mark.parametrize(
    "host", ["0.0.0.0", "'::'", "192.168.1.20", "10.0.0.5", "gpu-box.lan", "'fe80::1'"]
)
def test_exposed_without_key_is_a_loud_warning(
    tmp_path: Path, isolated_env: dict[str, str], host: str
) -> None:
    result = cli("plan", str(_profile(tmp_path, f"{{host: {host}}}")), env=isolated_env)
    assert result.returncode == 0, result.stderr
    assert "Traceback" not in result.stdout + result.stderr
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith(f"warning: serving.host {host.strip(chr(39))} "), lines[0]
    assert "open to anyone on the network" in lines[0]
    assert "no API key" in lines[0]
    assert "--host" in result.stdout  # the plan itself is still printed


def test_exposed_with_key_is_a_quieter_warning(
    tmp_path: Path, isolated_env: dict[str, str]
) -> None:
    path = _profile(tmp_path, "{host: 0.0.0.0, api_key: '${WEB_KEY}'}")
    result = cli("plan", str(path), env={**isolated_env, "WEB_KEY": "sk-web-123"})
    assert result.returncode == 0, result.stderr
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("warning: serving.host 0.0.0.0 "), lines[0]
    assert "need the API key" in lines[0]
    assert "anyone" not in lines[0]
    assert "sk-web-123" not in result.stdout + result.stderr


@pytest.mark.parametrize("host", ["127.0.0.1", "127.0.0.2", "localhost", "'::1'"])
def test_loopback_is_silent(tmp_path: Path, isolated_env: dict[str, str], host: str) -> None:
    result = cli("plan", str(_profile(tmp_path, f"{{host: {host}}}")), env=isolated_env)
    assert result.returncode == 0, result.stderr
    assert result.stderr == ""


def test_validate_names_the_file_and_still_passes(
    tmp_path: Path, isolated_env: dict[str, str]
) -> None:
    path = _profile(tmp_path, "{host: 0.0.0.0}")
    result = cli("validate", str(path), env=isolated_env)
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith(f"ok: {path}")
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith(f"warning: {path}: serving.host 0.0.0.0 "), lines[0]
