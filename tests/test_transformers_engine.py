"""Real `transformers serve` (the vLLM CPU env's transformers + accelerate) serving the
tiny Qwen3 built locally: up --detach → smoke → a chat through the served name → down
with nothing left; and the launcher's alias cache, which is what makes the served name
resolvable (`transformers serve` has no --served-model-name)."""

from __future__ import annotations

import json
import subprocess
import urllib.request
from pathlib import Path

import pytest
from conftest import PROFILES, cli, engine_python
from helpers import record, session_members

from llmdeploy.engines import transformers as tf_engine

pytestmark = pytest.mark.engine
PROFILE = PROFILES / "tiny-qwen3-transformers-cpu.yaml"
NAME = "tiny-qwen3-transformers-cpu"


@pytest.fixture
def tf_env(isolated_env: dict[str, str], tiny_model: Path, tmp_path: Path) -> dict[str, str]:
    python = engine_python("vllm")
    assert python is not None
    (tmp_path / "tmp").mkdir()
    return {
        **isolated_env,
        "LLMDEPLOY_TINY_QWEN3": str(tiny_model),
        "LLMDEPLOY_TRANSFORMERS": str(python.parent / "transformers"),
        "TMPDIR": str(tmp_path / "tmp"),  # nothing of the launcher may be left here
    }


def _post(url: str, body: dict[str, object]) -> dict[str, object]:
    request = urllib.request.Request(
        url, json.dumps(body).encode(), {"content-type": "application/json"}
    )
    with urllib.request.urlopen(request, timeout=120) as answer:
        return dict(json.loads(answer.read()))


def test_up_smoke_down_on_real_transformers_serve(tf_env: dict[str, str]) -> None:
    up = cli("up", str(PROFILE), "--detach", env=tf_env, timeout=600)
    assert up.returncode == 0, up.stdout + up.stderr[-3000:]
    rec = record(tf_env, NAME) or {}
    session = int(str(rec["engine_pid"]))
    try:
        # The launcher exec'd the server: the recorded engine is `transformers serve` itself.
        cmdline = Path(f"/proc/{session}/cmdline").read_bytes().split(b"\0")
        assert b"serve" in cmdline and b"llmdeploy.engines.transformers" not in cmdline
        smoke = cli(
            "smoke", NAME, "--only", "models", "--only", "completion", "--only", "chat",
            env=tf_env, timeout=600,
        )  # fmt: skip
        print(smoke.stdout)
        assert smoke.returncode == 0, smoke.stdout + smoke.stderr
        for check in ("models", "completion", "chat"):
            line = next(x for x in smoke.stdout.splitlines() if x.startswith(check + " "))
            assert " PASS " in line, line
        # Chat under the served name (the pinned model answers no other name).
        reply = _post(
            f"{rec['base_url']}/v1/chat/completions",
            {
                "model": "tiny-qwen3",
                "messages": [{"role": "user", "content": "hi"}],
                "max_tokens": 4,
                "temperature": 0,
            },
        )
        usage = reply["usage"]
        assert isinstance(usage, dict) and usage["completion_tokens"] == 4, reply
    finally:
        down = cli("down", NAME, env=tf_env, timeout=120)
    assert down.returncode == 0, down.stderr
    assert session_members(session) == []
    assert record(tf_env, NAME) is None
    assert list(Path(tf_env["TMPDIR"]).glob("llmdeploy-hf-*")) == []  # the alias is shared


def test_alias_cache_lists_the_served_name_and_links_not_copies(
    tiny_model: Path, tmp_path: Path
) -> None:
    """What `/v1/models` and `from_pretrained(NAME)` see, read by huggingface_hub itself
    (in the engine env): the served name as a repository, its files the model's own."""
    python = engine_python("vllm")
    cache = tf_engine.alias_cache("org/tiny-chat", tiny_model, tmp_path)
    snapshot = cache / "models--org--tiny-chat" / "snapshots" / tf_engine.SNAPSHOT
    assert snapshot.is_symlink() and snapshot.resolve() == tiny_model.resolve()
    script = (
        "import sys, json; from huggingface_hub import scan_cache_dir, try_to_load_from_cache\n"
        "r = scan_cache_dir(sys.argv[1])\n"
        "print(json.dumps([[x.repo_id, sorted(x.refs)] for x in r.repos] +"
        " [try_to_load_from_cache('org/tiny-chat', 'config.json', cache_dir=sys.argv[1])]))"
    )
    out = subprocess.run(
        [str(python), "-c", script, str(cache)], capture_output=True, text=True, timeout=120
    )
    assert out.returncode == 0, out.stderr
    repos, config = json.loads(out.stdout)[:-1], json.loads(out.stdout)[-1]
    assert repos == [["org/tiny-chat", ["main"]]]
    assert Path(config).resolve() == (tiny_model / "config.json").resolve()


