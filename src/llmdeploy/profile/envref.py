"""`${VAR}` and `${VAR:-default}` references in profile strings.

`$${` writes a literal `${`. A reference to an unset variable without a default
is an error at load time, so `validate` catches it before any launch.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from typing import Any

from llmdeploy.profile.yamldoc import Path_

_REF = re.compile(r"\$\$\{|\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}|\$\{[^}]*\}?")
WHOLE_REF = re.compile(r"^\$\{([A-Za-z_][A-Za-z0-9_]*)\}$")


class MissingVariable(Exception):
    def __init__(self, path: Path_, message: str):
        super().__init__(message)
        self.path = path
        self.message = message


def expand(text: str, environ: Mapping[str, str], path: Path_ = ()) -> str:
    def replace(match: re.Match[str]) -> str:
        whole = match.group(0)
        if whole == "$${":
            return "${"
        name, default = match.group(1), match.group(2)
        if name is None:
            raise MissingVariable(path, f"malformed reference {whole!r}; write ${{NAME}}")
        value = environ.get(name)
        if value is None or (value == "" and default is not None):
            if default is None:
                raise MissingVariable(path, f"environment variable {name} is not set")
            return default
        return value

    return _REF.sub(replace, text)


def expand_tree(
    data: Any,
    environ: Mapping[str, str],
    keep: Callable[[Path_], bool] = lambda _p: False,
    path: Path_ = (),
) -> Any:
    """Expand references in every string of `data`; paths where `keep(path)` is
    true are only checked (the variable must exist) and left as written."""
    if isinstance(data, dict):
        return {k: expand_tree(v, environ, keep, (*path, k)) for k, v in data.items()}
    if isinstance(data, list):
        return [expand_tree(v, environ, keep, (*path, i)) for i, v in enumerate(data)]
    if isinstance(data, str):
        expanded = expand(data, environ, path)
        return data if keep(path) else expanded
    return data
