"""`limiter.key`: each value of a payload field gets its own window (BullMQ Pro's groups).

Drives the consumer directly with a channel declared in code, on real Redis.
"""

from __future__ import annotations

import asyncio
import time

from runtime.engine.channel import Backoff, Channel, Keep, Limiter, Retention, Retry, Stalled
from runtime.engine.client import Client
from runtime.engine.consumer import ChannelConsumer
from runtime.engine.context import JobContext
from runtime.engine.metrics import Metrics
from runtime.engine.model import Payload
from tests.conftest import connect_redis


class Message(Payload):
    tenant: str
    n: int


async def test_each_key_has_its_own_window(redis_url: str, key_prefix: str) -> None:
    starts: list[tuple[str, float]] = []
    all_started = asyncio.Event()

    async def process(payload: Message, context: JobContext) -> None:
        starts.append((payload.tenant, time.monotonic()))
        if len(starts) == 20:
            all_started.set()

    channel: Channel[Message, None] = Channel(
        name="keyed",
        description="",
        payload_model=Message,
        result_model=None,
        process=process,
        concurrency=50,
        limiter=Limiter(max=5, duration_ms=500, key="tenant"),
        stalled=Stalled(interval_ms=30_000, max_count=1),
        retry=Retry(attempts=1, backoff=Backoff(type="fixed", delay_ms=100)),
        keep=Keep(completed=Retention(100, None), failed=Retention(100, None)),
        batch_max=100,
    )
    redis = connect_redis(redis_url)
    client = Client(redis, prefix=key_prefix)
    consumer = ChannelConsumer(channel, client, consumer="test", metrics=Metrics().channel("keyed"))
    await consumer.start()
    try:
        began = time.monotonic()
        await client.enqueue_many("keyed", [Message(tenant="a", n=n) for n in range(15)])
        await client.enqueue_many("keyed", [Message(tenant="b", n=n) for n in range(5)])
        async with asyncio.timeout(15):
            await all_started.wait()
    finally:
        await consumer.stop(5)
        await redis.aclose()

    by_tenant = {t: sorted(at for who, at in starts if who == t) for t in ("a", "b")}
    for tenant, times in by_tenant.items():
        for index, first in enumerate(times):  # every window that opens at a start
            assert sum(1 for at in times[index:] if at < first + 0.5) <= 5, (tenant, times)
    # b is not held back by a's backlog: its five start before a's sixth can (a's second
    # window)...
    assert by_tenant["b"][-1] < by_tenant["a"][5], (by_tenant, began)
    # ...while a's fifteen need three windows of its own.
    assert by_tenant["a"][-1] - by_tenant["a"][0] >= 1.0
