"""The `llmdeploy` command line: wiring only. Each verb lives in commands/<verb>.py,
imported when the verb runs, so `llmdeploy --help` stays instant.

Errors: core code raises llmdeploy.errors.*; `main()` is the one place that
turns them into `error: …` lines and exit codes (see errors.py for the codes).
"""

from __future__ import annotations

import sys
from pathlib import Path
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


@app.command()
def pull(
    profiles: Annotated[list[str], typer.Argument(help="Profile files or shipped names.")],
    offline: Annotated[
        bool, typer.Option("--offline", help="Use the cache only; fail naming what is missing.")
    ] = False,
    cache_dir: Annotated[
        Path | None,
        typer.Option(help="Download here (default: model.cache_dir, LLMDEPLOY_CACHE, XDG cache)."),
    ] = None,
) -> None:
    """Download each profile's model into the cache: verified, resumable, disk-checked.

    A second pull fetches nothing; an interrupted one continues where it stopped;
    two pulls of one model at once share the work. `up` pulls by itself when needed.
    """
    from llmdeploy.commands import pull as command

    raise typer.Exit(command.run(profiles, offline=offline, cache_dir=cache_dir))


@app.command()
def up(
    profile: ProfileArg,
    detach: Annotated[
        bool, typer.Option("--detach", "-d", help="Return once ready; stop later with `down`.")
    ] = False,
    timeout: Annotated[
        float | None,
        typer.Option(
            help="Seconds to wait for ready (default: the profile's readiness.timeout_s)."
        ),
    ] = None,
    probe: Annotated[
        bool, typer.Option(help="Send one real 1-token request before reporting ready.")
    ] = True,
    grace: Annotated[
        float, typer.Option(help="Seconds between SIGTERM and SIGKILL when stopping.")
    ] = 15.0,
    gpu_check: Annotated[
        bool, typer.Option("--gpu-check/--skip-gpu-check", help="Refuse if GPU memory is short.")
    ] = True,
    smoke: Annotated[
        bool,
        typer.Option(
            "--smoke",
            help="Run `llmdeploy smoke` once ready; then stop it (with --detach: keep it "
            "running only if every check passed). The CI one-liner.",
        ),
    ] = False,
    junit: Annotated[
        Path | None, typer.Option(help="With --smoke: write a JUnit XML report here.")
    ] = None,
    offline: Annotated[
        bool, typer.Option("--offline", help="Never contact a model hub; use the cache only.")
    ] = False,
    supervisor: Annotated[bool, typer.Option("--supervisor", hidden=True)] = False,
) -> None:
    """Start a deployment and wait until it really serves.

    Preflight (port, GPU memory, model files), launch in its own process group,
    stream the engine's log, wait for health and one real request. In the
    foreground Ctrl-C stops everything (exit 130); with --detach it keeps running.
    Exit 3 if the engine fails to start, with its last log lines and a diagnosis.
    """
    from llmdeploy.commands import up as command

    raise typer.Exit(
        command.run(
            profile,
            detached=detach,
            supervisor=supervisor,
            timeout=timeout,
            probe=probe,
            grace=grace,
            gpu_check=gpu_check,
            smoke=smoke,
            junit=junit,
            offline=offline,
        )
    )


@app.command()
def down(
    names: Annotated[list[str] | None, typer.Argument(help="Deployments to stop.")] = None,
    all_: Annotated[bool, typer.Option("--all", help="Stop every registered deployment.")] = False,
    grace: Annotated[float, typer.Option(help="Seconds between SIGTERM and SIGKILL.")] = 15.0,
) -> None:
    """Stop deployments and verify no process of theirs is left (exit 5 if one is)."""
    from llmdeploy.commands import down as command

    raise typer.Exit(command.run(names or [], every=all_, grace=grace))


@app.command()
def status(
    json: Annotated[bool, typer.Option("--json", help="Machine-readable output.")] = False,
) -> None:
    """List deployments with live health and uptime; stale entries are shown once, then cleaned."""
    from llmdeploy.commands import status as command

    raise typer.Exit(command.run(as_json=json))


@app.command()
def logs(
    name: Annotated[str, typer.Argument(help="Deployment name.")],
    follow: Annotated[
        bool, typer.Option("--follow", "-f", help="Keep printing new lines.")
    ] = False,
    lines: Annotated[int, typer.Option("-n", "--lines", help="How many last lines.")] = 40,
) -> None:
    """Show a deployment's log (engine output and llmdeploy's notes)."""
    from llmdeploy.commands import logs as command

    raise typer.Exit(command.run(name, follow=follow, lines=lines))


