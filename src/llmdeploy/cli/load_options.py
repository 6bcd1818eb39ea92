"""The load-generation verbs, `bench` and `generate`: their many options live here so
that cli.py stays a readable table of contents. Wiring only, like cli.py: each verb's
work is in commands/bench.py and commands/generate.py, imported when it runs.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from llmdeploy.cli.options import (
    COUNT,
    COUNT_OR_ZERO,
    POSITIVE,
    RATE,
    SECONDS,
    TEMPERATURE,
    ApiKeyEnvOpt,
    ModelOpt,
    UrlOpt,
    number_option,
)


def bench(
    name: Annotated[
        str | None, typer.Argument(help="Deployment to load (default: the only one running).")
    ] = None,
    url: UrlOpt = None,
    model: ModelOpt = None,
    profile: Annotated[
        str | None, typer.Option(help="With --url: a profile naming the model and its API key.")
    ] = None,
    api_key_env: ApiKeyEnvOpt = None,
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
        number_option(
            help="Requests per level (default 100, or unlimited with --duration).", rule=COUNT
        ),
    ] = None,
    duration: Annotated[
        float | None,
        number_option(
            help="Seconds of sending per level; with --requests, whichever ends first.",
            rule=SECONDS,
        ),
    ] = None,
    rate: Annotated[
        float | None,
        number_option(
            help="Open loop: Poisson arrivals at this many requests/s (inf: all at once). "
            "Default: closed loop.",
            rule=RATE,
        ),
    ] = None,
    burstiness: Annotated[
        float,
        number_option(
            help="With --rate: gamma shape of arrival gaps; < 1 is burstier.", rule=POSITIVE
        ),
    ] = 1.0,
    input_len: Annotated[
        int,
        number_option(
            help="Random prompts of exactly this many tokens as the server counts them "
            "(its usage.prompt_tokens; chat: the chat template's tokens included), made "
            "through its tokenizer endpoint (vLLM, SGLang, llama.cpp); words where it has "
            "none, with a warning. Fresh, seeded, distinct prompts per level.",
            rule=COUNT,
        ),
    ] = 128,
    prompts: Annotated[
        Path | None,
        typer.Option(
            help='Prompts from a file instead: .jsonl lines {"prompt": …} or {"messages": '
            '[…]} (optional "max_tokens"), or a ShareGPT-style .json list.'
        ),
    ] = None,
    output_len: Annotated[
        int, number_option(help="max_tokens of every request.", rule=COUNT)
    ] = 128,
    ignore_eos: Annotated[
        bool,
        typer.Option("--ignore-eos", help="Generate exactly --output-len tokens (vLLM, SGLang)."),
    ] = False,
    seed: Annotated[
        int,
        number_option(
            help="Seed of random prompts and arrival times. The same seed sends the same "
            "prompts, which a server's prefix cache then serves: change it between runs to "
            "measure uncached prefill.",
            rule=COUNT_OR_ZERO,
        ),
    ] = 0,
    endpoint: Annotated[
        str, typer.Option(help="chat (/v1/chat/completions) or completions (/v1/completions).")
    ] = "chat",
    stream: Annotated[
        bool, typer.Option(help="Stream responses (TTFT, TPOT and ITL need it).")
    ] = True,
    temperature: Annotated[
        float | None,
        number_option(help="Sampling temperature (default: the server's).", rule=TEMPERATURE),
    ] = None,
    warmup: Annotated[
        int,
        number_option(
            help="Requests sent first and not measured (warm caches, compile).",
            rule=COUNT_OR_ZERO,
        ),
    ] = 0,
    timeout: Annotated[
        float, number_option(help="Seconds before one request fails.", rule=SECONDS)
    ] = 600.0,
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
    from llmdeploy.cli import bench as command

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
    concurrency: Annotated[
        int, number_option(help="Requests in flight at once.", rule=COUNT)
    ] = 4,
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
        number_option(
            help="Per prompt; a line's own max_tokens wins (default: the server's).", rule=COUNT
        ),
    ] = None,
    timeout: Annotated[
        float, number_option(help="Seconds before one request fails.", rule=SECONDS)
    ] = 600.0,
    api_key_env: ApiKeyEnvOpt = None,
) -> None:
    """Generate answers for a file of prompts through the served model; resumable.

    Each finished prompt is appended to --output at once, so an interrupted run loses
    only what was in flight: run the same command again to do the rest (failed prompts
    are retried too). Reasoning is kept apart from the answer.
    """
    from llmdeploy.cli import generate as command

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
