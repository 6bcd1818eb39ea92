"""`llmdeploy generate TARGET --input IN.jsonl --output OUT.jsonl` (the work: generate.py).

TARGET is a running deployment's name, or a profile. A profile whose deployment is not
running is brought up for the run (detached) and taken down after, however the run
ends; a running one is used and left running.
"""

from __future__ import annotations

from contextlib import nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from typing import TextIO

from llmdeploy import batch as generate
from llmdeploy.client.interrupt import Interrupted, Interrupts, exiting
from llmdeploy.console import Console
from llmdeploy.errors import CheckError, InputError, LlmdeployError, NotFoundError
from llmdeploy.output import err, out
from llmdeploy.profile import load as profile_load
from llmdeploy.profile import shipped
from llmdeploy.run import ephemeral
from llmdeploy.run.state import Registry
from llmdeploy.smoke.checks import NULL_CONTENT, Target, null_content_cause
from llmdeploy.smoke.target import resolve_target


def run(
    argument: str,
    *,
    input_path: Path,
    output_path: Path,
    concurrency: int,
    thinking: bool | None,
    max_tokens: int | None,
    timeout: float,
    api_key_env: str | None,
) -> int:
    if concurrency < 1 or (max_tokens is not None and max_tokens < 1):
        raise InputError("--concurrency and --max-tokens must be ≥ 1")
    job = Job(argument, input_path, output_path, concurrency, thinking, max_tokens, timeout)
    with job.signals:
        try:
            return job.run(api_key_env)
        except Interrupted as exc:
            # The rows written so far are on disk, whole (each flushed as it finished).
            err(
                f"interrupted by {exc.name}: {job.outcome.written} finished prompts written "
                f"to {output_path}; rerun to do the rest"
            )
            exiting()
            return exc.code


@dataclass
class Job:
    """One run of the command; `outcome` counts what it wrote, for the interrupt line."""

    argument: str
    input_path: Path
    output_path: Path
    concurrency: int
    thinking: bool | None
    max_tokens: int | None
    timeout: float
    outcome: generate.Outcome = field(default_factory=generate.Outcome)
    signals: Interrupts = field(default_factory=Interrupts)

    def run(self, api_key_env: str | None) -> int:
        items = generate.read_items(self.input_path)
        with generate.open_output(self.output_path) as handle:
            done = generate.finished_ids(self.output_path)
            pending = [item for item in items if item.key not in done]
            if not pending:
                out(f"nothing to do: all {len(items)} prompts are in {self.output_path}")
                nulls = _null_answers(self.output_path, self.argument)
                if nulls:
                    raise nulls
                return 0
            running = _running(self.argument)
            up = nullcontext(running) if running else ephemeral.deployment(self.argument)
            with up as name:
                self.signals.check()  # a signal while it came up: send nothing
                settings, target = _settings(name, self.thinking, self.max_tokens, api_key_env)
                self._generate(target, pending, settings, handle)
        nulls = _null_answers(self.output_path, self.argument, settings.reasoning_parser)
        _report(self.outcome, len(pending), len(items) - len(pending), self.output_path, nulls)
        if nulls:
            raise nulls
        return 0

    def _generate(
        self,
        target: Target,
        items: list[generate.Item],
        settings: generate.Settings,
        output: TextIO,
    ) -> None:
        console = Console()

        def progress(outcome: generate.Outcome) -> None:
            finished = outcome.written + len(outcome.failed)
            console.status(f"generate: {finished}/{len(items)} done, {len(outcome.failed)} failed")

        try:
            self.signals.run(
                lambda: generate.run_async(
                    target.base_url, items, settings, output, concurrency=self.concurrency,
                    api_key=target.api_key, timeout=self.timeout, progress=progress,
                    outcome=self.outcome,
                )
            )  # fmt: skip
        except ConnectionError as exc:
            raise LlmdeployError(str(exc), hint="is it running? `llmdeploy status`") from None
        finally:
            console.clear_status()


def _running(argument: str) -> str | None:
    """The name of the running deployment TARGET means, or None for a profile to bring up."""
    registry = Registry()
    if "/" not in argument and registry.is_live(argument):
        return argument
    path = shipped.resolve(argument)
    if not path.exists():
        raise NotFoundError(
            f"{argument!r} is neither a running deployment nor a profile",
            hint="`llmdeploy status` lists deployments, `llmdeploy profiles` shipped profiles",
        )
    name = profile_load.load(path).name
    return name if registry.is_live(name) else None


def _settings(
    name: str, thinking: bool | None, max_tokens: int | None, api_key_env: str | None
) -> tuple[generate.Settings, Target]:
    target = resolve_target(name, url=None, model=None, profile_path=None, api_key_env=api_key_env)
    profile = profile_load.load(Registry().load(name).profile)
    mode = profile.reasoning.thinking if thinking is None else thinking
    preset = profile.sampling.thinking if mode else profile.sampling.non_thinking
    settings = generate.Settings(
        model=target.model,
        thinking=mode,
        sampling=preset.model_dump(),
        template_switch=profile.reasoning.parser is not None,
        engine=profile.engine.type,
        max_tokens=max_tokens,
        reasoning_parser=profile.reasoning.parser,
    )
    return settings, target


def _report(
    outcome: generate.Outcome,
    pending: int,
    skipped: int,
    output_path: Path,
    nulls: CheckError | None = None,
) -> None:
    already = f" ({skipped} were there already)" if skipped else ""
    out(f"{outcome.written} of {pending} prompts written to {output_path}{already}")
    if outcome.failed:
        shown = list(outcome.failed.items())[:3]
        # The failures decide the exit code (a rerun retries them); the null answers this
        # run wrote are said too, not left for the rerun to tell.
        also = f"also {nulls.message}; {nulls.hint}" if nulls else None
        raise LlmdeployError(
            f"{len(outcome.failed)} of {pending} prompts failed; run the same command again "
            "to retry only those",
            details="\n".join(f"id {key}: {error}" for key, error in shown),
            hint=also,
        )


def _null_answers(output_path: Path, argument: str, parser: str | None = None) -> CheckError | None:
    """The error for the rows of the output that are null answers with thinking off
    (smoke's diagnosis; the rows stay, so a rerun reports them again), or None."""
    ids = generate.null_answers(output_path)
    if not ids:
        return None
    if parser is None:
        parser = _parser_of(argument)
    shown = ", ".join(ids[:5]) + (f" and {len(ids) - 5} more" if len(ids) > 5 else "")
    return CheckError(
        f"{len(ids)} answers: {NULL_CONTENT} (ids {shown})",
        hint=f"likely cause: {null_content_cause(parser)}; the rows are kept in {output_path}",
    )


def _parser_of(argument: str) -> str | None:
    registry = Registry()
    try:
        path = registry.load(argument).profile if registry.is_live(argument) else argument
        return profile_load.load(shipped.resolve(str(path))).reasoning.parser
    except Exception:  # only for the wording of the diagnosis
        return None
