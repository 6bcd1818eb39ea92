"""`llmdeploy bench`: load a deployment (or any OpenAI-compatible server) and print its
figures, per concurrency level; gate on them for CI. `--compare A B` brings two profiles
up in turn, benches each identically and takes it down, then sets them side by side."""

from __future__ import annotations

import json
import math
import os
from dataclasses import dataclass, field, replace
from pathlib import Path

from llmdeploy import bench
from llmdeploy.bench import suite, token_prompts
from llmdeploy.bench.metrics import Metrics
from llmdeploy.client.interrupt import Interrupted, Interrupts, exiting
from llmdeploy.console import Console
from llmdeploy.errors import GateError, InputError, LlmdeployError
from llmdeploy.output import err, out
from llmdeploy.profile import load as profile_load
from llmdeploy.profile import shipped
from llmdeploy.run import ephemeral
from llmdeploy.smoke import checks as smoke
from llmdeploy.smoke.target import resolve_target

DEFAULT_REQUESTS = 100
DURATION_PROMPTS = 1000  # distinct random prompts for a run bounded by time only


@dataclass(frozen=True)
class Options:
    concurrency: str | None = None
    requests: int | None = None
    duration: float | None = None
    rate: float | None = None
    burstiness: float = 1.0
    input_len: int = 128
    prompts: Path | None = None
    output_len: int = 128
    ignore_eos: bool = False
    seed: int = 0
    endpoint: str = "chat"
    stream: bool = True
    temperature: float | None = None
    warmup: int = 0
    timeout: float = 600.0
    slo: str | None = None
    fail_if: tuple[str, ...] = ()
    json_path: Path | None = None
    chart: Path | None = None


@dataclass(frozen=True)
class Plan:
    """Everything the runs need, checked before the first request (or deployment) starts."""

    levels: list[int | None]
    loads: list[bench.LoadConfig]
    prompt_sets: list[list[bench.Prompt]] | None  # one per level; None: random, made per target
    prompt_count: int  # random prompts per level
    params: bench.RequestParams  # the model is filled in per target
    slos: dict[str, float]
    gates: list[bench.Gate]
    timeout: float


def run(
    name: str | None,
    *,
    url: str | None,
    model: str | None,
    profile_path: str | None,
    api_key_env: str | None,
    compare: tuple[str, str] | None,
    options: Options,
) -> int:
    session = Session(options)
    with session.signals:
        try:
            plan = session.plan = make_plan(options)
            if compare and (name or url):
                raise InputError("--compare brings its own deployments up: drop NAME and --url")
            if compare:
                session.compare(compare)
            else:
                target = resolve_target(
                    name,
                    url=url,
                    model=model,
                    profile_path=profile_path,
                    api_key_env=api_key_env,
                    verb="bench",
                )
                session.sweep(target, None)
                if len(session.runs) > 1:
                    out(suite.sweep_table(session.runs, plan.slos))
            return _finish(session.runs, plan, options)
        except Interrupted as exc:
            return session.interrupted(exc)


def make_plan(o: Options) -> Plan:
    try:
        levels = _levels(o.concurrency, open_loop=o.rate is not None)
        if o.chart is not None and None in levels:
            raise ValueError("--chart plots against concurrency: give --concurrency, e.g. 1,4,16")
        slos = bench.parse_slos(o.slo) if o.slo else {}
        gates = bench.parse_gates(o.fail_if)
        loads = [_load(o, level) for level in levels]
        if o.endpoint not in ("chat", "completions"):
            raise ValueError(f"--endpoint is chat or completions, not {o.endpoint!r}")
        params = bench.RequestParams(
            model="",
            endpoint="chat" if o.endpoint == "chat" else "completions",
            stream=o.stream,
            max_tokens=o.output_len,
            ignore_eos=o.ignore_eos,
            temperature=o.temperature,
        )
        prompt_sets = _prompts(o, len(levels))
        count = o.requests or (DEFAULT_REQUESTS if o.duration is None else DURATION_PROMPTS)
        for path in (o.json_path, o.chart):
            _writable(path)
    except ValueError as exc:
        raise InputError(str(exc)) from None
    except OSError as exc:
        raise InputError(f"{o.prompts}: {exc.strerror or exc}") from None
    if o.chart is not None:
        _require_matplotlib()
    return Plan(levels, loads, prompt_sets, count, params, slos, gates, o.timeout)


