"""A table of named parsers: one canonical name in profiles, each engine's own spelling
(and the first release that knows it) on its command line. Reasoning parsers
(reasoning.py) and tool-call parsers (tools.py) are two such tables."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from llmdeploy.versions import Version, at_least, show


@dataclass(frozen=True)
class Spelling:
    name: str
    since: Version | None = None  # first engine release that knows the parser


@dataclass(frozen=True)
class ParserTable:
    label: str  # the profile field, e.g. "reasoning.parser": errors start with it
    table: Mapping[str, Mapping[str, Spelling]]  # canonical -> engine -> spelling
    # engines that take no such parser at all, and what to do instead
    unsupported: Mapping[str, str] = field(default_factory=dict)

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(self.table)

    def supported(self, engine: str, version: Version | None) -> list[str]:
        return [
            canon
            for canon, engines in self.table.items()
            if engine in engines
            and (engines[engine].since is None or at_least(version, engines[engine].since or ()))
        ]

    def check(self, parser: str, engine: str, version: Version | None) -> None:
        """Raise ValueError("<field>: …") unless `engine` (at `version`) knows `parser`."""
        if parser not in self.table:
            raise ValueError(
                f"{self.label}: unknown parser {parser!r}{self._suggestion(parser)} "
                f"(known: {', '.join(self.names)})"
            )
        if engine in self.unsupported:
            section = self.label.partition(".")[0]
            raise ValueError(f"{section}: not for engine {engine}: {self.unsupported[engine]}")
        known = self.supported(engine, version)
        if parser in known:
            return
        if engine not in self.table[parser]:
            where = f"engine {engine}"
        else:
            since = self.table[parser][engine].since or ()
            where = f"{engine} {show(version or ())} (needs {show(since)} or newer)"
        listed = ", ".join(known) if known else "none"
        raise ValueError(f"{self.label}: {parser} is not supported by {where}; it knows: {listed}")

    def spelling(self, parser: str, engine: str) -> str:
        return self.table[parser][engine].name

    def _suggestion(self, parser: str) -> str:
        # An engine's own spelling pasted from its docs names its canonical parser.
        aliases = {s.name: canon for canon, engines in self.table.items() for s in engines.values()}
        canon = aliases.get(parser)
        import difflib  # only when the name is wrong: loading any profile imports this module

        close = [canon] if canon else difflib.get_close_matches(parser, self.names, n=1)
        return f"; did you mean {close[0]}?" if close else ""
