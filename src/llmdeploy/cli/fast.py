"""The `llmdeploy` entry point. The plain forms of the two commands people run most
while editing a profile — `validate PROFILE…` and `plan PROFILE [--json]` — run here
without building the Typer app; everything else (and any other flag, `--help`
included) goes to Typer unchanged.

Why: Typer builds every command's parameters through pydantic adapters before it
dispatches, which measured ≈50 to 60 ms of the ≈280 ms a `plan` took on this 2-core
machine (benchmarks/cli_speed.py); the goal is ≤ 200 ms. The fast path calls the very
same command functions and reports errors the same way, so behaviour cannot drift.
"""

from __future__ import annotations

import sys


def _direct(argv: list[str]) -> int | None:
    """The exit code of a plain `validate`/`plan`, or None to let Typer handle argv."""
    if not argv or argv[0] not in ("plan", "validate"):
        return None
    verb, args = argv[0], argv[1:]
    if verb == "validate":
        if not args or any(a.startswith("-") for a in args):
            return None
        from llmdeploy.cli import validate

        return validate.run(args)
    as_json = args.count("--json") == 1
    rest = [a for a in args if a != "--json"]
    if len(rest) != 1 or rest[0].startswith("-"):
        return None
    from llmdeploy.cli import plan

    return plan.run(rest[0], engine_version=None, as_json=as_json)


def main() -> None:
    # A Ctrl-C before a command has installed its own handlers (while Python imports
    # the app) is still a quiet exit 130, never a traceback.
    try:
        _main()
    except KeyboardInterrupt:
        sys.exit(130)


def _main() -> None:
    from llmdeploy.errors import LlmdeployError

    try:
        code = _direct(sys.argv[1:])
    except LlmdeployError as exc:
        from llmdeploy.cli.report import report

        report(exc)
        sys.exit(exc.exit_code)
    if code is None:
        from llmdeploy.cli.app import main as typer_main

        typer_main()
        return
    sys.exit(code)