def _levels(text: str | None, *, open_loop: bool) -> list[int | None]:
    if text is None:
        return [None] if open_loop else [1]
    try:
        levels = [int(part) for part in text.split(",")]
    except ValueError:
        raise ValueError(
            f"--concurrency takes whole numbers separated by commas, e.g. 1,4,16; got {text!r}"
        ) from None
    if min(levels) < 1 or len(set(levels)) != len(levels):
        raise ValueError(f"--concurrency levels must be distinct and ≥ 1; got {text!r}")
    return list(levels)


def _load(o: Options, level: int | None) -> bench.LoadConfig:
    requests = DEFAULT_REQUESTS if o.requests is None and o.duration is None else o.requests
    if o.rate is not None and math.isinf(o.rate) and requests is None:
        raise ValueError("--rate inf sends every request at once: give --requests")
    return bench.LoadConfig(
        concurrency=level or 1,
        rate=o.rate,
        burstiness=o.burstiness,
        max_concurrency=level if o.rate is not None else None,
        requests=requests,
        duration=o.duration,
        warmup=o.warmup,
        seed=o.seed,
    )


def _prompts(o: Options, levels: int) -> list[list[bench.Prompt]] | None:
    """A prompts file's prompts for every level; random ones (None) are made per target,
    through its tokenizer (`Session.prompts`)."""
    if o.prompts is not None:
        return [bench.load_prompts(o.prompts)] * levels
    if o.input_len < 1:
        raise ValueError("--input-len must be ≥ 1")
    return None


def _writable(path: Path | None) -> None:
    """Refuse an output path before the run, not after it (the run would be lost)."""
    if path is None:
        return
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ValueError(f"{path}: cannot create its directory ({exc.strerror or exc})") from None
    if path.is_dir() or not os.access(path.parent, os.W_OK):
        raise ValueError(f"{path}: cannot write a file there")


def _require_matplotlib() -> None:
    from llmdeploy.bench import chart

    try:
        chart.require()
    except ImportError:
        raise InputError(
            "--chart needs matplotlib", hint="pip install 'llmdeploy[bench]'"
        ) from None


