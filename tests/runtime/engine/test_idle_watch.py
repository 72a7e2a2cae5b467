"""The shared marker watch against a real Redis: many idle channels wait on one blocking
connection, the right reader wakes, a reader that goes idle during a blocked call is
watched at once (the call is interrupted), and a reader on it backs off while quiet and
still stops at once."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator

import pytest
from redis.asyncio import Redis

from runtime.engine import idle_watch
from runtime.engine import reader as reader_module
from runtime.engine.channel import Channel
from runtime.engine.client import Client
from runtime.engine.consumer import ChannelConsumer
from runtime.engine.idle_watch import CONNECTION_NAME, MarkerWatch, Wakeup
from runtime.engine.keys import ChannelKeys
from runtime.engine.metrics import Metrics
from tests.runtime.engine.support import Message, eventually, make_channel


@pytest.fixture
async def watch(redis: Redis) -> AsyncIterator[MarkerWatch]:
    found = MarkerWatch.for_redis(redis)
    if found is None:
        pytest.skip("the shared watch needs one Redis through a plain pool (not a cluster)")
    yield found
    await found.close()


async def test_many_channels_wait_on_one_connection_and_the_right_one_wakes(
    redis: Redis, key_prefix: str, watch: MarkerWatch
) -> None:
    markers = [ChannelKeys(key_prefix, f"c{n}").marker for n in range(50)]
    waits = {marker: asyncio.ensure_future(watch.wait(marker, 30)) for marker in markers}
    await asyncio.sleep(0.3)
    ours = [c for c in await redis.client_list() if c.get("name") == CONNECTION_NAME]
    assert len(ours) == 1  # one connection for 50 idle channels
    assert ours[0]["cmd"] == "bzpopmin"

    await redis.zadd(markers[17], {"0": 0})
    assert await asyncio.wait_for(waits[markers[17]], 10) == Wakeup(b"0", 0.0)
    assert not any(waits[m].done() for m in markers if m != markers[17])
    assert await redis.zcard(markers[17]) == 0  # popped: consumed by that reader
    for wait in waits.values():
        wait.cancel()


async def test_a_reader_that_goes_idle_during_a_blocked_call_is_watched_at_once(
    redis: Redis, key_prefix: str, watch: MarkerWatch, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Blocked calls last up to 60 s here: only the interrupt can make the second wait
    # see its marker within the 10 s this test allows.
    monkeypatch.setattr(idle_watch, "MAX_BLOCK_S", 60.0)
    first = ChannelKeys(key_prefix, "first").marker
    second = ChannelKeys(key_prefix, "second").marker
    waiting = asyncio.ensure_future(watch.wait(first, 60))
    await asyncio.sleep(0.3)  # the watch blocks on `first` alone now
    await redis.zadd(second, {"0": 0})
    assert await asyncio.wait_for(watch.wait(second, 60), 10) == Wakeup(b"0", 0.0)
    assert not waiting.done()
    waiting.cancel()


async def test_a_wait_ends_empty_at_its_timeout(key_prefix: str, watch: MarkerWatch) -> None:
    assert await watch.wait(ChannelKeys(key_prefix, "quiet").marker, 0.2) is None


async def test_an_idle_reader_on_the_watch_wakes_for_a_job_and_stops_at_once(
    redis: Redis, key_prefix: str, watch: MarkerWatch, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(reader_module, "IDLE_WAKE_MAX_S", 600.0)
    done: list[int] = []

    async def record(payload: Message, context: object) -> None:
        done.append(payload.n)

    channel: Channel[Message, None] = make_channel(record)
    client = Client(redis, prefix=key_prefix)
    consumer = ChannelConsumer(
        channel, client, consumer="w", metrics=Metrics().channel(channel.name), watch=watch
    )
    await consumer.start()
    try:
        await asyncio.sleep(2.0)  # idle: its wake backs off past the first 0.5 s
        await client.enqueue(channel.name, Message(n=7))
        await eventually(lambda: _has(done, 7), what="the idle reader took the job")
    finally:
        began = time.monotonic()
        await consumer.stop(5)
        # asleep for up to 600 s on the watch, yet it stops now (not a speed figure:
        # the bound is 100x what a stop takes)
        assert time.monotonic() - began < 30


async def _has(found: list[int], value: int) -> bool:
    return value in found
