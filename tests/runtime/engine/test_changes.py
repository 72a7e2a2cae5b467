"""The change feed against a real Redis: a watcher hears which of its channels' jobs
changed, once per interval however many events came, and nothing about channels it
does not watch; the sampling task runs only while someone watches."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator

from runtime.engine.changes import ChangeFeed
from runtime.engine.client import Client
from tests.runtime.engine.support import Message, eventually

INTERVAL_S = 0.1


async def _next(changes: AsyncGenerator[frozenset[str], None]) -> frozenset[str]:
    return await asyncio.wait_for(anext(changes), 10)


async def test_a_watcher_hears_which_of_its_channels_changed(client: Client) -> None:
    feed = ChangeFeed(client.redis, client.keys, every_s=INTERVAL_S)
    both = feed.watch(["a", "b"])
    only_b = feed.watch(["b"])
    heard_b = asyncio.ensure_future(_next(only_b))
    first = asyncio.ensure_future(_next(both))
    await asyncio.sleep(3 * INTERVAL_S)  # both are watching: the feed knows the tips
    try:
        for n in range(200):  # 200 jobs, 200 events, in well under an interval or two
            await client.enqueue("a", Message(n=n))
        assert await first == {"a"}
        assert not heard_b.done()  # b did not change

        await client.enqueue("b", Message(n=0))
        assert await heard_b == {"b"}
        assert "b" in await _next(both)  # with "a" when its jobs spanned two looks
    finally:
        heard_b.cancel()
        await asyncio.gather(heard_b, return_exceptions=True)
        await both.aclose()
        await only_b.aclose()
        await feed.close()


async def test_many_events_make_one_change_per_interval(client: Client) -> None:
    feed = ChangeFeed(client.redis, client.keys, every_s=INTERVAL_S)
    changes = feed.watch(["a"])
    heard: list[frozenset[str]] = []

    async def listen() -> None:
        async for changed in changes:
            heard.append(changed)

    listening = asyncio.ensure_future(listen())
    await asyncio.sleep(3 * INTERVAL_S)
    loop = asyncio.get_running_loop()
    started = loop.time()
    for n in range(50):
        await client.enqueue("a", Message(n=n))
        await asyncio.sleep(0.01)
    took = loop.time() - started
    await asyncio.sleep(3 * INTERVAL_S)
    listening.cancel()
    await asyncio.gather(listening, return_exceptions=True)
    await changes.aclose()
    await feed.close()
    assert heard
    assert all(changed == {"a"} for changed in heard)
    assert len(heard) <= took / INTERVAL_S + 2  # one a look, not one an event


async def test_the_feed_samples_only_while_someone_watches(client: Client) -> None:
    feed = ChangeFeed(client.redis, client.keys, every_s=INTERVAL_S)
    changes = feed.watch(["a"])
    waiting = asyncio.ensure_future(_next(changes))
    await asyncio.sleep(INTERVAL_S)
    task = feed._task
    assert task is not None
    assert not task.done()
    waiting.cancel()
    await asyncio.gather(waiting, return_exceptions=True)
    await changes.aclose()
    await eventually(lambda: _ended(task), what="the sampling task ended")

    again = feed.watch(["a"])  # a new watcher starts it again
    hearing = asyncio.ensure_future(_next(again))
    await asyncio.sleep(3 * INTERVAL_S)
    await client.enqueue("a", Message(n=1))
    assert await hearing == {"a"}
    await again.aclose()
    await feed.close()


async def _ended(task: asyncio.Task[None]) -> bool:
    return task.done()
