"""Drives the load: a closed loop (N requests always in flight) or an open loop (arrivals
at a rate, Poisson or burstier, seeded so two runs send the same schedule)."""

from __future__ import annotations

import asyncio
import itertools
import math
import random
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from .client import OpenAIClient, RequestParams
from .prompts import Prompt, PromptOrigin
from .records import RequestRecord

OnRecord = Callable[[RequestRecord], None]


@dataclass(frozen=True)
class LoadConfig:
    """How much load, and its shape. `rate=None` is the closed loop at `concurrency`;
    a rate is the open loop, optionally capped at `max_concurrency` in flight (arrivals
    beyond the cap wait in the client; their `scheduled` time shows the lag)."""

    concurrency: int = 1
    rate: float | None = None  # requests/s; math.inf sends all at once
    burstiness: float = 1.0  # gamma shape of inter-arrival times; 1.0 is Poisson
    max_concurrency: int | None = None
    requests: int | None = None  # stop after this many …
    duration: float | None = None  # … or after this many seconds of sending, whichever first
    warmup: int = 0  # requests sent (and discarded) before measuring
    seed: int = 0

    def __post_init__(self) -> None:
        if self.requests is None and self.duration is None:
            raise ValueError("give a number of requests or a duration")
        if self.requests is not None and self.requests < 1:
            raise ValueError("requests must be ≥ 1")
        if self.duration is not None and not self.duration > 0:
            raise ValueError("duration must be > 0")
        if self.concurrency < 1 or (self.max_concurrency or 1) < 1:
            raise ValueError("concurrency must be ≥ 1")
        if self.rate is not None and not self.rate > 0:
            raise ValueError("rate must be > 0 requests/s")
        if not self.burstiness > 0:
            raise ValueError("burstiness must be > 0")


@dataclass
class BenchResult:
    records: list[RequestRecord]  # in request order
    duration: float  # seconds from the first request sent to the last response's end
    started_at: float  # wall clock (time.time()) of the first request
    connections: int  # sockets the client opened (warmup included)
    base_url: str
    params: RequestParams
    load: LoadConfig
    origin: PromptOrigin | None = None  # how the prompts were made (the report says)


def arrival_times(
    rate: float,
    *,
    seed: int = 0,
    burstiness: float = 1.0,
    count: int | None = None,
    duration: float | None = None,
) -> list[float]:
    """Send offsets (s) of an open loop: the first at 0, then gamma-distributed gaps with
    mean 1/rate (exponential, i.e. Poisson arrivals, when burstiness is 1). Offsets are
    absolute so that sleeping late once does not shift every later request."""
    if count is None and (duration is None or math.isinf(rate)):
        raise ValueError("an open loop needs a request count (or a duration at a finite rate)")
    rng = random.Random(seed)
    times: list[float] = []
    t = 0.0
    while (count is None or len(times) < count) and (duration is None or t < duration):
        times.append(t)
        if not math.isinf(rate):
            t += rng.gammavariate(burstiness, 1.0 / (rate * burstiness))
    return times


