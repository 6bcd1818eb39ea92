"""Options shared by several verbs, declared once (Typer `Annotated` aliases), and the
one rule every numeric option goes through (`number_option`).
"""

from __future__ import annotations

import math
from typing import Annotated, Any

import typer

ProfileArg = Annotated[
    str, typer.Argument(help="Profile file, or the name of a shipped profile (see `profiles`).")
]
UrlOpt = Annotated[
    str | None, typer.Option(help="Any OpenAI-compatible server instead of a deployment.")
]
ModelOpt = Annotated[str | None, typer.Option(help="With --url: the served model name.")]
ApiKeyEnvOpt = Annotated[str | None, typer.Option(help="Environment variable holding the API key.")]
JsonFlag = Annotated[bool, typer.Option("--json", help="Machine-readable output.")]

# Far beyond any real wait, and below threading.TIMEOUT_MAX (≈ 292 years): larger
# values make Event.wait / time.sleep raise OverflowError deep inside a command.
_YEAR_S = 365 * 24 * 3600.0
_MAX_INT = 1_000_000_000
_MAX_DIGITS = 12  # int("9" * 5000) would hit Python's int-str conversion limit


class NumberRule:
    """What one numeric option accepts. Violations are `InputError`s (one `error:` line,
    exit 2) naming the option, instead of a Typer usage box or a NaN deep in a loop.
    (A plain class, not a dataclass: this module is on every command's start-up path.)"""

    __slots__ = ("above_minimum", "inf_ok", "kind", "maximum", "minimum", "unit")

    def __init__(
        self,
        kind: type[int] | type[float],
        minimum: float,
        *,
        above_minimum: bool = False,  # strictly greater: a 0 s timeout means nothing
        maximum: float = _MAX_INT,
        inf_ok: bool = False,  # `bench --rate inf`: everything at once
        unit: str = "",
    ):
        self.kind = kind
        self.minimum = minimum
        self.above_minimum = above_minimum
        self.maximum = maximum
        self.inf_ok = inf_ok
        self.unit = unit

    @property
    def metavar(self) -> str:
        return "SECONDS" if self.unit == "seconds" else ("N" if self.kind is int else "X")

    def describe(self) -> str:
        what = "a whole number" if self.kind is int else "a number"
        bound = f"> {self.minimum:g}" if self.above_minimum else f"≥ {self.minimum:g}"
        unit = f" of {self.unit}" if self.unit else ""
        upper = " (or inf)" if self.inf_ok else f", at most {self.maximum:,.0f}"
        return f"{what}{unit} {bound}{upper}"

    def check(self, param: typer.CallbackParam, value: Any) -> int | float | None:
        """Typer callback: `value` is the raw text (the option's parser is `str`), or the
        declared default when the option is not given."""
        if value is None:
            return None
        text = str(value).strip()
        name = max(param.opts, key=len) if param.opts else f"--{param.name}"
        number = self._parse(text)
        if number is None or not self._allowed(number, text):
            from llmdeploy.errors import InputError  # the CLI's one error boundary renders it

            shown = text if len(text) <= 30 else text[:30] + "…"
            raise InputError(f"{name}: must be {self.describe()}, got {shown!r}")
        return number

    def _parse(self, text: str) -> int | float | None:
        try:
            if self.kind is int:
                digits = text.lstrip("+-")
                return int(text) if digits.isdigit() and len(digits) <= _MAX_DIGITS else None
            return float(text)
        except ValueError:
            return None

    def _allowed(self, number: float, text: str) -> bool:
        if math.isnan(number):
            return False
        if math.isinf(number):
            # Only when asked for by name: 1e999 or 5,000 nines overflow to inf by accident.
            spelled = text.lower().removeprefix("+") in ("inf", "infinity")
            return self.inf_ok and number > 0 and spelled
        if number > self.maximum:
            return False
        return number > self.minimum if self.above_minimum else number >= self.minimum


def number_option(*param_decls: str, help: str, rule: NumberRule) -> Any:
    """A numeric option checked by `rule`. Typer's own float/int parsing would accept
    `nan` and `-5` silently and report `abc` as a multi-line usage box; here the text
    reaches `rule.check` as it was typed."""
    return typer.Option(
        *param_decls, help=help, parser=str, callback=rule.check, metavar=rule.metavar
    )


# The rules, named by what the number means. A zero timeout, grace, duration or count
# means nothing; zero is meaningful for --lines (nothing old, only new with -f), --warmup
# (none), --seed and --temperature (greedy).
SECONDS = NumberRule(float, 0, above_minimum=True, maximum=_YEAR_S, unit="seconds")
COUNT = NumberRule(int, 1)
COUNT_OR_ZERO = NumberRule(int, 0)
RATE = NumberRule(float, 0, above_minimum=True, maximum=1e9, inf_ok=True)
POSITIVE = NumberRule(float, 0, above_minimum=True, maximum=1e6)
TEMPERATURE = NumberRule(float, 0, maximum=100)
