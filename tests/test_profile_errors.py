"""Bad input: one line naming file, line and field; exit 2; never a traceback."""

from __future__ import annotations

import os
from pathlib import Path
from subprocess import CompletedProcess

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
    # Hostile input that used to end in a traceback (issue 9). Recursive aliases and deep
    # nesting were RecursionErrors, 5,000-digit numbers a ValueError from Python's
    # int-str conversion limit, tags and escapes crashes further down.
    ("recursive-alias", "name: &a [*a]\n", 1, "name[0]: recursive YAML alias"),
    ("recursive-alias-block", "name: &a\n  - x\n  - *a\n", 1, "name[1]: recursive"),
    ("recursive-alias-mapping", "a: &x {b: *x}\n", 1, "a.b: recursive YAML alias"),
    ("recursive-alias-nested", "name: &a {k: [1, {j: *a}]}\n", 1, "name.k[1].j: recursive"),
    ("recursive-alias-root", "&a [*a]\n", 1, "recursive YAML alias"),
    ("deep-flow-list", "name: " + "[" * 5000 + "]" * 5000 + "\n", 1, "nested more than"),
    ("deep-flow-mapping", "name: " + "{a: " * 5000 + "}" * 5000 + "\n", 1, "nested more than"),
    ("deep-block", "name:\n  " + "- " * 5000 + "x\n", 2, "nested more than"),
    (
        "deep-through-aliases",  # each anchor shallow, the chain of them 600 deep
        "a0: &a0 " + "[" * 30 + "x" + "]" * 30 + "\n"
        + "".join(f"a{i}: &a{i} {'[' * 30}*a{i - 1}{']' * 30}\n" for i in range(1, 20)),
        1,  # the line of the anchor whose content ends up too deep
        "a1[0][0][0]: nested more than",
    ),
    ("huge-int-port", GOOD + "serving: {port: " + "9" * 5000 + "}\n", 4, "serving.port: number"),
    ("huge-int-name", "name: " + "9" * 5000 + "\n", 1, "name: number too long"),
    ("huge-negative", GOOD + "restart: {max_restarts: -" + "9" * 5000 + "}\n", 4, "number too"),
    ("huge-hex", GOOD + "serving: {port: 0x" + "f" * 5000 + "}\n", 4, "number too long"),
    ("huge-float", GOOD + "readiness: {timeout_s: 1e999}\n", 4, "less than or equal to 172800"),
    ("inf", GOOD + "readiness: {timeout_s: .inf}\n", 4, "readiness.timeout_s: Input should"),
    ("inf-port", GOOD + "serving: {port: .inf}\n", 4, "serving.port: must be a port"),
    ("inf-int", GOOD + "resources: {max_model_len: -.inf}\n", 4, "resources.max_model_len"),
    ("nan", GOOD + "resources: {memory_fraction: .nan}\n", 4, "memory_fraction: NaN"),
    ("nan-nested", GOOD + "sampling:\n  thinking: {temperature: .NaN}\n", 5, "NaN"),
    ("quoted-huge-int", GOOD + "serving: {port: '" + "9" * 5000 + "'}\n", 4, "must be a port"),
    ("quoted-huge-version", "name: x\nmodel: {id: a/b}\nengine: {type: vllm, version: '"
     + "9" * 5000 + "'}\n", 3, "engine.version: not a version number"),
    ("int-key", GOOD + "1: x\n", 4, "keys must be strings, got '1'"),
    ("null-key", GOOD + "~: x\n", 4, "keys must be strings"),
    ("bool-key", GOOD + "yes: x\n", 4, "keys must be strings"),
    ("list-key", GOOD + "? [a, b]\n: x\n", 4, "keys must be strings, got a list"),
    ("mapping-key", GOOD + "? {a: b}\n: x\n", 4, "keys must be strings, got a mapping"),
    ("recursive-key", "a: &k [*k]\n", 1, "recursive"),
    ("python-object", "name: !!python/object/apply:os.system [echo hi]\n", 1, "!!python/object"),
    ("python-name", "name: !!python/name:os.system\n", 1, "not allowed in a profile"),
    ("python-root", "!!python/object:os.system {a: 1}\n", 1, "not allowed in a profile"),
    ("python-key", "? !!python/name:os.system\n: x\n", 1, "not allowed in a profile"),
    ("binary-tag", GOOD + "serving: {served_model_name: !!binary AA==}\n", 4, "!!binary"),
    ("set-tag", GOOD + "extra_args: !!set {a, b}\n", 4, "!!set"),
    ("custom-tag", GOOD + "extra_args: [!shell 'rm -rf /']\n", 4, "extra_args[0]: YAML tag"),
    ("bad-explicit-int", "name: !!int abc\n", 1, "name: not a valid int"),
    ("bad-explicit-int-sign", "name: !!int '-'\n", 1, "not a valid int"),
    ("bad-explicit-bool", "name: !!bool maybe\n", 1, "not a valid bool"),
    ("bad-explicit-float", "name: !!float ''\n", 1, "not a valid float"),
    ("nul-escape", 'name: "a\\0b"\nmodel: {id: a/b}\nengine: vllm\n', 1, "U+0000"),
    ("escape-escape", GOOD + 'serving: {served_model_name: "\\e[2J"}\n', 4, "U+001B"),
    ("surrogate-escape", GOOD + 'serving: {served_model_name: "\\ud800"}\n', 4, "U+D800"),
    ("bare-int", "42\n", 1, "not a number"),
    ("bare-null", "~\n", 1, "not null"),
    ("two-documents", GOOD + "---\n" + GOOD, 4, "invalid YAML"),
    ("bad-utf8-later", b"name: x\nmodel: \xc3\x28\n", 2, "UTF-8"),
    ("utf16", "name: x\n".encode("utf-16"), 1, "UTF-8"),
    ("ten-megabytes", "name: x\n" + "#" * 10_000_000 + "\n", None, "larger than"),
    (
        "path-too-long",
        "name: x\nmodel: {source: local, path: " + "a" * 5000 + "}\nengine: vllm\n",
        2,
        "model.path: cannot use this path: File name too long",
    ),
    (
        "path-unknown-user",
        "name: x\nmodel: {source: local, path: ~nosuchuser_llmdeploy/m}\nengine: vllm\n",
        2,
        "model.path: cannot use this path",
    ),
    (
        "cache-dir-unknown-user",
        "name: x\nmodel: {id: a/b, cache_dir: ~nosuchuser_llmdeploy/c}\nengine: vllm\n",
        2,
        "model.cache_dir: cannot use this path",
    ),
    ("host-brackets", GOOD + "serving: {host: '[::1]'}\n", 4, "not a host name or IP address"),
    ("host-huge", GOOD + "serving: {host: " + "h" * 5000 + "}\n", 4, "serving.host: not a host"),
    ("hub-id-climbs", "name: x\nmodel: {id: ../etc}\nengine: vllm\n", 2, "model.id: owner"),
    ("hub-id-huge", "name: x\nmodel: {id: " + "a" * 5000 + "/b}\nengine: vllm\n", 2, "model.id"),
    (
        "revision-climbs",
        "name: x\nmodel: {id: a/b, revision: ../../../etc}\nengine: vllm\n",
        2,
        "model.revision: not a branch",
    ),
    (
        "package-id",
        "name: x\nmodel: {source: package, id: 'os; rm', path: m.gguf}\nengine: llamacpp\n",
        2,
        "model.id: an importable package name",
    ),
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
    assert_one_error(result, path, line)
    assert needle in result.stderr, result.stderr


