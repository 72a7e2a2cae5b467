"""Delivery timing: the speed figures the test suite no longer asserts.

    .venv/bin/python bench/delivery_timing.py [--rounds 3] [--quick]

The tests check order and correctness (a delayed job never starts before it is due, no
window holds more than `max` starts); how fast things happen depends on the machine's
load, so it is measured here. Each case drives `ChannelConsumer`s of channels declared in
code, in this process, on the bench Redis (BENCH_REDIS_URL) under a prefix of its own,
deleted after. Handlers record `time.monotonic()` / `time.time()` when they start.

- delayed lateness: jobs enqueued with `delay_ms=300` every 20 ms into an idle worker;
  lateness = handler start - (time just before the enqueue call + delay). Baseline: the
  documented bound (docs/delivery.md: "at most about 50 ms late, plus a Redis round
  trip"); goal: the worst job under 100 ms.
- limiter rate: `limiter {max: 20, duration: 1s}`, concurrency 50, 120 jobs at once;
  starts per second after the first window's free burst, against the 20/s allowed. Goal:
  at least 90 % of the rate is used.
- keyed limiter: `limiter {max: 5, duration: 500ms, key: tenant}`, 15 jobs of tenant a
  then 5 of tenant b; when b's last job starts, from the enqueue. Baseline: b's first
  window (0.5 s); goal: b is not held behind a's backlog, all five start within it.
- fast behind slow: 12 jobs of 0.5 s on a channel of concurrency 3 (2 s of backlog),
  then 5 jobs on another channel of the same process; time until all five ran. Baseline:
  the slow backlog (2 s); goal: under 1.5 s.
- drain: 10,000 no-op jobs (2,000 with --quick) enqueued in batches of 1,000 into a
  channel of concurrency 200 with `keep.completed.count: 100`; jobs per second until the
  waiting set, the stream (jobs taken, not yet finished) and the delayed set are empty.
  Goal: 10,000 in 45 s (>= 222 jobs/s).
"""

from __future__ import annotations

import asyncio
import statistics
import time
from collections.abc import Awaitable, Callable
from typing import Any

import benchlib
from benchlib import Row, Spread

from runtime.engine.channel import Backoff, Channel, Keep, Limiter, Retention, Retry, Stalled
from runtime.engine.client import Client
from runtime.engine.consumer import ChannelConsumer
from runtime.engine.context import JobContext
from runtime.engine.metrics import Metrics
from runtime.engine.model import Payload


class Job(Payload):
    n: int
    tenant: str = ""
    seconds: float = 0.0


Handler = Callable[[Job, JobContext[Any]], Awaitable[None]]


def channel(
    name: str,
    process: Handler,
    *,
    concurrency: int = 50,
    limiter: Limiter | None = None,
    keep_completed: int = 1000,
) -> Channel[Job, None]:
    return Channel(
        name=name,
        description="",
        payload_model=Job,
        result_model=None,
        process=process,
        concurrency=concurrency,
        limiter=limiter,
        stalled=Stalled(interval_ms=30_000, max_count=1),
        retry=Retry(attempts=1, backoff=Backoff(type="fixed", delay_ms=100)),
        keep=Keep(completed=Retention(keep_completed, None), failed=Retention(100, None)),
        batch_max=1000,
    )


async def until(done: Callable[[], bool], within: float) -> None:
    """Poll `done` every 5 ms; TimeoutError after `within` seconds."""
    async with asyncio.timeout(within):
        while True:
            if done():
                return
            await asyncio.sleep(0.005)


async def consuming(
    channels: list[Channel[Job, None]], body: Callable[[Client], Awaitable[float]]
) -> float:
    """Start one consumer per channel under a fresh prefix, run `body`, stop, clean up."""
    prefix = benchlib.unique_prefix("timing")
    client = Client.from_url(benchlib.redis_url(), prefix=prefix)
    metrics = Metrics()
    consumers = [
        ChannelConsumer(spec, client, consumer="bench", metrics=metrics.channel(spec.name))
        for spec in channels
    ]
    try:
        for consumer in consumers:
            await consumer.start()
        return await body(client)
    finally:
        for consumer in consumers:
            await consumer.stop(10)
        await client.close()
        benchlib.delete_prefix(prefix)


async def delayed_lateness(count: int) -> list[float]:
    """Seconds late of each delayed job."""
    delay_ms = 300
    started: dict[int, float] = {}
    due: dict[int, float] = {}

    async def process(payload: Job, context: JobContext[Any]) -> None:
        started[payload.n] = time.time()

    async def body(client: Client) -> float:
        await asyncio.sleep(0.3)  # the reader has made its group and sleeps on the marker
        for n in range(count):
            due[n] = time.time() + delay_ms / 1000
            await client.enqueue("late", Job(n=n), delay_ms=delay_ms)
            await asyncio.sleep(0.02)
        await until(lambda: len(started) >= count, 60)
        return 0.0

    await consuming([channel("late", process)], body)
    return [started[n] - due[n] for n in range(count)]


async def limiter_use() -> float:
    """Starts per second after the first window, as a share of the 20/s allowed."""
    total, limit = 120, 20
    starts: list[float] = []

    async def process(payload: Job, context: JobContext[Any]) -> None:
        starts.append(time.monotonic())

    async def body(client: Client) -> float:
        await client.enqueue_many("limited", [Job(n=n) for n in range(total)])
        await until(lambda: len(starts) >= total, 60)
        span = max(starts) - min(starts)
        return (total - limit) / span / limit

    spec = channel("limited", process, limiter=Limiter(max=limit, duration_ms=1000))
    return await consuming([spec], body)


