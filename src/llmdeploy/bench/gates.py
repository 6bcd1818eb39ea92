"""`--fail-if` gates: `"p99_ttft_ms>500"`, `"output_tok_per_s<100"` — a run fails when
any gate's condition holds. Parse them before the run so a typo costs no benchmark."""

from __future__ import annotations

import difflib
import operator
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass

from .metrics import METRIC_NAMES

OPERATORS: dict[str, Callable[[float, float], bool]] = {
    ">=": operator.ge,
    "<=": operator.le,
    "==": operator.eq,
    ">": operator.gt,
    "<": operator.lt,
}
# Two-character operators first, so ">=" is never read as ">" followed by "=5".
_GATE = re.compile(
    r"^\s*(?P<metric>[A-Za-z_][A-Za-z0-9_]*)\s*(?P<op>>=|<=|==|>|<)\s*"
    r"(?P<number>[-+]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][-+]?\d+)?)\s*$"
)


@dataclass(frozen=True)
class Gate:
    metric: str
    op: str
    threshold: float
    text: str  # as the user wrote it, for messages

    def holds(self, value: float) -> bool:
        """True if the fail condition holds for `value`."""
        return OPERATORS[self.op](value, self.threshold)


@dataclass(frozen=True)
class Violation:
    gate: Gate
    value: float | None  # None: the figure could not be measured in this run

    def __str__(self) -> str:
        if self.value is None:
            return f"{self.gate.metric} was not measured in this run (--fail-if {self.gate.text!r})"
        return (
            f"{self.gate.metric} = {self.value:.6g} {self.gate.op} {self.gate.threshold:g} "
            f"(--fail-if {self.gate.text!r})"
        )


def _known(names: Iterable[str]) -> str:
    return ", ".join(names)


def parse_gate(text: str, names: Iterable[str] = METRIC_NAMES) -> Gate:
    """Parse one `METRIC OP NUMBER` expression. ValueError names the expression and, for
    an unknown metric, the closest known names and the whole list."""
    names = tuple(names)
    m = _GATE.match(text)
    if m is None:
        raise ValueError(
            f"bad --fail-if expression {text!r}: expected METRIC OP NUMBER with OP one of "
            f"{' '.join(sorted(OPERATORS, key=len))}, e.g. 'p99_ttft_ms>500'"
        )
    metric = m["metric"]
    if metric not in names:
        close = difflib.get_close_matches(metric, names, n=3)
        hint = f" (did you mean {' or '.join(close)}?)" if close else ""
        raise ValueError(
            f"unknown metric {metric!r} in --fail-if {text!r}{hint}; known metrics: {_known(names)}"
        )
    return Gate(metric, m["op"], float(m["number"]), text.strip())


def parse_gates(texts: Iterable[str], names: Iterable[str] = METRIC_NAMES) -> list[Gate]:
    names = tuple(names)
    return [parse_gate(t, names) for t in texts]


def evaluate(gates: Iterable[Gate], metrics: Mapping[str, float | None]) -> list[Violation]:
    """The gates whose fail condition holds, each with the offending figure. A gate on a
    figure this run could not measure (None) fails too: it cannot be shown to pass."""
    violations = []
    for gate in gates:
        value = metrics.get(gate.metric)
        if value is None or gate.holds(value):
            violations.append(Violation(gate, value))
    return violations
