#!/usr/bin/env python3
"""Check an SGLang launch_server command line with SGLang's own argument parser.

Usage (with the python of the venv built by scripts/sglang_env.sh):

    VENV/bin/python scripts/check_sglang_args.py --model-path /x --port 30000 ...

The arguments are what would follow ``python -m sglang.launch_server``.  They
are parsed exactly as ``sglang.srt.server_args.prepare_server_args`` parses
them (plugins loaded, ``ServerArgs.add_cli_args`` on an argparse parser,
``--config FILE.yaml`` merged), but ``ServerArgs`` is never constructed: its
``__post_init__`` probes the hardware, and no server is started.

Exit codes: 0 accepted; 2 rejected, with SGLang's own argparse message as the
one line on stderr (e.g. "sglang serve: error: unrecognized arguments: --x",
"... argument --reasoning-parser: invalid choice: 'qwen9' (choose from ...)",
"... the following arguments are required: --model-path/--model"); the long
usage text argparse would print first is left out; 3 SGLang cannot be imported
from this interpreter.  ``-h``/``--help`` prints SGLang's help and exits 0.

``--batch`` reads a JSON list of argument lists on stdin and prints a JSON list
of ``{"code": 0|2, "error": "..."}``: one import of SGLang (≈4 s) for many checks.
"""

import argparse
import json
import logging
import sys
import warnings

PROG = "sglang serve"  # the prog name prepare_server_args uses


def main(argv):
    warnings.simplefilter("ignore")
    logging.disable(logging.WARNING)  # import-time chatter is not our output
    try:
        from sglang.srt.server_args import ServerArgs
    except Exception as exc:  # any import failure means "no SGLang"
        print(f"check_sglang_args: cannot import SGLang: {exc!r}", file=sys.stderr)
        return 3
    try:  # plugins may register extra reasoning/tool-call parsers
        from sglang.srt.plugins import load_plugins
    except ImportError:  # older releases have no plugin framework
        pass
    else:
        load_plugins()
    logging.disable(logging.NOTSET)

    parser = argparse.ArgumentParser(prog=PROG)
    ServerArgs.add_cli_args(parser)

    def error(message):
        # argparse's own message, without the ~1000-line usage it prints first
        if argv[:1] == ["--batch"]:
            stop = SystemExit(2)
            stop.message = f"{parser.prog}: error: {message}"
            raise stop
        parser.exit(2, f"{parser.prog}: error: {message}\n")

    parser.error = error

    if argv[:1] == ["--batch"]:
        results = []
        for one in json.load(sys.stdin):
            try:
                parser.parse_args(one)
                results.append({"code": 0, "error": ""})
            except SystemExit as stop:
                results.append({"code": stop.code, "error": getattr(stop, "message", "")})
        print(json.dumps(results))
        return 0

    if "--config" in argv:
        try:
            from sglang.srt.utils.server_args_config_parser import ConfigArgumentMerger
        except ImportError:
            from sglang.srt.server_args_config_parser import ConfigArgumentMerger
        try:
            argv = ConfigArgumentMerger(parser).merge_config_with_args(list(argv))
        except Exception as exc:  # SGLang rejects the config file
            parser.error(f"--config: {exc}")  # exits 2

    parser.parse_args(argv)  # exits 2 with argparse's message when rejected
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