async def keyed_wait() -> float:
    """Seconds from the enqueue until tenant b's fifth job started."""
    starts: list[tuple[str, float]] = []

    async def process(payload: Job, context: JobContext[Any]) -> None:
        starts.append((payload.tenant, time.monotonic()))

    async def body(client: Client) -> float:
        began = time.monotonic()
        await client.enqueue_many("keyed", [Job(n=n, tenant="a") for n in range(15)])
        await client.enqueue_many("keyed", [Job(n=n, tenant="b") for n in range(5)])
        await until(lambda: sum(1 for tenant, _ in starts if tenant == "b") >= 5, 60)
        return max(at for tenant, at in starts if tenant == "b") - began

    limiter = Limiter(max=5, duration_ms=500, key="tenant")
    return await consuming([channel("keyed", process, limiter=limiter)], body)


async def fast_behind_slow() -> float:
    """Seconds until 5 fast jobs ran while a 2 s slow backlog runs in the same process."""
    fast_done: list[float] = []
    slow_started = asyncio.Event()

    async def slow(payload: Job, context: JobContext[Any]) -> None:
        slow_started.set()
        await asyncio.sleep(payload.seconds)

    async def fast(payload: Job, context: JobContext[Any]) -> None:
        fast_done.append(time.monotonic())

    async def body(client: Client) -> float:
        await client.enqueue_many("slow", [Job(n=n, seconds=0.5) for n in range(12)])
        async with asyncio.timeout(30):
            await slow_started.wait()
        sent = time.monotonic()
        for n in range(5):
            await client.enqueue("fast", Job(n=n))
        await until(lambda: len(fast_done) >= 5, 30)
        return max(fast_done) - sent

    channels = [channel("slow", slow, concurrency=3), channel("fast", fast, concurrency=10)]
    return await consuming(channels, body)


async def drain(total: int) -> float:
    """Jobs per second: `total` no-op jobs enqueued in batches until the channel is empty."""

    async def process(payload: Job, context: JobContext[Any]) -> None:
        return None

    async def body(client: Client) -> float:
        keys = client.keys("bulk")
        began = time.monotonic()
        for start in range(0, total, 1000):
            batch = [Job(n=n) for n in range(start, min(total, start + 1000))]
            await client.enqueue_many("bulk", batch)
        async with asyncio.timeout(300):
            while True:
                async with client.redis.pipeline(transaction=False) as pipe:
                    pipe.zcard(keys.waiting)
                    pipe.xlen(keys.stream)  # taken: acked and deleted once finished
                    pipe.zcard(keys.delayed)
                    waiting, taken, delayed = await pipe.execute()
                if not waiting and not taken and not delayed:
                    break
                await asyncio.sleep(0.02)
        return total / (time.monotonic() - began)

    spec = channel("bulk", process, concurrency=200, keep_completed=100)
    return await consuming([spec], body)


def run(quick: bool, rounds: int | None = None) -> list[Row]:
    rounds = rounds or (1 if quick else 3)
    jobs = 2_000 if quick else 10_000
    late_median: list[float] = []
    late_max: list[float] = []
    use: list[float] = []
    keyed: list[float] = []
    fast: list[float] = []
    rate: list[float] = []
    for _ in range(rounds):
        busy = benchlib.wait_quiet()
        print(f"   round (machine {busy:.0%} busy)", flush=True)
        lateness = asyncio.run(delayed_lateness(20 if quick else 50))
        late_median.append(statistics.median(lateness) * 1000)
        late_max.append(max(lateness) * 1000)
        use.append(asyncio.run(limiter_use()))
        keyed.append(asyncio.run(keyed_wait()))
        fast.append(asyncio.run(fast_behind_slow()))
        rate.append(asyncio.run(drain(jobs)))
    worst, used = Spread.of(late_max), Spread.of(use)
    keyed_s, fast_s, rate_s = Spread.of(keyed), Spread.of(fast), Spread.of(rate)
    bench = "delivery timing"
    return [
        Row(
            bench,
            "delayed job lateness, worst (ms)",
            worst.text(1),
            "50 ms (documented bound)",
            worst.median / 50,
            "< 100 ms",
            worst.high < 100,
            f"median lateness {Spread.of(late_median).text(1)} ms",
        ),
        Row(
            bench,
            "limiter: share of 20/s used after the first window",
            f"{used.median:.0%} ({used.low:.0%}-{used.high:.0%})",
            "20/s allowed",
            used.median,
            ">= 0.90x",
            used.low >= 0.9,
        ),
        Row(
            bench,
            "keyed limiter: tenant b's 5 jobs started behind a's 15 (s)",
            keyed_s.text(3),
            "0.5 s (b's first window)",
            keyed_s.median / 0.5,
            "< 1.00x",
            keyed_s.high < 0.5,
        ),
        Row(
            bench,
            "5 fast jobs behind a 2 s slow backlog (s)",
            fast_s.text(3),
            "2 s (the slow backlog)",
            fast_s.median / 2.0,
            "< 1.5 s",
            fast_s.high < 1.5,
        ),
        Row(
            bench,
            f"drain {jobs:,} no-op jobs (jobs/s, concurrency 200, one process)",
            rate_s.text(0),
            "222 jobs/s (10,000 in 45 s)",
            rate_s.median / (10_000 / 45),
            ">= 1.00x",
            rate_s.low >= 10_000 / 45,
        ),
    ]


def main() -> None:
    args = benchlib.arguments(__doc__).parse_args()
    benchlib.report(run(args.quick, args.rounds), args.json)


if __name__ == "__main__":
    main()
