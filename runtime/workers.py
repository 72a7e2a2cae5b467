"""One taskiq receiver per channel, all in the serving process's event loop.

Each channel has its own broker (its own stream) and receiver, so `concurrency` bounds
that channel alone and a saturated channel never starves another.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import time
import uuid
from collections.abc import Sequence
from typing import Any

from redis.asyncio import Redis
from taskiq.acks import AcknowledgeType
from taskiq.receiver import Receiver

from runtime.broker import ChannelBroker
from runtime.channel import Channel
from runtime.context import JobContext
from runtime.keys import CONSUMER_GROUP, ChannelKeys
from runtime.tasks import register_channel_task

__all__ = ["Workers", "consumer_name"]

logger = logging.getLogger("channelkit.workers")

# Move due delayed jobs to the stream atomically, so two processes never move one twice.
_MOVE_DUE = """
local due = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', ARGV[1], 'LIMIT', 0, ARGV[2])
for _, job in ipairs(due) do
  redis.call('XADD', KEYS[2], '*', 'data', job)
  redis.call('ZREM', KEYS[1], job)
end
local next = redis.call('ZRANGE', KEYS[1], 0, 0, 'WITHSCORES')
return {#due, next[2] or false}
"""

# Most jobs one read takes beyond those running: they are pending (owned) but not yet
# started, and a stopping process leaves them for others; so keep it small.
MAX_READ_COUNT = 16


def consumer_name() -> str:
    """Unique per process and readable in XINFO CONSUMERS: host, pid and a random tail."""
    return f"{socket.gethostname()}-{uuid.uuid4().hex[:8]}"


class Workers:
    def __init__(
        self,
        channels: Sequence[Channel[Any, Any]],
        redis_url: str,
        *,
        prefix: str,
        shutdown_timeout: float,
        consumer: str | None = None,
    ) -> None:
        self.channels = list(channels)
        self.redis_url = redis_url
        self.prefix = prefix
        self.shutdown_timeout = shutdown_timeout
        self.consumer = consumer or consumer_name()
        self.brokers: dict[str, ChannelBroker] = {}
        self._finish = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []
        self.running = 0

    def _broker(self, channel: Channel[Any, Any]) -> ChannelBroker:
        keys = ChannelKeys(self.prefix, channel.name)
        broker = ChannelBroker(
            self.redis_url,
            queue_name=keys.stream,
            consumer_group_name=CONSUMER_GROUP,
            consumer_name=self.consumer,
            consumer_id="0",
            xread_block=1000,
            xread_count=min(channel.concurrency, MAX_READ_COUNT),
            idle_timeout=channel.stalled.interval_ms,
            unacknowledged_lock_timeout=max(1.0, channel.stalled.interval_ms / 1000),
        )
        broker.is_worker_process = True
        process = channel.process

        async def tracked(payload: Any, context: JobContext) -> Any:
            self.running += 1
            try:
                return await process(payload, context)
            finally:
                self.running -= 1

        register_channel_task(
            broker, f"channelkit.{channel.name}", channel.name, channel.payload_model, tracked
        )
        return broker

    async def start(self) -> None:
        """Declare every consumer group, then start receiving."""
        for channel in self.channels:
            broker = self._broker(channel)
            await broker.startup()
            self.brokers[channel.name] = broker
            receiver = Receiver(
                broker,
                max_async_tasks=channel.concurrency,
                max_prefetch=0,
                run_startup=False,
                ack_type=AcknowledgeType.WHEN_EXECUTED,
                wait_tasks_timeout=self.shutdown_timeout,
            )
            self._tasks.append(
                asyncio.create_task(receiver.listen(self._finish), name=f"receiver:{channel.name}")
            )
            self._tasks.append(
                asyncio.create_task(self._move_delayed(channel), name=f"delayed:{channel.name}")
            )
        logger.info(
            "workers started for %s", ", ".join(c.name for c in self.channels) or "no channel"
        )

    async def _move_delayed(self, channel: Channel[Any, Any]) -> None:
        keys = ChannelKeys(self.prefix, channel.name)
        redis: Redis = Redis.from_url(self.redis_url)
        move = redis.register_script(_MOVE_DUE)
        try:
            while not self._finish.is_set():
                now_ms = time.time() * 1000
                moved, next_due = await move(keys=[keys.delayed, keys.stream], args=[now_ms, 500])
                if int(moved) == 500:
                    continue
                wait = (
                    1.0
                    if next_due is None
                    else max(0.0, (float(next_due) - time.time() * 1000) / 1000)
                )
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._finish.wait(), timeout=min(wait, 1.0))
        finally:
            await redis.aclose()

    async def stop(self) -> bool:
        """Stop taking jobs; let running ones finish within the shutdown timeout.

        Returns True when every job finished. Otherwise the rest are abandoned: they stay
        unacknowledged, and another process takes them over as stalled jobs.
        """
        self._finish.set()
        if self._tasks:
            # Each receiver waits up to shutdown_timeout for its running jobs.
            await asyncio.wait(self._tasks, timeout=self.shutdown_timeout + 1)
        clean = self.running == 0
        if not clean:
            for broker in self.brokers.values():
                broker.abandon()
        for task in self._tasks:
            task.cancel()
        results = await asyncio.gather(*self._tasks, return_exceptions=True)
        for result in results:
            if isinstance(result, Exception):
                logger.error("a receiver stopped with an error", exc_info=result)
        for broker in self.brokers.values():
            await broker.shutdown()
        return clean