@app.command()
def smoke(
    name: Annotated[
        str | None, typer.Argument(help="Deployment to check (default: the only one running).")
    ] = None,
    url: Annotated[
        str | None, typer.Option(help="Check any OpenAI-compatible server instead.")
    ] = None,
    model: Annotated[str | None, typer.Option(help="With --url: the served model name.")] = None,
    profile: Annotated[
        str | None, typer.Option(help="Profile whose settings say what to expect.")
    ] = None,
    api_key_env: Annotated[
        str | None, typer.Option(help="Environment variable holding the API key.")
    ] = None,
    only: Annotated[
        list[str] | None, typer.Option(help="Run only these check ids (repeatable).")
    ] = None,
    skip: Annotated[list[str] | None, typer.Option(help="Skip these check ids.")] = None,
    junit: Annotated[Path | None, typer.Option(help="Write a JUnit XML report here.")] = None,
    json: Annotated[bool, typer.Option("--json", help="Machine-readable output.")] = False,
) -> None:
    """Verify a deployment through the official OpenAI client. Exit 8 if any check fails.

    Check ids: models, completion, chat, stream, thinking-on, thinking-off,
    think-switches, auth, json-schema. Checks that do not apply are skipped (e.g. the
    thinking contract without a reasoning parser). A failure names the likely cause,
    e.g. a reasoning parser that does not match the model.
    """
    from llmdeploy.commands import smoke as command

    raise typer.Exit(
        command.run(
            name,
            url=url,
            model=model,
            profile_path=profile,
            api_key_env=api_key_env,
            only=only or [],
            skip=skip or [],
            junit=junit,
            as_json=json,
        )
    )


@app.command()
def bench(
    name: Annotated[
        str | None, typer.Argument(help="Deployment to load (default: the only one running).")
    ] = None,
    url: Annotated[
        str | None, typer.Option(help="Load any OpenAI-compatible server instead.")
    ] = None,
    model: Annotated[str | None, typer.Option(help="With --url: the served model name.")] = None,
    profile: Annotated[
        str | None, typer.Option(help="With --url: a profile naming the model and its API key.")
    ] = None,
    api_key_env: Annotated[
        str | None, typer.Option(help="Environment variable holding the API key.")
    ] = None,
    compare: Annotated[
        tuple[str, str] | None,
        typer.Option(
            metavar="A B",
            help="A/B: bring profile A up, bench it, take it down; the same for B; then "
            "print both side by side with ratios B/A. Always taken down, even on Ctrl-C.",
        ),
    ] = None,
    concurrency: Annotated[
        str | None,
        typer.Option(
            metavar="N[,N…]",
            help="Requests kept in flight (closed loop; default 1). A list sweeps: 1,4,16. "
            "With --rate: the most in flight at once.",
        ),
    ] = None,
    requests: Annotated[
        int | None,
        typer.Option(help="Requests per level (default 100, or unlimited with --duration)."),
    ] = None,
    duration: Annotated[
        float | None,
        typer.Option(help="Seconds of sending per level; with --requests, whichever ends first."),
    ] = None,
    rate: Annotated[
        float | None,
        typer.Option(
            help="Open loop: Poisson arrivals at this many requests/s (inf: all at once). "
            "Default: closed loop."
        ),
    ] = None,
    burstiness: Annotated[
        float, typer.Option(help="With --rate: gamma shape of arrival gaps; < 1 is burstier.")
    ] = 1.0,
    input_len: Annotated[
        int,
        typer.Option(
            help="Random prompts of this many words (≈ tokens; counts come from the "
            "server's usage). Fresh, seeded prompts per level."
        ),
    ] = 128,
    prompts: Annotated[
        Path | None,
        typer.Option(
            help='Prompts from a file instead: .jsonl lines {"prompt": …} or {"messages": '
            '[…]} (optional "max_tokens"), or a ShareGPT-style .json list.'
        ),
    ] = None,
    output_len: Annotated[int, typer.Option(help="max_tokens of every request.")] = 128,
    ignore_eos: Annotated[
        bool,
        typer.Option("--ignore-eos", help="Generate exactly --output-len tokens (vLLM, SGLang)."),
    ] = False,
    seed: Annotated[int, typer.Option(help="Seed of random prompts and arrival times.")] = 0,
    endpoint: Annotated[
        str, typer.Option(help="chat (/v1/chat/completions) or completions (/v1/completions).")
    ] = "chat",
    stream: Annotated[
        bool, typer.Option(help="Stream responses (TTFT, TPOT and ITL need it).")
    ] = True,
    temperature: Annotated[
        float | None, typer.Option(help="Sampling temperature (default: the server's).")
    ] = None,
    warmup: Annotated[
        int, typer.Option(help="Requests sent first and not measured (warm caches, compile).")
    ] = 0,
    timeout: Annotated[float, typer.Option(help="Seconds before one request fails.")] = 600.0,
    slo: Annotated[
        str | None,
        typer.Option(
            help="Goodput: the share of requests meeting every SLO, e.g. "
            "ttft=500ms,tpot=50ms,e2el=2s."
        ),
    ] = None,
    fail_if: Annotated[
        list[str] | None,
        typer.Option(
            metavar="EXPR",
            help="Exit 10 naming the figure if this holds, e.g. 'p99_ttft_ms>500' or "
            "'output_tok_per_s<100' (repeatable; any key of the JSON summary). Checked "
            "before any load is sent.",
        ),
    ] = None,
    json: Annotated[
        Path | None,
        typer.Option("--json", help="Write all figures and every request's timings here."),
    ] = None,
    chart: Annotated[
        Path | None,
        typer.Option(
            help="Draw throughput and latency versus concurrency into this PNG "
            "(needs matplotlib: pip install 'llmdeploy[bench]')."
        ),
    ] = None,
) -> None:
    """Load a deployment and measure it: throughput; TTFT, TPOT, ITL and end-to-end
    latency (mean, median, p90, p99); goodput under --slo.

    Examples: llmdeploy bench qwen3-8b --concurrency 1,4,16 --chart sweep.png ·
    llmdeploy bench --url http://host:8000 --model M --rate 5 --duration 60 ·
    llmdeploy bench qwen3-8b --fail-if 'p99_ttft_ms>500' (CI: exit 10 if it holds) ·
    llmdeploy bench --compare a.yaml b.yaml
    """
    from llmdeploy.commands import bench as command

    options = command.Options(
        concurrency=concurrency,
        requests=requests,
        duration=duration,
        rate=rate,
        burstiness=burstiness,
        input_len=input_len,
        prompts=prompts,
        output_len=output_len,
        ignore_eos=ignore_eos,
        seed=seed,
        endpoint=endpoint,
        stream=stream,
        temperature=temperature,
        warmup=warmup,
        timeout=timeout,
        slo=slo,
        fail_if=tuple(fail_if or ()),
        json_path=json,
        chart=chart,
    )
    raise typer.Exit(
        command.run(
            name,
            url=url,
            model=model,
            profile_path=profile,
            api_key_env=api_key_env,
            compare=compare,
            options=options,
        )
    )