@dataclass
class Session:
    """One `bench` command: the levels measured so far and the one being measured, so
    that a signal keeps everything that finished (printed, and in --json)."""

    options: Options
    plan: Plan | None = None
    runs: list[suite.Run] = field(default_factory=list)
    current: tuple[str | None, int | None, bench.Benchmark] | None = None
    signals: Interrupts = field(default_factory=Interrupts)

    def sweep(self, target: smoke.Target, side: str | None) -> None:
        """Every level against one target, each table printed as soon as it is measured."""
        plan = self.plan
        assert plan is not None
        params = replace(plan.params, model=target.model)
        prompt_sets = self.prompts(target, params)
        for level, load, (prompts, origin) in zip(
            plan.levels, plan.loads, prompt_sets, strict=True
        ):
            title = suite.level_title(side, load)
            result = self._measure(target, params, prompts, load, title, (side, level), origin)
            done = suite.measured(side, level, result, plan.slos, plan.gates)
            if len(plan.levels) > 1 or side:
                out(f"== {title} ==")
            slos = plan.slos or None
            out(bench.format_table(result, done.metrics, slos=slos, violations=done.violations))
            out()
            self.runs.append(done)

    def prompts(
        self, target: smoke.Target, params: bench.RequestParams
    ) -> list[tuple[list[bench.Prompt], bench.PromptOrigin]]:
        """Every level's prompts for this target: the file's, or fresh random ones per level
        (seed + level: a prefix cache must not flatter later levels) of exactly
        --input-len tokens as this server counts them, through its tokenizer endpoint
        (words where it has none, with a warning)."""
        plan, o = self.plan, self.options
        assert plan is not None
        if plan.prompt_sets is not None:
            origin = bench.PromptOrigin("file", path=str(o.prompts))
            return [(prompts, origin) for prompts in plan.prompt_sets]
        sets = [(plan.prompt_count, o.seed + i) for i in range(len(plan.levels))]
        console = Console()
        console.status(
            f"bench: {len(sets) * plan.prompt_count} prompts of {o.input_len} tokens "
            "through the server's tokenizer"
        )

        async def make() -> list[token_prompts.PromptSet]:
            return await token_prompts.build(
                target.base_url, params, input_len=o.input_len, sets=sets,
                api_key=target.api_key, timeout=plan.timeout,
            )  # fmt: skip

        try:
            built = self.signals.run(make)
        except ConnectionError as exc:
            raise LlmdeployError(str(exc), hint="is it running? `llmdeploy status`") from None
        except token_prompts.TokenizerRefused as exc:
            raise LlmdeployError(
                f"the server refused its tokenizer request ({exc})",
                hint="check the API key (--api-key-env, or the profile's serving.api_key)",
            ) from None
        except (token_prompts.TokenizerError, OSError) as exc:
            why = str(exc) or type(exc).__name__
            raise LlmdeployError(
                f"making the prompts through the server's tokenizer failed: {why}",
                hint="--prompts FILE does without it",
            ) from None
        except ValueError as exc:
            raise InputError(str(exc)) from None
        finally:
            console.clear_status()
        if built[0].origin.warning:
            err(f"warning: {built[0].origin.warning}")
        return [(s.prompts, s.origin) for s in built]

    def _measure(
        self,
        target: smoke.Target,
        params: bench.RequestParams,
        prompts: list[bench.Prompt],
        load: bench.LoadConfig,
        title: str,
        where: tuple[str | None, int | None],
        origin: bench.PromptOrigin | None = None,
    ) -> bench.BenchResult:
        assert self.plan is not None
        console, count = Console(), 0
        total = f"/{load.requests}" if load.requests else ""

        def progress(_record: bench.RequestRecord) -> None:
            nonlocal count
            count += 1
            console.status(f"bench {title}: {count}{total} requests")

        run = bench.Benchmark(
            target.base_url, params, prompts, load, api_key=target.api_key,
            timeout=self.plan.timeout, on_record=progress, origin=origin,
        )  # fmt: skip
        self.current = (where[0], where[1], run)
        try:
            result = self.signals.run(run.run)  # starts nothing after a signal
        except ConnectionError as exc:
            raise LlmdeployError(str(exc), hint="is it running? `llmdeploy status`") from None
        finally:
            console.clear_status()
        self.current = None
        return result

    def compare(self, profiles: tuple[str, str]) -> None:
        sides = _side_names(profiles)
        for argument, side in zip(profiles, sides, strict=True):
            self.signals.check()  # a signal while A went down: do not bring B up
            with ephemeral.deployment(argument) as name:
                target = resolve_target(
                    name, url=None, model=None, profile_path=None, api_key_env=None
                )
                self.sweep(target, side)
        assert self.plan is not None
        a, b = self.runs[: len(self.runs) // 2], self.runs[len(self.runs) // 2 :]
        out(f"== {sides[0]} (A) vs {sides[1]} (B) ==")
        out(suite.compare_table(a, b, self.plan.slos))

    def interrupted(self, exc: Interrupted) -> int:
        """Keep what was measured (--json: the levels done and the requests finished of
        the level cut short), say so in one line, and exit 128+signum. No gate is judged
        and no chart drawn: a partial run proves nothing either way."""
        runs = list(self.runs)
        if self.current is not None and self.plan is not None:
            side, level, cut = self.current
            result = cut.result()
            if result.records:
                runs.append(suite.measured(side, level, result, self.plan.slos, (), complete=False))
        kept = ""
        path = self.options.json_path
        if path is not None and runs:
            slos = self.plan.slos if self.plan else None
            doc = suite.document(runs, slos or None, interrupted=True)
            path.write_text(json.dumps(doc) + "\n")
            kept = f"; results so far in {path}"
        finished = sum(len(r.result.records) for r in runs)
        err(f"interrupted by {exc.name}: {finished} requests measured{kept}")
        exiting()
        return exc.code


def _side_names(profiles: tuple[str, str]) -> list[str]:
    """Both profiles are loaded (so a typo in B fails before A starts) and named by their
    deployment names, or by their paths where those are the same."""
    names = [profile_load.load(shipped.resolve(p)).name for p in profiles]
    return list(profiles) if names[0] == names[1] else names


def _finish(runs: list[suite.Run], plan: Plan, o: Options) -> int:
    """Artifacts first (CI keeps them even when the gate fails), then the verdict."""
    slos = plan.slos or None
    if o.json_path is not None:
        o.json_path.parent.mkdir(parents=True, exist_ok=True)
        o.json_path.write_text(json.dumps(suite.document(runs, slos)) + "\n")
    if o.chart is not None:
        from llmdeploy.bench import chart

        series: dict[str, list[tuple[int, Metrics]]] = {}
        for r in runs:
            series.setdefault(r.side or "", []).append((r.concurrency or 1, r.metrics))
        p = runs[0].result.params
        chart.write(o.chart, series, f"{p.model} · /{p.endpoint} · max_tokens {p.max_tokens}")
        err(f"chart written to {o.chart}")
    dead = [r for r in runs if r.all_failed]
    if dead:
        raise LlmdeployError(suite.failure_line(dead[0]))
    lines = suite.violation_lines(runs, several=len(runs) > 1)
    if lines:
        raise GateError("; ".join(lines))
    return 0
