"""YAML to plain data, remembering the line of every key, and refusing what
PyYAML would otherwise accept silently or crash on: duplicate keys (it keeps the
last), alias bombs (it expands them), recursive aliases and deep nesting (Python
recursion errors), numbers too long to convert (int-str conversion limit), tags
that build other objects, and characters no process argument may carry.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import yaml

from llmdeploy.errors import ProfileError

Path_ = tuple[str | int, ...]

# A profile has a few dozen nodes; anything near this is an alias bomb.
MAX_NODES = 10_000
# The deepest real setting is three levels down (sampling.thinking.top_p). PyYAML's
# composer recurses twice per level, and so do we and pydantic: far below this,
# Python's recursion limit (1,000 frames) is never in reach.
MAX_DEPTH = 32
# No setting needs a longer number; a 5,000-digit one would raise ValueError inside
# PyYAML (Python's 4,300-digit int-str conversion limit) and costs quadratic time.
MAX_NUMBER_CHARS = 100

_YAML = "tag:yaml.org,2002:"
_TIMESTAMP_TAG = _YAML + "timestamp"
_MERGE_TAG = _YAML + "merge"
# `=` alone resolves to the YAML 1.1 "value" tag, which SafeLoader cannot build: it is text.
_VALUE_TAG = _YAML + "value"
_TEXT_TAGS = {_YAML + "str", _TIMESTAMP_TAG, _VALUE_TAG}
_NUMBER_TAGS = {_YAML + "int", _YAML + "float"}
# Only plain data. `!!binary` is refused too: its bytes would reach string settings
# without the character check below; `!!set`, `!!omap` and `!!python/…` build objects.
_SCALAR_TAGS = {*_TEXT_TAGS, *_NUMBER_TAGS, _YAML + "bool", _YAML + "null"}
_SEQ_TAG = _YAML + "seq"
_MAP_TAG = _YAML + "map"
# What a YAML file may not contain raw is refused when written as an escape too ("\0",
# "\e", "\ud800"): strings become argv, environment and terminal output, where NUL cannot
# go and lone surrogates cannot be encoded. PyYAML's own pattern, already compiled.
_NON_PRINTABLE: re.Pattern[str] = yaml.reader.Reader.NON_PRINTABLE
# PyYAML's scalar constructors raise these on malformed explicitly tagged input
# (`!!int abc`, `!!bool maybe`, `!!float -`) instead of a YAMLError.
_CONSTRUCT_ERRORS = (yaml.YAMLError, ValueError, KeyError, IndexError, TypeError, OverflowError)


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
        loader = _Loader(text, file)
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


class _Loader(yaml.SafeLoader):
    """SafeLoader whose composer refuses to nest deeper than MAX_DEPTH: PyYAML
    composes recursively, so `[[[[…]]]]` 5,000 deep would be a RecursionError."""

    def __init__(self, text: str, file: str):
        super().__init__(text)
        self._file = file
        self._depth = 0

    def compose_node(self, parent: yaml.Node | None, index: int) -> yaml.Node | None:
        self._depth += 1
        try:
            if self._depth > MAX_DEPTH:
                event: yaml.Event = self.peek_event()  # type: ignore[no-untyped-call]
                mark = event.start_mark
                raise ProfileError(
                    f"nested more than {MAX_DEPTH} levels deep; a profile needs at most 4",
                    file=self._file,
                    line=mark.line + 1 if mark else None,
                )
            return super().compose_node(parent, index)
        finally:
            self._depth -= 1


class _Builder:
    def __init__(self, loader: yaml.SafeLoader, file: str):
        self.loader = loader
        self.file = file
        self.lines: dict[Path_, int] = {}
        self.count = 0
        # Collections being built, innermost last: an alias back to one of them is a cycle
        # (`a: &x {b: *x}`) that would otherwise recurse until Python gives up.
        self._open: set[int] = set()

    def build(self, node: yaml.Node, path: Path_) -> Any:
        self.count += 1
        line = node.start_mark.line + 1
        if self.count > MAX_NODES:
            raise ProfileError(
                f"document expands to more than {MAX_NODES} nodes (a YAML alias bomb?)",
                file=self.file,
                line=line,
            )
        self.lines.setdefault(path, line)
        if isinstance(node, yaml.ScalarNode):
            return self.scalar(node, path)
        if id(node) in self._open:
            raise self._error(
                "recursive YAML alias: this node contains itself", node, path
            )
        if len(path) >= MAX_DEPTH:  # aliases of aliases nest deeper than any one anchor
            # The line is the anchor's (where the deep part is written); the path, cut
            # short, where it was reached from.
            raise self._error(f"nested more than {MAX_DEPTH} levels deep", node, path[:4])
        self._open.add(id(node))
        try:
            if isinstance(node, yaml.MappingNode):
                self._check_tag(node, {_MAP_TAG}, path)
                return self._mapping(node, path)
            if isinstance(node, yaml.SequenceNode):
                self._check_tag(node, {_SEQ_TAG}, path)
                return [self.build(item, (*path, i)) for i, item in enumerate(node.value)]
        finally:
            self._open.discard(id(node))
        raise self._error(f"unexpected YAML node {type(node).__name__}", node, path)

    def scalar(self, node: yaml.ScalarNode, path: Path_) -> Any:
        self._check_tag(node, _SCALAR_TAGS, path)
        text: str = node.value
        if node.tag in _TEXT_TAGS:
            value: Any = text  # a revision like 2024-01-01 stays the string it was written as
        else:
            if node.tag in _NUMBER_TAGS and len(text) > MAX_NUMBER_CHARS:
                raise self._error(
                    f"number too long ({len(text)} characters, at most {MAX_NUMBER_CHARS})",
                    node,
                    path,
                    hint="quote it if it is meant as text",
                )
            try:
                value = self.loader.construct_object(node)
            except _CONSTRUCT_ERRORS:
                kind = node.tag.removeprefix(_YAML)
                raise self._error(f"not a valid {kind}: {_short(text)}", node, path) from None
        if isinstance(value, float) and value != value:
            # `.nan` passes no bound check meaningfully ("should be ≤ 1") and means nothing here.
            raise self._error("NaN is not a valid setting value", node, path)
        if isinstance(value, str):
            bad = _NON_PRINTABLE.search(value)
            if bad:
                raise self._error(
                    f"character U+{ord(bad.group()):04X} is not allowed in a string", node, path
                )
        return value

    def _mapping(self, node: yaml.MappingNode, path: Path_) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for key_node, value_node in node.value:
            line = key_node.start_mark.line + 1
            if key_node.tag == _MERGE_TAG:
                raise ProfileError("merge keys (<<) are not supported", file=self.file, line=line)
            if not isinstance(key_node, yaml.ScalarNode):
                kind = "mapping" if isinstance(key_node, yaml.MappingNode) else "list"
                raise self._error(f"keys must be strings, got a {kind}", key_node, path)
            key = self.scalar(key_node, path)
            if not isinstance(key, str):
                raise self._error(
                    f"keys must be strings, got {_short(key_node.value)}", key_node, path
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

    def _check_tag(self, node: yaml.Node, allowed: set[str], path: Path_) -> None:
        if node.tag not in allowed:
            tag = node.tag.replace(_YAML, "!!", 1) if node.tag.startswith(_YAML) else node.tag
            raise self._error(
                f"YAML tag {_short(tag)} is not allowed in a profile",
                node,
                path,
                hint="a profile holds plain text, numbers, booleans, lists and mappings",
            )

    def _error(
        self, message: str, node: yaml.Node, path: Path_, hint: str | None = None
    ) -> ProfileError:
        return ProfileError(
            message,
            file=self.file,
            line=node.start_mark.line + 1,
            field=dotted(path) or None,
            hint=hint,
        )


def dotted(path: Path_) -> str:
    """`("serving", "port")` -> `serving.port`; list indexes as `[0]`."""
    out = ""
    for part in path:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else part)
    return out


def _short(text: str, limit: int = 40) -> str:
    """A user's value inside a one-line message: quoted, escaped, never a screenful."""
    shown = text if len(text) <= limit else text[:limit] + "…"
    return repr(shown)


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