@app.command()
def generate(
    target: Annotated[
        str,
        typer.Argument(
            help="A running deployment's name, or a profile: one that is not running is "
            "brought up for the run and taken down after."
        ),
    ],
    input_: Annotated[
        Path,
        typer.Option(
            "--input",
            "-i",
            help='JSONL, a prompt a line: {"id": …, "prompt": "…"} or {"messages": […]}, '
            'optional "max_tokens". Without an id, the line number is the id.',
        ),
    ],
    output: Annotated[
        Path,
        typer.Option(
            "--output",
            "-o",
            help="JSONL results, one line appended per finished prompt: id, answer, "
            "reasoning, finish_reason, usage. Ids already in it are skipped.",
        ),
    ],
    concurrency: Annotated[int, typer.Option(help="Requests in flight at once.")] = 4,
    thinking: Annotated[
        bool | None,
        typer.Option(
            "--thinking/--no-thinking",
            help="Thinking mode (default: the profile's reasoning.thinking); picks the "
            "sampling preset sampling.thinking or sampling.non_thinking.",
        ),
    ] = None,
    max_tokens: Annotated[
        int | None,
        typer.Option(help="Per prompt; a line's own max_tokens wins (default: the server's)."),
    ] = None,
    timeout: Annotated[float, typer.Option(help="Seconds before one request fails.")] = 600.0,
    api_key_env: Annotated[
        str | None, typer.Option(help="Environment variable holding the API key.")
    ] = None,
) -> None:
    """Generate answers for a file of prompts through the served model; resumable.

    Each finished prompt is appended to --output at once, so an interrupted run loses
    only what was in flight: run the same command again to do the rest (failed prompts
    are retried too). Reasoning is kept apart from the answer.
    """
    from llmdeploy.commands import generate as command

    raise typer.Exit(
        command.run(
            target,
            input_path=input_,
            output_path=output,
            concurrency=concurrency,
            thinking=thinking,
            max_tokens=max_tokens,
            timeout=timeout,
            api_key_env=api_key_env,
        )
    )


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
