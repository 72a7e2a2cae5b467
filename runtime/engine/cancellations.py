"""Tells running handlers to stop: cancel.lua publishes "<channel>\\n<job id>" on the
prefix's cancel channel, and each process's listener cancels the job if it runs it.

One subscription per process, whatever its channel count. On a Redis Cluster it is made
on one node (a PUBLISH reaches every node of the cluster; redis-py's asyncio cluster
client has no Pub/Sub). A message missed while the connection was down is not lost for
good: the job keeps its `cancel` flag, so start.lua
does not start it again (after a take-over or a retry) and finish.lua ends a retry of
it as cancelled.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import logging
from collections.abc import Callable

from redis.asyncio import Redis
from redis.asyncio.cluster import RedisCluster
from redis.exceptions import RedisError

from runtime.engine.connection import RedisClient
from runtime.engine.keys import cancel_channel

__all__ = ["CancelListener"]

logger = logging.getLogger("channelkit.worker")

RETRY_AFTER_ERROR_S = 1.0


class CancelListener:
    """Calls `cancel(channel, job_id)` for every cancellation published under `prefix`."""

    def __init__(self, redis: RedisClient, prefix: str, cancel: Callable[[str, str], bool]) -> None:
        self._redis = redis
        self._channel = cancel_channel(prefix)
        self._cancel = cancel
        self._task: asyncio.Task[None] | None = None
        self.subscribed = asyncio.Event()

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="cancel-listener")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    async def _run(self) -> None:
        failing = False
        while True:
            try:
                subscriber = await _subscriber(self._redis)
                pubsub = subscriber.pubsub(ignore_subscribe_messages=True)
            except (RedisError, OSError) as error:
                await self._failing(error, failing)
                failing = True
                continue
            except Exception:  # a bug: say so, with its traceback, and keep trying
                logger.exception("cannot subscribe to job cancellations")
                await asyncio.sleep(RETRY_AFTER_ERROR_S)
                continue
            try:
                await pubsub.subscribe(self._channel)
                self.subscribed.set()
                if failing:
                    logger.info("listening for job cancellations again")
                    failing = False
                async for message in pubsub.listen():
                    if message["type"] == "message":
                        self._handle(message["data"])
            except (RedisError, OSError) as error:
                await self._failing(error, failing)
                failing = True
            finally:
                with contextlib.suppress(RedisError, OSError):
                    await pubsub.aclose()  # type: ignore[no-untyped-call]
                if subscriber is not self._redis:
                    with contextlib.suppress(RedisError, OSError):
                        await subscriber.aclose()

    async def _failing(self, error: Exception, already: bool) -> None:
        self.subscribed.clear()
        if not already:
            logger.warning(
                "job cancellations not received (%s); running jobs cancelled meanwhile "
                "stop at their next start; retrying every 1 s",
                error,
            )
        await asyncio.sleep(RETRY_AFTER_ERROR_S)

    def _handle(self, data: bytes | str) -> None:
        raw = data.decode(errors="replace") if isinstance(data, bytes) else data
        channel, _, job_id = raw.partition("\n")
        if job_id and self._cancel(channel, job_id):
            logger.info(
                "%s: cancelling job %s on request",
                channel,
                job_id,
                extra={"channel": channel, "job_id": job_id},
            )


async def _subscriber(redis: RedisClient) -> Redis:
    """The client to subscribe with: `redis` itself, or on a cluster a client of one node."""
    if not isinstance(redis, RedisCluster):
        return redis
    await redis.initialize()
    node = redis.get_random_node()
    # the node's connection settings (credentials, TLS, timeouts) that a Redis client takes
    accepted = inspect.signature(Redis.__init__).parameters
    options = {name: value for name, value in node.connection_kwargs.items() if name in accepted}
    return Redis(**{**options, "host": node.host, "port": node.port})