def _launch(served: str, model: Path, env: dict[str, str]) -> subprocess.Popen[str]:
    """The launcher exec'ing a shell that prints the hub cache it was given."""
    command = ["sh", "-c", 'echo "$HF_HUB_CACHE"']
    return subprocess.Popen(
        [*_launcher(), served, str(model), "--", *command],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip


def _alias_env(tmp_path: Path) -> dict[str, str]:
    import os

    (tmp_path / "tmp").mkdir(exist_ok=True)
    return {**os.environ, "LLMDEPLOY_CACHE": str(tmp_path / "cache"),
            "TMPDIR": str(tmp_path / "tmp")}  # fmt: skip


def _served_cache(proc: subprocess.Popen[str]) -> Path:
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err
    return Path(out.strip())


def test_launcher_reuses_one_alias_cache_and_leaves_nothing_in_tmp(
    tiny_model: Path, tmp_path: Path
) -> None:
    """Each start made a directory in /tmp that nothing removed (the launcher becomes the
    server): starts leaked one each. Now one alias per (name, model), reused."""
    env = _alias_env(tmp_path)
    first = _served_cache(_launch("org/chat", tiny_model, env))
    again = _served_cache(_launch("org/chat", tiny_model, env))
    other = _served_cache(_launch("other", tiny_model, env))
    names = tmp_path / "cache" / "transformers-names"
    assert first == again and first.parent == names and other != first
    assert sorted(names.iterdir()) == sorted([first, other])
    assert list((tmp_path / "tmp").iterdir()) == []
    link = first / "models--org--chat" / "snapshots" / tf_engine.SNAPSHOT
    assert link.resolve() == tiny_model.resolve()


def test_a_broken_alias_cache_is_replaced_not_served(tiny_model: Path, tmp_path: Path) -> None:
    env = _alias_env(tmp_path)
    place = _served_cache(_launch("m", tiny_model, env))
    link = place / "models--m" / "snapshots" / tf_engine.SNAPSHOT
    link.unlink()
    link.symlink_to(tmp_path, target_is_directory=True)  # another model's files
    assert _served_cache(_launch("m", tiny_model, env)) == place
    assert link.resolve() == tiny_model.resolve()
    assert tmp_path.exists() and (tmp_path / "cache").exists()  # the old link's target kept
    assert sorted(p.name for p in place.parent.iterdir()) == [place.name]


def test_racing_launchers_share_one_alias_cache(tiny_model: Path, tmp_path: Path) -> None:
    env = _alias_env(tmp_path)
    procs = [_launch("race", tiny_model, env) for _ in range(6)]
    places = {_served_cache(p) for p in procs}
    assert len(places) == 1
    names = tmp_path / "cache" / "transformers-names"
    assert [p.name for p in names.iterdir()] == [places.pop().name]  # no half-built leftovers


def test_an_unwritable_cache_falls_back_to_a_temporary_alias(
    tiny_model: Path, tmp_path: Path
) -> None:
    env = _alias_env(tmp_path)
    (tmp_path / "cache").write_text("a file where the cache directory should be")
    served = _served_cache(_launch("m", tiny_model, env))
    assert served.parent == tmp_path / "tmp"
    assert (served / "models--m" / "refs" / "main").read_text() == tf_engine.SNAPSHOT


def test_launcher_refuses_a_missing_model(tmp_path: Path) -> None:
    result = subprocess.run(
        [*_launcher(), "m", str(tmp_path / "nope"), "--", "true"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 1
    assert "does not exist" in result.stderr


def _launcher() -> list[str]:
    import sys

    return [sys.executable, "-m", "llmdeploy.engines.transformers"]
