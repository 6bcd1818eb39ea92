"""`transformers serve` (Hugging Face's own OpenAI-compatible server), through a launcher.

Flags checked against transformers 5.19's own parser (tests/test_engine_contracts.py).
`transformers serve` has no `--served-model-name`: it answers under the name of a model in
the Hugging Face hub cache (`/v1/models` is a scan of that cache, and answers 500 when the
directory does not exist), and a preloaded model (its FORCE_MODEL argument) pins the name
requests must use. So the launcher

    python -m llmdeploy.engines.transformers SERVED_NAME MODEL_PATH -- transformers serve …

makes a private hub cache in which SERVED_NAME is a repository whose `main` snapshot is a
symlink to MODEL_PATH (no copy), points HF_HUB_CACHE at it and execs the server: same pid,
same process group, so the run core supervises the server itself. HF_HUB_OFFLINE=1: the
engine never downloads (llmdeploy pulls first).

The alias cache is a few links, one per (name, model) pair under llmdeploy's own cache
(`<cache>/transformers-names/`), reused by every run: the launcher becomes the server, so
nothing of it is left to remove a per-run directory at the end — one in /tmp leaked a
directory per start.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import sys
import tempfile
from pathlib import Path

from llmdeploy.engines.base import BuildContext, Launch, common_env, finish
from llmdeploy.profile.model import Profile

SNAPSHOT = "llmdeploy"  # the alias repository's only revision, what refs/main names


def build(profile: Profile, ctx: BuildContext) -> Launch:
    served = profile.served_model_name
    launcher = [ctx.python, "-m", "llmdeploy.engines.transformers", served, ctx.model_path, "--"]
    return finish(profile, ctx, [*launcher, *serve_argv(profile, ctx)], _env(profile), "/health")


def serve_argv(profile: Profile, ctx: BuildContext) -> list[str]:
    """What follows the launcher's `--`: the `transformers serve` command itself."""
    res, engine = profile.resources, profile.engine
    argv = [engine.executable or "transformers", "serve", profile.served_model_name]
    argv += ["--host", profile.serving.host, "--port", str(ctx.port)]
    if res.dtype is not None:
        argv += ["--dtype", res.dtype]
    if res.quantization is not None:
        argv += ["--quantization", res.quantization]
    if profile.reasoning.parser is not None:
        # The server picks its reasoning format by model type; the flag sets the default.
        argv += ["--reasoning", "on" if profile.reasoning.thinking else "off"]
    if engine.chat_template_kwargs:
        argv += ["--chat-template-kwargs", json.dumps(engine.chat_template_kwargs, sort_keys=True)]
    if engine.continuous_batching:
        argv.append("--continuous-batching")
    if res.trust_remote_code:
        argv.append("--trust-remote-code")
    argv += ["--log-level", "info"]  # its default (warning) hides the load and each request
    return argv


def _env(profile: Profile) -> dict[str, str]:
    env = common_env(profile)
    env["HF_HUB_OFFLINE"] = "1"
    env["TRANSFORMERS_NO_ADVISORY_WARNINGS"] = "1"
    return env


# --- the launcher (runs in the engine's process, then becomes the server) ----------------


def alias_cache(served: str, model_path: Path, parent: Path | None = None) -> Path:
    """A fresh hub cache in which `served` is a repository whose main snapshot is
    `model_path` (a symlink: nothing is copied)."""
    root = Path(tempfile.mkdtemp(prefix="llmdeploy-hf-", dir=parent))
    repo = root / ("models--" + served.replace("/", "--"))
    (repo / "refs").mkdir(parents=True)
    (repo / "snapshots").mkdir()
    (repo / "refs" / "main").write_text(SNAPSHOT)
    (repo / "snapshots" / SNAPSHOT).symlink_to(model_path.resolve(), target_is_directory=True)
    return root


def shared_alias_cache(served: str, model_path: Path, parent: Path) -> Path:
    """The alias cache for this pair under `parent`, made once and reused. Built aside and
    renamed into place, so racing launchers agree; one that is not what it should be (a
    crash, a hand edit) is replaced, never served."""
    place = parent / _alias_key(served, model_path)
    if _is_alias(place, served, model_path):
        return place
    parent.mkdir(parents=True, exist_ok=True)
    fresh = alias_cache(served, model_path, parent)
    for _ in range(3):
        try:
            os.rename(fresh, place)
            return place
        except OSError:  # taken meanwhile (a racing launcher), or a broken one is there
            if _is_alias(place, served, model_path):
                shutil.rmtree(fresh, ignore_errors=True)
                return place
            _discard(place)
    return fresh  # could not take the place: this run uses its own


def _alias_key(served: str, model_path: Path) -> str:
    pair = f"{served}\0{model_path.resolve()}".encode()
    return hashlib.sha256(pair).hexdigest()[:24]


def _is_alias(place: Path, served: str, model_path: Path) -> bool:
    repo = place / ("models--" + served.replace("/", "--"))
    try:
        ref = (repo / "refs" / "main").read_text()
        link = repo / "snapshots" / SNAPSHOT
        return ref == SNAPSHOT and link.is_symlink() and link.resolve() == model_path.resolve()
    except (OSError, UnicodeDecodeError):
        return False


def _discard(place: Path) -> None:
    """Move a broken alias cache out of the way (rename first: a reader never sees half)."""
    aside = Path(tempfile.mkdtemp(prefix=".discarded-", dir=place.parent))
    try:
        os.rename(place, aside / "old")
    except OSError:
        pass
    shutil.rmtree(aside, ignore_errors=True)


def _alias_for(served: str, model_path: Path) -> Path:
    """The shared alias cache; a per-run one in the temporary directory when llmdeploy's
    cache cannot be written (a read-only home in a pod)."""
    from llmdeploy.paths import cache_dir

    try:
        return shared_alias_cache(served, model_path, cache_dir() / "transformers-names")
    except OSError:
        return alias_cache(served, model_path)


def main(argv: list[str]) -> int:
    if len(argv) < 4 or argv[2] != "--":
        print(
            "usage: -m llmdeploy.engines.transformers NAME MODEL_PATH -- COMMAND…", file=sys.stderr
        )
        return 64
    served, model_path, command = argv[0], Path(argv[1]), argv[3:]
    if not model_path.is_dir():
        print(f"[llmdeploy] model directory {model_path} does not exist", file=sys.stderr)
        return 1
    cache = _alias_for(served, model_path)
    os.environ["HF_HUB_CACHE"] = str(cache)
    print(f"[llmdeploy] {served!r} -> {model_path} (hub cache {cache})", file=sys.stderr)
    sys.stderr.flush()
    try:
        os.execvp(command[0], command)
    except OSError as exc:
        print(f"[llmdeploy] cannot run {command[0]}: {exc.strerror or exc}", file=sys.stderr)
        return 127
    return 0  # not reached


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
