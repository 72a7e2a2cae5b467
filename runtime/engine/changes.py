"""Which channels changed: the signal a dashboard page refreshes its counts on.

A page does not need the job events, only to know that some arrived. Following them
through `EventHub` means reading and decoding every event of every watched channel
(three a job): with a few browsers open that cost a busy process a fifth of its drain
rate. `ChangeFeed` instead looks at each watched channel's newest event id once per
interval, one `XREVRANGE ... COUNT 1` a channel in one pipeline, and tells every watcher
which of its channels moved on. Its cost is one command per watched channel per interval,
however fast jobs run and however many pages watch; a change shows within one interval.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncGenerator, Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from runtime.engine.connection import RedisClient
from runtime.engine.keys import ChannelKeys
from runtime.engine.redis_errors import redis_errors
from runtime.errors import RedisUnavailable

__all__ = ["CHANGE_INTERVAL_S", "ChangeFeed"]

logger = logging.getLogger("channelkit.changes")

CHANGE_INTERVAL_S = 1.0  # a page refreshes at most this often anyway


@dataclass(eq=False, slots=True)
class _Watcher:
    channels: frozenset[str]
    changed: set[str] = field(default_factory=set)
    wake: asyncio.Event = field(default_factory=asyncio.Event)


class ChangeFeed:
    """One sampling task per process, running while anyone watches."""

    def __init__(
        self,
        redis: RedisClient,
        keys_of: Callable[[str], ChannelKeys],
        every_s: float = CHANGE_INTERVAL_S,
    ) -> None:
        self._redis = redis
        self._keys_of = keys_of
        self._every_s = every_s
        self._watchers: set[_Watcher] = set()
        self._task: asyncio.Task[None] | None = None

    async def watch(self, channels: Iterable[str]) -> AsyncGenerator[frozenset[str], None]:
        """The names of `channels` whose job events moved on, a set each time any did
        (at most one per interval). Redis trouble is logged once and waited out: a
        watcher hears nothing meanwhile."""
        watcher = _Watcher(frozenset(channels))
        self._watchers.add(watcher)
        if self._task is None or self._task.done():
            self._task = asyncio.create_task(self._run(), name="channelkit-changes")
        try:
            while True:
                await watcher.wake.wait()
                watcher.wake.clear()
                changed, watcher.changed = frozenset(watcher.changed), set()
                yield changed
        finally:
            self._watchers.discard(watcher)  # the task ends after its next look

    async def close(self) -> None:
        self._watchers.clear()
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)

    async def _run(self) -> None:
        tips: dict[str, Any] = {}
        failing = False
        while self._watchers:
            channels = sorted(set().union(*(watcher.channels for watcher in self._watchers)))
            try:
                now = await self._tips(channels)
            except RedisUnavailable as error:
                if not failing:
                    logger.warning("change feed: cannot read event ids, waiting: %s", error)
                failing = True
            except Exception:  # a bug: said with its traceback, and the feed goes on
                logger.exception("change feed: reading event ids failed")
            else:
                if failing:
                    logger.info("change feed: reading event ids again")
                failing = False
                moved = {name for name, tip in now.items() if name in tips and tips[name] != tip}
                tips = now
                if moved:
                    self._tell(moved)
            await asyncio.sleep(self._every_s)

    async def _tips(self, channels: list[str]) -> dict[str, Any]:
        """Each channel's newest event id (None when its stream is empty)."""
        with redis_errors():
            async with self._redis.pipeline(transaction=False) as pipe:
                for name in channels:
                    pipe.xrevrange(self._keys_of(name).events, count=1)
                rows: list[Any] = await pipe.execute()
        tips = zip(channels, rows, strict=True)
        return {name: (row[0][0] if row else None) for name, row in tips}

    def _tell(self, moved: set[str]) -> None:
        for watcher in self._watchers:
            hits = watcher.channels & moved
            if hits:
                watcher.changed |= hits
                watcher.wake.set()
