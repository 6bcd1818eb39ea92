"""Options shared by several verbs, declared once (Typer `Annotated` aliases)."""

from __future__ import annotations

from typing import Annotated

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