class Benchmark:
    """One run. Its records are kept as they finish, so an interrupted run can still say
    what it measured: `result()` is the whole run after `run()`, and what had finished
    when read earlier (what a command keeps when it is interrupted)."""

    def __init__(
        self,
        base_url: str,
        params: RequestParams,
        prompts: Sequence[Prompt],
        load: LoadConfig,
        *,
        api_key: str | None = None,
        timeout: float = 600.0,
        on_record: OnRecord | None = None,
        origin: PromptOrigin | None = None,
    ) -> None:
        if not prompts:
            raise ValueError("no prompts")
        self.base_url, self.params, self.prompts, self.load = base_url, params, prompts, load
        self.api_key, self.timeout, self.on_record = api_key, timeout, on_record
        self.origin = origin
        self.records: list[RequestRecord] = []
        self.client: OpenAIClient | None = None
        self._wall = self._end = 0.0

    async def run(self) -> BenchResult:
        """Raises ConnectionError at once if the server is unreachable; every later failure
        is captured in its request's record."""
        client = self.client = OpenAIClient(
            self.base_url, api_key=self.api_key, timeout=self.timeout
        )
        load, params, prompts = self.load, self.params, self.prompts
        try:
            await client.check()
            if load.warmup:
                warm = LoadConfig(
                    concurrency=min(load.concurrency, load.warmup), requests=load.warmup
                )
                await _closed(client, params, prompts, warm, [], None)
            if load.rate is None:
                # A closed loop's first requests must leave together, as every later wave
                # does: one that goes first is prefilled alone, the loop stays out of step
                # and its TTFT reads high. Connecting is not the server's latency anyway.
                await client.connect(min(load.concurrency, load.requests or load.concurrency))
            self._wall, client.origin = time.time(), time.perf_counter()
            if load.rate is None:
                await _closed(client, params, prompts, load, self.records, self.on_record)
            else:
                await _open(client, params, prompts, load, self.records, self.on_record)
            self._end = time.perf_counter()
            return self.result()
        finally:
            client.close()

    def result(self) -> BenchResult:
        client = self.client
        if client is None or not self._wall:  # not started, or still warming up
            return BenchResult(
                [], 0.0, time.time(), 0, self.base_url, self.params, self.load, self.origin
            )
        duration = (self._end or time.perf_counter()) - client.origin
        records = sorted(self.records, key=lambda r: r.index)
        return BenchResult(
            records, duration, self._wall, client.pool.opened, self.base_url, self.params,
            self.load, self.origin,
        )  # fmt: skip


async def run_async(
    base_url: str,
    params: RequestParams,
    prompts: Sequence[Prompt],
    load: LoadConfig,
    *,
    api_key: str | None = None,
    timeout: float = 600.0,
    on_record: OnRecord | None = None,
) -> BenchResult:
    """Run one benchmark (see Benchmark)."""
    bench = Benchmark(
        base_url, params, prompts, load, api_key=api_key, timeout=timeout, on_record=on_record
    )
    return await bench.run()


def run(
    base_url: str,
    params: RequestParams,
    prompts: Sequence[Prompt],
    load: LoadConfig,
    *,
    api_key: str | None = None,
    timeout: float = 600.0,
    on_record: OnRecord | None = None,
) -> BenchResult:
    """`run_async` in a fresh event loop, for scripts and tests (the CLI runs a
    Benchmark under llmdeploy.client.interrupt, so that a signal stops it)."""
    return asyncio.run(
        run_async(
            base_url, params, prompts, load, api_key=api_key, timeout=timeout, on_record=on_record
        )
    )


async def _closed(
    client: OpenAIClient,
    params: RequestParams,
    prompts: Sequence[Prompt],
    load: LoadConfig,
    records: list[RequestRecord],
    on_record: OnRecord | None,
) -> None:
    counter = itertools.count()
    deadline = client.origin + load.duration if load.duration else math.inf

    async def worker() -> None:
        # Each worker sends its next request the moment its last one ends.
        for i in counter:
            if (load.requests is not None and i >= load.requests) or (
                time.perf_counter() >= deadline
            ):
                return
            rec = await client.send(prompts[i % len(prompts)], params, i)
            records.append(rec)
            if on_record is not None:
                on_record(rec)

    workers = load.concurrency if load.requests is None else min(load.concurrency, load.requests)
    await asyncio.gather(*(worker() for _ in range(workers)))


async def _open(
    client: OpenAIClient,
    params: RequestParams,
    prompts: Sequence[Prompt],
    load: LoadConfig,
    records: list[RequestRecord],
    on_record: OnRecord | None,
) -> None:
    assert load.rate is not None
    schedule = arrival_times(
        load.rate,
        seed=load.seed,
        burstiness=load.burstiness,
        count=load.requests,
        duration=load.duration,
    )
    cap = asyncio.Semaphore(load.max_concurrency) if load.max_concurrency else None

    async def one(i: int, at: float) -> None:
        if cap is None:
            rec = await client.send(prompts[i % len(prompts)], params, i, scheduled=at)
        else:
            async with cap:
                rec = await client.send(prompts[i % len(prompts)], params, i, scheduled=at)
        records.append(rec)
        if on_record is not None:
            on_record(rec)

    tasks = []
    for i, at in enumerate(schedule):
        delay = client.origin + at - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        tasks.append(asyncio.create_task(one(i, at)))
    await asyncio.gather(*tasks)
