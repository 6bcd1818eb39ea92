"""The `llmdeploy` command line: wiring only. Each verb lives in commands/<verb>.py,
imported when the verb runs, so `llmdeploy --help` stays instant.

Errors: core code raises llmdeploy.errors.*; `main()` is the one place that
turns them into `error: …` lines and exit codes (see errors.py for the codes).
"""

from __future__ import annotations

import sys
from typing import Annotated

import typer

app = typer.Typer(
    name="llmdeploy",
    help="From a YAML profile to a verified, running OpenAI-compatible LLM server, "
    "and back down cleanly.\n\n"
    "Typical use: llmdeploy plan demo-cpu · llmdeploy up demo-cpu --detach · "
    "llmdeploy status · llmdeploy down demo-cpu",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_show_locals=False,  # profiles carry API keys
    rich_markup_mode=None,
)

ProfileArg = Annotated[
    str, typer.Argument(help="Profile file, or the name of a shipped profile (see `profiles`).")
]


@app.command()
def validate(
    profiles: Annotated[list[str], typer.Argument(help="Profile files or shipped names.")],
) -> None:
    """Check profiles; each problem is one line `file:line field: message`. Exit 2 if any is bad."""
    from llmdeploy.commands import validate as command

    raise typer.Exit(command.run(profiles))


@app.command()
def plan(
    profile: ProfileArg,
    engine_version: Annotated[
        str | None,
        typer.Option(help="Build flags for this engine version, e.g. 0.9.1 (default: profile's)."),
    ] = None,
    json: Annotated[bool, typer.Option("--json", help="Machine-readable output.")] = False,
) -> None:
    """Print the exact engine command a profile turns into (secrets shown as $VARS)."""
    from llmdeploy.commands import plan as command

    raise typer.Exit(command.run(profile, engine_version=engine_version, as_json=json))


@app.command()
def schema() -> None:
    """Print the JSON Schema of profiles (for editors' YAML completion)."""
    from llmdeploy.commands import schema as command

    raise typer.Exit(command.run())


@app.command()
def profiles() -> None:
    """List the shipped profiles, one line each."""
    from llmdeploy.commands import profiles as command

    raise typer.Exit(command.run())


def main() -> None:
    from llmdeploy.errors import LlmdeployError

    try:
        app(standalone_mode=True)
    except LlmdeployError as exc:
        _report(exc)
        sys.exit(exc.exit_code)


def _report(exc: Exception) -> None:
    from llmdeploy.errors import LlmdeployError
    from llmdeploy.output import err

    assert isinstance(exc, LlmdeployError)
    if exc.details:
        err(exc.details.rstrip("\n"))
    err(f"error: {exc.message}")
    if exc.hint:
        err(f"hint: {exc.hint}")
