"""taskiq-redis's stream broker, adjusted for a channel's guarantees.

- Acknowledging also deletes the entry, so a stream holds only jobs not yet done and
  Redis memory stays flat under endless traffic.
- After a shutdown gave up waiting (`abandon()`), nothing is acknowledged any more: a job
  that did not run to completion stays pending for another process to take over.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from redis.asyncio import Redis
from taskiq_redis import RedisStreamBroker

__all__ = ["ChannelBroker"]


class ChannelBroker(RedisStreamBroker):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._abandoned = False

    def abandon(self) -> None:
        """Stop acknowledging: jobs still running are left to other processes."""
        self._abandoned = True

    def _ack_generator(self, id: str, queue_name: str) -> Callable[[], Awaitable[None]]:
        async def ack() -> None:
            if self._abandoned:
                return
            async with Redis(connection_pool=self.connection_pool) as redis:
                pipe = redis.pipeline(transaction=True)
                pipe.xack(queue_name, self.consumer_group_name, id)
                pipe.xdel(queue_name, id)
                await pipe.execute()

        return ack
