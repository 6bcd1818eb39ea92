"""Profile files to `Profile` objects, with every problem reported as
`file:line field.path: message`.

`parse(text, …)` is pure (environment passed in); `load(path)` reads the file.
"""

from __future__ import annotations

import os
import re
import typing
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ValidationError

from llmdeploy.errors import ProfileError
from llmdeploy.profile import envref, yamldoc
from llmdeploy.profile.model import SECRET_PATHS, Profile
from llmdeploy.profile.yamldoc import Path_, YamlDoc, dotted

MAX_BYTES = 1_000_000
# Validators quote the offending value; a 1 MB value must not become a 1 MB line.
MAX_MESSAGE = 300
_KINDS = {
    str: "text",
    int: "a number",
    float: "a number",
    bool: "a boolean",
    list: "a list",
    type(None): "null",
}
# A cross-field rule names the field it is about: "resources.gpus: …".
_FIELD_PREFIX = re.compile(r"^([a-z_][a-z0-9_.]*): (.+)$", re.DOTALL)


def load(path: str | Path, environ: Mapping[str, str] | None = None) -> Profile:
    file = str(path)
    try:
        raw = _read(path, MAX_BYTES + 1)
    except FileNotFoundError:
        raise ProfileError("no such file", file=file) from None
    except IsADirectoryError:
        raise ProfileError("is a directory, not a profile file", file=file) from None
    except OSError as exc:
        raise ProfileError(f"cannot read: {exc.strerror}", file=file) from None
    if len(raw) > MAX_BYTES:
        raise ProfileError(f"larger than {MAX_BYTES} bytes; not a profile", file=file)
    text = yamldoc.decode(raw, file=file)
    base_dir = Path(path).resolve().parent
    return parse(
        text, file=file, base_dir=base_dir, environ=os.environ if environ is None else environ
    )


def _read(path: str | Path, limit: int) -> bytes:
    # O_NONBLOCK for open() only: a FIFO nobody writes to would block open() forever;
    # opened this way, reading it finds the end at once. Pipes with a writer
    # (`validate <(envsubst < p.yaml)`) are read as usual.
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    os.set_blocking(fd, True)
    with open(fd, "rb") as handle:
        return handle.read(limit)


def parse(text: str, *, file: str, base_dir: Path, environ: Mapping[str, str]) -> Profile:
    doc = yamldoc.parse(text, file=file)
    if not isinstance(doc.data, dict):
        kind = _KINDS.get(type(doc.data), type(doc.data).__name__)
        raise ProfileError(
            f"a profile is a YAML mapping of settings, not {kind}", file=file, line=1
        )
    try:
        data = envref.expand_tree(doc.data, environ, keep=lambda p: p in SECRET_PATHS)
    except envref.MissingVariable as exc:
        raise ProfileError(
            exc.message, file=file, line=doc.line_of(exc.path), field=dotted(exc.path)
        ) from None
    try:
        return Profile.model_validate(data, context={"base_dir": str(base_dir)})
    except ValidationError as exc:
        raise _first_problem(exc, doc, file) from None


def _first_problem(exc: ValidationError, doc: YamlDoc, file: str) -> ProfileError:
    problems = [_problem(err, doc, file) for err in exc.errors()]
    first = problems[0]
    others = {p.message for p in problems[1:]} - {first.message}
    if others:
        extra = f"{len(others)} more problem(s) after this one"
        first.hint = f"{first.hint}; {extra}" if first.hint else extra
    return first


def _problem(err: Any, doc: YamlDoc, file: str) -> ProfileError:
    path = _data_path(err["loc"], doc.data, keep_last=err["type"] == "missing")
    message = str(err["msg"]).removeprefix("Value error, ")
    match = _FIELD_PREFIX.match(message)
    if match and err["type"] == "value_error":
        path = (*path, *match.group(1).split("."))
        message = match.group(2)
    hint = None
    if err["type"] == "extra_forbidden":
        message = "unknown setting"
        hint = _did_you_mean(path)
    elif err["type"] == "missing":
        message = "required setting is missing"
    message = _one_line(message)
    if len(message) > MAX_MESSAGE:
        message = message[:MAX_MESSAGE] + "…"
    return ProfileError(
        message, file=file, line=doc.line_of(path), field=dotted(path) or None, hint=hint
    )


def _data_path(loc: tuple[Any, ...], data: Any, *, keep_last: bool) -> Path_:
    """Pydantic locations name union members (`list[int]`, `function-after[…]`); keep
    only the parts that index into the document."""
    path: list[str | int] = []
    node = data
    for i, part in enumerate(loc):
        if (isinstance(node, dict) and part in node) or (
            isinstance(node, list) and isinstance(part, int) and part < len(node)
        ):
            node = node[part]
            path.append(part)
        elif keep_last and i == len(loc) - 1 and isinstance(part, str):
            path.append(part)
    return tuple(path)


def _did_you_mean(path: Path_) -> str | None:
    names = _fields_at(path[:-1])
    if not names or not path:
        return None
    import difflib  # only on this error path: every `plan` and `validate` imports this module

    close = difflib.get_close_matches(str(path[-1]), names, n=1, cutoff=0.6)
    where = dotted(path[:-1]) or "the top level"
    if close:
        return f"did you mean {close[0]}?"
    return f"known settings at {where}: {', '.join(names)}"


def _fields_at(path: Path_) -> list[str]:
    model: type[BaseModel] | None = Profile
    for part in path:
        if model is None or not isinstance(part, str) or part not in model.model_fields:
            return []
        model = _model_in(model.model_fields[part].annotation)
    return list(model.model_fields) if model else []


def _model_in(annotation: Any) -> type[BaseModel] | None:
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    for arg in typing.get_args(annotation):
        found = _model_in(arg)
        if found:
            return found
    return None


def _one_line(text: str) -> str:
    return " ".join(text.split())
