"""One blocking read for every idle channel of a process.

An idle JobReader waits for its channel's marker (set by a new job, a resume, an
earlier delayed job). Blocking on each marker separately holds one Redis connection per
idle channel and wakes each channel on its own timer: a process with 500 quiet channels
would hold 500 connections. `MarkerWatch` blocks one connection on BZPOPMIN over the
markers of every idle channel at once (Redis returns the first marker that is set) and
wakes the reader of that channel. A reader that goes idle while that call blocks
interrupts it (CLIENT UNBLOCK from the shared pool) so that its marker is watched at
once; should the interrupt miss (the call not yet in Redis), the marker waits at most
MAX_BLOCK_S, and it is never lost: it stays in Redis until popped.

Not on a Redis Cluster: a command there may name keys of one slot only, and every
channel has a slot of its own; there each reader blocks on its own marker.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from dataclasses import dataclass, field
from typing import Any

from redis.asyncio import Redis
from redis.exceptions import RedisError

from runtime.engine.connection import RedisClient, dedicated_client

__all__ = ["CONNECTION_NAME", "MAX_BLOCK_S", "MarkerWatch", "Wakeup"]

logger = logging.getLogger("channelkit.worker")

CONNECTION_NAME = "channelkit-marker-watch"  # in CLIENT LIST
MAX_BLOCK_S = 1.0  # below any socket timeout; bounds a missed interrupt
ERROR_PAUSE_S = 0.5


@dataclass(frozen=True, slots=True)
class Wakeup:
    """A marker popped for a waiting reader: its member ('0' jobs wait, 'd' a delayed job)
    and score (0, or the delayed job's due ms)."""

    member: bytes
    score: float


@dataclass(eq=False)
class _Waiter:
    marker: str
    deadline: float  # loop time
    found: asyncio.Future[Wakeup | None] = field(
        default_factory=lambda: asyncio.get_running_loop().create_future()
    )

    def settle(self, result: Wakeup | None) -> None:
        if not self.found.done():
            self.found.set_result(result)


class MarkerWatch:
    """Waits for the markers of many channels on one connection (see the module)."""

    @classmethod
    def for_redis(cls, redis: RedisClient) -> MarkerWatch | None:
        """A watch on `redis`, or None where one read cannot span channels (see
        connection.dedicated_client): each reader then blocks on its own marker."""
        blocking = dedicated_client(redis, CONNECTION_NAME)
        return None if blocking is None else cls(redis, blocking)

    def __init__(self, control: RedisClient, blocking: Redis) -> None:
        self._control = control
        self._blocking = blocking
        self._waiters: dict[str, set[_Waiter]] = {}
        self._changed = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._blocked_on: frozenset[str] = frozenset()
        self._blocked_until = 0.0
        self._client_id: int | None = None
        self._closing = False

    async def wait(self, marker: str, timeout_s: float) -> Wakeup | None:
        """The marker's member once it is set (popped: this reader consumed it), or None
        after `timeout_s` (or a Redis error: the reader's next take tells it)."""
        loop = asyncio.get_running_loop()
        waiter = _Waiter(marker, loop.time() + timeout_s)
        self._waiters.setdefault(marker, set()).add(waiter)
        if self._task is None or self._task.done():
            self._task = asyncio.create_task(self._run(), name="channelkit-marker-watch")
        self._changed.set()
        if self._client_id is not None and (
            marker not in self._blocked_on or waiter.deadline < self._blocked_until
        ):
            await self._interrupt()
        try:
            return await waiter.found
        finally:
            found = self._waiters.get(marker)
            if found is not None:
                found.discard(waiter)
                if not found:
                    del self._waiters[marker]

    async def _interrupt(self) -> None:
        client_id = self._client_id
        if client_id is None:
            return
        with contextlib.suppress(RedisError, OSError):
            await self._control.client_unblock(client_id)

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        while not self._closing:
            now = loop.time()
            for waiters in list(self._waiters.values()):
                for waiter in list(waiters):
                    if waiter.deadline <= now:
                        waiter.settle(None)
            live = [
                waiter
                for waiters in self._waiters.values()
                for waiter in waiters
                if not waiter.found.done()
            ]
            if not live:
                self._changed.clear()
                await self._changed.wait()
                continue
            markers = sorted({waiter.marker for waiter in live})
            timeout = min(MAX_BLOCK_S, max(0.001, min(w.deadline for w in live) - now))
            try:
                self._client_id = int(await self._blocking.client_id())
                self._blocked_on, self._blocked_until = frozenset(markers), now + timeout
                popped: Any = await self._blocking.bzpopmin(markers, timeout)
            except (RedisError, OSError) as error:
                if self._closing:
                    return  # redis-py reports the cancelled read as a connection error
                logger.debug("marker watch: %s", error)
                for waiter in live:
                    waiter.settle(None)
                await asyncio.sleep(ERROR_PAUSE_S)
                continue
            finally:
                self._blocked_on, self._client_id = frozenset(), None
            if popped is not None:
                key = popped[0].decode() if isinstance(popped[0], bytes) else str(popped[0])
                wakeup = Wakeup(bytes(popped[1]), float(popped[2]))
                for waiter in list(self._waiters.get(key, ())):
                    waiter.settle(wakeup)

    async def close(self) -> None:
        self._closing = True
        if self._task is not None:
            self._task.cancel()
            # the blocked read ends now, whatever redis-py makes of the cancellation
            await self._blocking.connection_pool.disconnect(inuse_connections=True)
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        for waiters in self._waiters.values():
            for waiter in waiters:
                waiter.settle(None)
        await self._blocking.aclose()