def assert_one_error(result: CompletedProcess[str], path: Path, line: int | None) -> None:
    """Exit 2; stderr is one `error: FILE:LINE …` line (and at most a hint); no traceback."""
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stdout + result.stderr
    lines = result.stderr.splitlines()
    assert 1 <= len(lines) <= 2, result.stderr
    where = f"error: {path}:{line}" if line else f"error: {path}"
    assert lines[0].startswith(where), lines[0]
    assert lines[0][len(where)] in " :", lines[0]
    assert len(lines) == 1 or lines[1].startswith("hint: "), result.stderr
    assert len(lines[0]) < 500, "a hostile value must not become a screenful"


# Every numeric setting, and string settings a number can be written into, each given a
# 5,000-digit integer: one process validates them all, one error line per file.
HUGE = "9" * 5000
HUGE_FIELDS = {
    "serving.port": "serving: {port: HUGE}",
    "resources.max_model_len": "resources: {max_model_len: HUGE}",
    "resources.tensor_parallel_size": "resources: {tensor_parallel_size: HUGE}",
    "resources.memory_fraction": "resources: {memory_fraction: HUGE}",
    "resources.gpus": "resources: {gpus: HUGE}",
    "resources.gpus[0]": "resources: {gpus: [HUGE]}",
    "readiness.timeout_s": "readiness: {timeout_s: HUGE}",
    "restart.max_restarts": "restart: {max_restarts: HUGE}",
    "restart.backoff_s": "restart: {backoff_s: -HUGE}",
    "sampling.thinking.top_k": "sampling: {thinking: {top_k: HUGE}}",
    "sampling.non_thinking.temperature": "sampling: {non_thinking: {temperature: HUGE.5}}",
    "serving.served_model_name": "serving: {served_model_name: HUGE}",
    "description": "description: HUGE",
    "env.BIG": "env: {BIG: HUGE}",
    "extra_args[0]": "extra_args: [HUGE]",
    "engine.version": "engine: {type: vllm, version: HUGE}",
}


def test_huge_numbers_in_every_field_are_one_line_each(tmp_path: Path) -> None:
    paths = {}
    for field, setting in HUGE_FIELDS.items():
        path = tmp_path / f"{field}.yaml"
        body = GOOD.replace("engine: vllm\n", "") if field.startswith("engine.") else GOOD
        path.write_text(body + setting.replace("HUGE", HUGE) + "\n")
        paths[field] = path
    result = cli("validate", *map(str, paths.values()))
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stdout + result.stderr
    lines = result.stderr.splitlines()
    assert len(lines) == len(paths), result.stderr
    for (field, path), line in zip(paths.items(), lines, strict=True):
        assert line.startswith(f"error: {path}:"), line
        assert f" {field}: number too long" in line, line


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


def test_fifo_without_writer_is_an_error_not_a_hang(tmp_path: Path) -> None:
    """open() of a FIFO nobody writes to blocks forever; `validate p.yaml` must not."""
    path = tmp_path / "p.yaml"
    os.mkfifo(path)
    result = cli("validate", str(path), timeout=30)
    assert_one_error(result, path, 1)
    assert "empty" in result.stderr
