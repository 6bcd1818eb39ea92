"""YAML to plain data, remembering the line of every key, and refusing what
PyYAML would otherwise accept silently: duplicate keys (it keeps the last),
alias bombs (it expands them), and non-text input.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import yaml

from llmdeploy.errors import ProfileError

Path_ = tuple[str | int, ...]

# A profile has a few dozen nodes; anything near this is an alias bomb.
MAX_NODES = 10_000
_TIMESTAMP_TAG = "tag:yaml.org,2002:timestamp"


@dataclass(frozen=True)
class YamlDoc:
    data: Any
    lines: Mapping[Path_, int]  # 1-based line of each mapping key / sequence item

    def line_of(self, path: Path_) -> int | None:
        """Line of the deepest known node on `path` (errors may point below a key)."""
        for end in range(len(path), -1, -1):
            line = self.lines.get(tuple(path[:end]))
            if line is not None:
                return line
        return None


def decode(raw: bytes, *, file: str) -> str:
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = raw[: exc.start].count(b"\n") + 1
        raise ProfileError(
            f"not a UTF-8 text file (byte 0x{raw[exc.start]:02x})", file=file, line=line
        ) from None
    return text


def parse(text: str, *, file: str) -> YamlDoc:
    try:
        loader = yaml.SafeLoader(text)
    except yaml.YAMLError as exc:  # ReaderError: control characters in the text
        raise ProfileError(f"invalid YAML: {_one_line(str(exc))}", file=file) from None
    try:
        node = loader.get_single_node()
    except yaml.MarkedYAMLError as exc:
        raise _yaml_error(exc, file) from None
    except yaml.YAMLError as exc:  # e.g. ReaderError on control characters
        raise ProfileError(f"invalid YAML: {_one_line(str(exc))}", file=file, line=None) from None
    finally:
        loader.dispose()
    if node is None:
        raise ProfileError("the file is empty; a profile is a YAML mapping", file=file, line=1)
    builder = _Builder(loader, file)
    data = builder.build(node, ())
    return YamlDoc(data=data, lines=builder.lines)


class _Builder:
    def __init__(self, loader: yaml.SafeLoader, file: str):
        self.loader = loader
        self.file = file
        self.lines: dict[Path_, int] = {}
        self.count = 0

    def build(self, node: yaml.Node, path: Path_) -> Any:
        self.count += 1
        if self.count > MAX_NODES:
            raise ProfileError(
                f"document expands to more than {MAX_NODES} nodes (a YAML alias bomb?)",
                file=self.file,
                line=node.start_mark.line + 1,
            )
        self.lines.setdefault(path, node.start_mark.line + 1)
        if isinstance(node, yaml.MappingNode):
            return self._mapping(node, path)
        if isinstance(node, yaml.SequenceNode):
            return [self.build(item, (*path, i)) for i, item in enumerate(node.value)]
        if node.tag == _TIMESTAMP_TAG:
            return node.value  # a revision like 2024-01-01 stays the string it was written as
        try:
            return self.loader.construct_object(node)
        except yaml.MarkedYAMLError as exc:
            raise _yaml_error(exc, self.file) from None

    def _mapping(self, node: yaml.MappingNode, path: Path_) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for key_node, value_node in node.value:
            line = key_node.start_mark.line + 1
            if key_node.tag == "tag:yaml.org,2002:merge":
                raise ProfileError("merge keys (<<) are not supported", file=self.file, line=line)
            key = (
                self.loader.construct_object(key_node)
                if isinstance(key_node, yaml.ScalarNode)
                else None
            )
            if not isinstance(key, str):
                raise ProfileError(
                    f"keys must be strings, got {key_node.value!r}",
                    file=self.file,
                    line=line,
                    field=dotted(path) or None,
                )
            if key in out:
                first = self.lines[(*path, key)]
                raise ProfileError(
                    f"duplicate key (first set on line {first})",
                    file=self.file,
                    line=line,
                    field=dotted((*path, key)),
                )
            self.lines[(*path, key)] = line
            out[key] = self.build(value_node, (*path, key))
        return out


def dotted(path: Path_) -> str:
    """`("serving", "port")` -> `serving.port`; list indexes as `[0]`."""
    out = ""
    for part in path:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else part)
    return out


def _yaml_error(exc: yaml.MarkedYAMLError, file: str) -> ProfileError:
    mark = exc.problem_mark or exc.context_mark
    problem = exc.problem or exc.context or "invalid YAML"
    hint = None
    if "\t" in problem or "tab" in problem:
        hint = "indent with spaces; YAML does not allow tabs for indentation"
    return ProfileError(
        f"invalid YAML: {_one_line(problem)}",
        file=file,
        line=mark.line + 1 if mark else None,
        hint=hint,
    )


def _one_line(text: str) -> str:
    return " ".join(text.split())
