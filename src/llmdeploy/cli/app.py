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

from llmdeploy.cli import load_options as cli_load
from llmdeploy.cli.options import (
    COUNT_OR_ZERO,
    SECONDS,
    ApiKeyEnvOpt,
    JsonFlag,
    ModelOpt,
    ProfileArg,
    UrlOpt,
    number_option,
)

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


@app.command()
def validate(
    profiles: Annotated[list[str], typer.Argument(help="Profile files or shipped names.")],
) -> None:
    """Check profiles; each problem is one line `file:line field: message`. Exit 2 if any is bad."""
    from llmdeploy.cli import validate as command

    raise typer.Exit(command.run(profiles))


@app.command()
def plan(
    profile: ProfileArg,
    engine_version: Annotated[
        str | None,
        typer.Option(help="Build flags for this engine version, e.g. 0.9.1 (default: profile's)."),
    ] = None,
    json: JsonFlag = False,
) -> None:
    """Print the exact engine command a profile turns into (secrets shown as $VARS)."""
    from llmdeploy.cli import plan as command

    raise typer.Exit(command.run(profile, engine_version=engine_version, as_json=json))


@app.command()
def schema() -> None:
    """Print the JSON Schema of profiles (for editors' YAML completion)."""
    from llmdeploy.cli import schema as command

    raise typer.Exit(command.run())


@app.command()
def profiles() -> None:
    """List the shipped profiles, one line each."""
    from llmdeploy.cli import profiles as command

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
    from llmdeploy.cli import pull as command

    raise typer.Exit(command.run(profiles, offline=offline, cache_dir=cache_dir))


@app.command()
def up(
    profile: ProfileArg,
    detach: Annotated[
        bool, typer.Option("--detach", "-d", help="Return once ready; stop later with `down`.")
    ] = False,
    timeout: Annotated[
        float | None,
        number_option(
            help="Seconds to wait for ready (default: the profile's readiness.timeout_s).",
            rule=SECONDS,
        ),
    ] = None,
    probe: Annotated[
        bool, typer.Option(help="Send one real 1-token request before reporting ready.")
    ] = True,
    grace: Annotated[
        float,
        number_option(help="Seconds between SIGTERM and SIGKILL when stopping.", rule=SECONDS),
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
    node_rank: Annotated[
        int,
        number_option(
            "--node-rank",
            help="Multi-node profiles (nodes: N): run node K's part here; 0 (default) is the "
            "head, the node clients talk to.",
            rule=COUNT_OR_ZERO,
        ),
    ] = 0,
    head: Annotated[
        str | None,
        typer.Option("--head", help="Node 0's address, over the profile's distributed.head."),
    ] = None,
) -> None:
    """Start a deployment and wait until it really serves.

    Preflight (port, GPU memory), pull the model if needed (cancellable), launch the
    engine with every process it starts tracked, stream its log, wait for health and
    one real request. In the foreground Ctrl-C stops everything (exit 130; a second
    Ctrl-C kills at once); with --detach it keeps running until `llmdeploy down`.
    Exit 3 if the engine fails to start, with its last log lines and a diagnosis;
    `llmdeploy status` keeps showing the failure until `down`.
    """
    from llmdeploy.cli import up as command

    raise typer.Exit(
        command.run(
            profile,
            detached=detach,
            timeout=timeout,
            probe=probe,
            grace=grace,
            gpu_check=gpu_check,
            smoke=smoke,
            junit=junit,
            offline=offline,
            node_rank=int(node_rank),
            head=head,
        )
    )


@app.command()
def down(
    names: Annotated[list[str] | None, typer.Argument(help="Deployments to stop.")] = None,
    all_: Annotated[bool, typer.Option("--all", help="Stop every registered deployment.")] = False,
    grace: Annotated[
        float, number_option(help="Seconds between SIGTERM and SIGKILL.", rule=SECONDS)
    ] = 15.0,
) -> None:
    """Stop deployments in any phase (a download too) and verify no process of theirs
    is left (exit 5 if one is). Removes failed and corrupt records. Ctrl-C: kill now."""
    from llmdeploy.cli import down as command

    raise typer.Exit(command.run(names or [], every=all_, grace=grace))


@app.command()
def status(
    json: JsonFlag = False,
) -> None:
    """List deployments in every phase: pulling (bytes, %), starting, ready (health,
    uptime), restarting (count, next attempt), failed (reason; kept until `down`),
    orphaned (processes left, no supervisor: `down` stops them), corrupt records."""
    from llmdeploy.cli import status as command

    raise typer.Exit(command.run(as_json=json))


@app.command()
def logs(
    name: Annotated[str, typer.Argument(help="Deployment name.")],
    follow: Annotated[
        bool, typer.Option("--follow", "-f", help="Keep printing new lines.")
    ] = False,
    lines: Annotated[
        int,
        number_option(
            "-n", "--lines", help="How many last lines (0: only new ones, with -f).",
            rule=COUNT_OR_ZERO,
        ),
    ] = 40,
    replica: Annotated[
        int | None,
        number_option(
            "--replica", help="Only replica N's log (a deployment with replicas).",
            rule=COUNT_OR_ZERO,
        ),
    ] = None,
    router: Annotated[
        bool, typer.Option("--router", help="Only the router's log (a deployment with replicas).")
    ] = False,
) -> None:
    """Show a deployment's log (engine output and llmdeploy's notes). With replicas:
    llmdeploy's notes, then each replica's and the router's log, lines prefixed [r0],
    [router] (interleaved as they come with -f)."""
    from llmdeploy.cli import logs as command

    raise typer.Exit(command.run(name, follow=follow, lines=lines, replica=replica, router=router))


@app.command()
def smoke(
    name: Annotated[
        str | None, typer.Argument(help="Deployment to check (default: the only one running).")
    ] = None,
    url: UrlOpt = None,
    model: ModelOpt = None,
    profile: Annotated[
        str | None, typer.Option(help="Profile whose settings say what to expect.")
    ] = None,
    api_key_env: ApiKeyEnvOpt = None,
    only: Annotated[
        list[str] | None, typer.Option(help="Run only these check ids (repeatable).")
    ] = None,
    skip: Annotated[list[str] | None, typer.Option(help="Skip these check ids.")] = None,
    junit: Annotated[Path | None, typer.Option(help="Write a JUnit XML report here.")] = None,
    json: JsonFlag = False,
) -> None:
    """Verify a deployment through the official OpenAI client. Exit 8 if any check fails.

    Check ids: models, completion, chat, stream, thinking-on, thinking-off,
    think-switches, auth, json-schema. Checks that do not apply are skipped (e.g. the
    thinking contract without a reasoning parser). A failure names the likely cause,
    e.g. a reasoning parser that does not match the model.
    """
    from llmdeploy.cli import smoke as command

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


# bench and generate: defined in cli_load.py (many options), registered here.
app.command()(cli_load.bench)
app.command()(cli_load.generate)

# scale: declared in cli/scale.py beside what it does.
from llmdeploy.cli.scale import scale_command  # noqa: E402

app.command(name="scale")(scale_command)

# render k8s: a sub-app (more targets may follow), declared in cli/render.py.
from llmdeploy.cli.render import render_app  # noqa: E402 — kept beside its registration

app.add_typer(render_app, name="render")


def main() -> None:
    from llmdeploy.errors import LlmdeployError

    try:
        app(standalone_mode=True)
    except LlmdeployError as exc:
        from llmdeploy.cli.report import report

        report(exc)
        sys.exit(exc.exit_code)
