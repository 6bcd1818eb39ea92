"""Manifests out as YAML: one stream for stdout, or one file per object."""

from __future__ import annotations

import functools
import os
import tempfile
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from llmdeploy.errors import InputError

Manifest = dict[str, Any]


def to_yaml(manifests: Sequence[Manifest], header: str = "") -> str:
    """A multi-document stream `kubectl apply -f -` takes, in the given order."""
    return header + "".join(document(m) for m in manifests)


def document(manifest: Manifest) -> str:
    import yaml

    # width: never fold a long argv element or probe path across lines.
    body = yaml.dump(manifest, Dumper=_dumper(), sort_keys=False, width=1 << 16, allow_unicode=True)
    return "---\n" + body


@functools.lru_cache(maxsize=1)
def _dumper() -> type[Any]:
    import yaml

    class Dumper(yaml.SafeDumper):
        # Plain YAML for people and kubectl diffs: no &id001 anchors for shared values.
        def ignore_aliases(self, data: Any) -> bool:
            return True

    def text(dumper: yaml.SafeDumper, value: str) -> yaml.ScalarNode:
        # Multi-line values (the ConfigMap's profile) as readable `|` blocks.
        style = "|" if "\n" in value else None
        return dumper.represent_scalar("tag:yaml.org,2002:str", value, style=style)

    Dumper.add_representer(str, text)
    return Dumper


def file_name(manifest: Manifest) -> str:
    """`deployment-qwen3-8b.yaml`: unique per object, so profiles can share a directory."""
    return f"{manifest['kind'].lower()}-{manifest['metadata']['name']}.yaml"


def emit(
    manifests: Sequence[Manifest],
    out_dir: Path,
    *,
    check: Callable[[Sequence[Manifest]], None],
    header: str = "",
) -> list[Path]:
    """Validate everything first, then write: a refused render leaves no file behind."""
    check(manifests)
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise InputError(f"-o {out_dir}: cannot create it ({exc.strerror or exc})") from None
    written = []
    for manifest in manifests:
        path = out_dir / file_name(manifest)
        _write_atomic(path, header + document(manifest))
        written.append(path)
    return written


def _write_atomic(path: Path, text: str) -> None:
    """A reader (kubectl apply -f DIR) never sees half a file."""
    try:
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    except OSError as exc:
        raise InputError(f"-o {path.parent}: cannot write there ({exc.strerror or exc})") from None
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(text)
        os.chmod(tmp, 0o644)  # mkstemp's 0600 would hide manifests from a CI user or a team
        os.replace(tmp, path)
    except OSError as exc:
        Path(tmp).unlink(missing_ok=True)
        raise InputError(
            f"-o {path.parent}: cannot write {path.name} ({exc.strerror or exc})"
        ) from None
