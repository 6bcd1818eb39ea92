"""Bad input: one line naming file, line and field; exit 2; never a traceback."""

from __future__ import annotations

from pathlib import Path

import pytest
from conftest import cli

GOOD = """\
name: ok
model: {id: Qwen/Qwen3-8B}
engine: vllm
"""

# (case id, file content, expected line, text the message must contain)
CASES: list[tuple[str, str | bytes, int | None, str]] = [
    ("empty", "", 1, "empty"),
    ("only-comments", "# nothing\n", 1, "empty"),
    ("not-a-mapping", "- a\n- b\n", 1, "mapping"),
    ("scalar", "hello\n", 1, "mapping"),
    ("tab-indent", "name: x\nmodel:\n\tid: a/b\n", 3, "invalid YAML"),
    ("bad-indent", "name: x\nmodel:\n  id: a/b\n   revision: r\n", 4, "invalid YAML"),
    ("duplicate-key", GOOD + "name: again\n", 4, "name: duplicate key (first set on line 1)"),
    (
        "nested-duplicate",
        "name: x\nmodel:\n  id: a/b\n  id: c/d\nengine: vllm\n",
        4,
        "model.id: duplicate",
    ),
    (
        "alias-bomb",
        "a: &a [x, x, x, x, x, x, x, x, x, x]\nb: &b [*a, *a, *a, *a, *a, *a, *a, *a, *a, *a]\n"
        "c: &c [*b, *b, *b, *b, *b, *b, *b, *b, *b, *b]\n"
        "d: &d [*c, *c, *c, *c, *c, *c, *c, *c, *c]\n",
        None,
        "alias bomb",
    ),
    ("binary", b"\x89PNG\r\n\x1a\n\x00\x00\xff\xfe", 1, "UTF-8"),
    ("nul-bytes", "name: x\x00\n", None, "invalid YAML"),
    (
        "wrong-type",
        GOOD + "resources: {tensor_parallel_size: many}\n",
        4,
        "resources.tensor_parallel_size: Input should be a valid integer",
    ),
    ("negative", GOOD + "resources:\n  max_model_len: -5\n", 5, "resources.max_model_len"),
    ("absurd-port", GOOD + "serving: {port: 99999}\n", 4, "serving.port: must be a port number"),
    ("fraction-zero", GOOD + "resources: {memory_fraction: 0}\n", 4, "memory_fraction"),
    ("fraction-big", GOOD + "resources: {memory_fraction: 1.5}\n", 4, "memory_fraction"),
    (
        "unknown-engine",
        "name: x\nmodel: {id: a/b}\nengine: tensorrt\n",
        3,
        "engine: Input should be 'vllm'",
    ),
    ("unknown-parser", GOOD + "reasoning: {parser: qwen4}\n", 4, "did you mean qwen3"),
    ("engine-spelling", GOOD + "reasoning: {parser: deepseek-r1}\n", 4, "did you mean deepseek_r1"),
    (
        "parser-not-in-engine",
        "name: x\nmodel: {source: local, path: .}\nengine: llamacpp\nreasoning: {parser: qwen3}\n",
        4,
        "not supported by engine llamacpp",
    ),
    (
        "parser-too-new",
        GOOD.replace("engine: vllm", "engine: {type: vllm, version: 0.9.0}")
        + "reasoning: {parser: hunyuan}\n",
        4,
        "needs 0.9.2 or newer",
    ),
    (
        "unknown-key",
        GOOD + "resources: {tensor_paralel_size: 2}\n",
        4,
        "did you mean tensor_parallel_size",
    ),
    ("unknown-top-key", GOOD + "servng: {}\n", 4, "did you mean serving"),
    (
        "missing-var",
        GOOD + "serving: {served_model_name: '${NOPE_NOT_SET}'}\n",
        4,
        "NOPE_NOT_SET is not set",
    ),
    ("inline-api-key", GOOD + "serving: {api_key: sk-123456}\n", 4, "never inline"),
    (
        "missing-path",
        "name: x\nmodel: {source: local, path: ./nowhere}\nengine: vllm\n",
        2,
        "does not exist",
    ),
    ("missing-model", "name: x\nengine: vllm\n", None, "model: required setting is missing"),
    (
        "tp-exceeds-gpus",
        GOOD + "resources: {gpus: [0], tensor_parallel_size: 2}\n",
        4,
        "does not fit the 1 GPU",
    ),
    ("bad-name", GOOD.replace("name: ok", "name: 'a b; rm -rf /'"), 1, "name: String should match"),
    (
        "bad-placeholder",
        "name: x\nmodel: {source: local, path: .}\nengine:\n  type: command\n"
        "  command: [srv, '{prot}']\n",
        3,
        "unknown placeholder {prot}",
    ),
    ("hub-id", "name: x\nmodel: {id: justaname}\nengine: vllm\n", 2, "owner/name"),
]


@pytest.mark.parametrize(
    ("content", "line", "needle"), [c[1:] for c in CASES], ids=[c[0] for c in CASES]
)
def test_bad_profile_is_one_line_exit_2(
    tmp_path: Path, content: str | bytes, line: int | None, needle: str
) -> None:
    path = tmp_path / "p.yaml"
    if isinstance(content, bytes):
        path.write_bytes(content)
    else:
        path.write_text(content)
    result = cli("validate", str(path))
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr
    first = result.stderr.splitlines()[0]
    where = f"error: {path}:{line}" if line else f"error: {path}"
    assert first.startswith(where), first
    assert first[len(where)] in " :", first
    assert needle in result.stderr, result.stderr
    assert len(result.stderr.splitlines()) <= 2  # the error, and at most a hint


def test_good_profile_passes_and_reports(tmp_path: Path) -> None:
    path = tmp_path / "p.yaml"
    path.write_text(GOOD)
    result = cli("validate", str(path))
    assert result.returncode == 0, result.stderr
    assert "ok:" in result.stdout


def test_missing_file_is_exit_2(tmp_path: Path) -> None:
    result = cli("validate", str(tmp_path / "absent.yaml"))
    assert result.returncode == 2
    assert "no such file" in result.stderr


def test_shell_metacharacters_stay_inert(tmp_path: Path) -> None:
    """A hostile served name is one argv element, quoted in the printed command."""
    evil = "x; touch PWNED $(id) `id`"
    path = tmp_path / "p.yaml"
    path.write_text(GOOD + f"serving: {{served_model_name: '{evil}'}}\n")
    result = cli("plan", str(path), "--json", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    import json
    import shlex

    plan = json.loads(result.stdout)
    assert evil in plan["argv"]
    assert evil in shlex.split(plan["command"])
    assert not (tmp_path / "PWNED").exists()
