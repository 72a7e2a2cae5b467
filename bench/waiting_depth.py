"""Does a deep backlog slow enqueue and drain? Priorities keep waiting jobs in one sorted
set per channel, so each enqueue and take should cost O(log n) in the jobs waiting.

    .venv/bin/python bench/waiting_depth.py [--quick] [--rounds 1]

For each depth (10,000 and 1,000,000 jobs waiting at priority 9; 10,000 and 100,000 with
--quick), in this process on the bench Redis (BENCH_REDIS_URL) under a prefix of its own,
deleted after:

- enqueue: 10,000 single `Client.enqueue` calls at priority 1, 100 in flight at a time
  (the coalescer batches them as under HTTP load); jobs per second.
- drain: a `ChannelConsumer` (concurrency 200, no-op handler) starts; jobs per second
  until those 10,000 priority-1 jobs completed (they overtake the whole backlog).

Baseline: the same figure at the shallow depth, in the same run; goal: the deep figure
is at least 0.8x of it (a cost linear in the backlog would make it ~0.01x).
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

import benchlib
from benchlib import Row, Spread

from runtime.engine.channel import Backoff, Channel, Keep, Retention, Retry, Stalled
from runtime.engine.client import Client, JobRequest
from runtime.engine.consumer import ChannelConsumer
from runtime.engine.context import JobContext
from runtime.engine.metrics import Metrics
from runtime.engine.model import Payload

MEASURED = 10_000
FILL_BATCH = 1_000


class Job(Payload):
    n: int


async def noop(payload: Job, context: JobContext[Any]) -> None:
    return None


SPEC: Channel[Job, None] = Channel(
    name="deep",
    description="",
    payload_model=Job,
    result_model=None,
    process=noop,
    concurrency=200,
    limiter=None,
    stalled=Stalled(interval_ms=30_000, max_count=1),
    retry=Retry(attempts=1, backoff=Backoff(type="fixed", delay_ms=100)),
    keep=Keep(completed=Retention(MEASURED * 2, None), failed=Retention(100, None)),
    batch_max=FILL_BATCH,
)


async def measure(depth: int) -> tuple[float, float]:
    """(enqueue jobs/s, drain jobs/s) with `depth` jobs waiting behind."""
    prefix = benchlib.unique_prefix("depth")
    client = Client.from_url(benchlib.redis_url(), prefix=prefix)
    try:
        for start in range(0, depth, FILL_BATCH):
            count = min(FILL_BATCH, depth - start)
            items = [JobRequest(Job(n=start + n), priority=9) for n in range(count)]
            await client.enqueue_many(SPEC.name, items)
        began = time.monotonic()
        for start in range(0, MEASURED, 100):
            await asyncio.gather(
                *(
                    client.enqueue(SPEC.name, Job(n=-n), priority=1)
                    for n in range(start, start + 100)
                )
            )
        enqueue_rate = MEASURED / (time.monotonic() - began)

        consumer = ChannelConsumer(
            SPEC, client, consumer="bench", metrics=Metrics().channel(SPEC.name)
        )
        completed = client.keys(SPEC.name).completed
        began = time.monotonic()
        await consumer.start()
        try:
            async with asyncio.timeout(600):
                while True:
                    if await client.redis.zcard(completed) >= MEASURED:
                        break
                    await asyncio.sleep(0.01)
            drain_rate = MEASURED / (time.monotonic() - began)
        finally:
            await consumer.stop(10)
        return enqueue_rate, drain_rate
    finally:
        await client.close()
        benchlib.delete_prefix(prefix)


def run(quick: bool, rounds: int | None = None) -> list[Row]:
    rounds = rounds or 1
    shallow, deep = (10_000, 100_000) if quick else (10_000, 1_000_000)
    results: dict[int, tuple[list[float], list[float]]] = {shallow: ([], []), deep: ([], [])}
    for _ in range(rounds):
        for depth in (shallow, deep):
            busy = benchlib.wait_quiet()
            print(f"   depth {depth:,} (machine {busy:.0%} busy)", flush=True)
            enqueue_rate, drain_rate = asyncio.run(measure(depth))
            results[depth][0].append(enqueue_rate)
            results[depth][1].append(drain_rate)
    rows = []
    for index, what in enumerate(("enqueue", "drain")):
        near, far = Spread.of(results[shallow][index]), Spread.of(results[deep][index])
        ratio = far.median / near.median
        rows.append(
            Row(
                "waiting depth",
                f"{what} {MEASURED:,} priority-1 jobs with {deep:,} waiting (jobs/s)",
                far.text(0),
                f"{near.median:,.0f} jobs/s with {shallow:,} waiting",
                ratio,
                ">= 0.80x",
                ratio >= 0.8,
            )
        )
    return rows


def main() -> None:
    args = benchlib.arguments(__doc__).parse_args()
    benchlib.report(run(args.quick, args.rounds), args.json)


if __name__ == "__main__":
    main()
