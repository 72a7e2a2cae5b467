"""Every channel's consumer in the serving process's event loop.

Each channel has its own consumer (its own stream, its own slots), so `concurrency`
bounds that channel alone and a saturated channel never starves another.
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import uuid
from collections.abc import Sequence
from typing import Any

from runtime.engine.cancellations import CancelListener
from runtime.engine.channel import Channel
from runtime.engine.client import Client
from runtime.engine.consumer import ChannelConsumer
from runtime.engine.idle_watch import MarkerWatch
from runtime.engine.loop_monitor import LoopMonitor
from runtime.engine.metrics import Metrics

__all__ = ["Workers", "consumer_name"]

logger = logging.getLogger("channelkit.workers")


def consumer_name() -> str:
    """Unique per process and readable in XINFO CONSUMERS: host, pid and a random tail."""
    return f"{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:6]}"


class Workers:
    def __init__(
        self,
        channels: Sequence[Channel[Any, Any]],
        client: Client,
        *,
        shutdown_timeout: float,
        metrics: Metrics,
        consumer: str | None = None,
        resources: object = None,
    ) -> None:
        """`resources` is what the app's resources factory yielded: every job's context
        carries it."""
        self.consumer = consumer or consumer_name()
        self.shutdown_timeout = shutdown_timeout
        # one blocking read for every idle channel, where the Redis allows it
        self.watch = MarkerWatch.for_redis(client.redis)
        self.consumers = [
            ChannelConsumer(
                channel,
                client,
                consumer=self.consumer,
                metrics=metrics.channel(channel.name),
                resources=resources,
                watch=self.watch,
            )
            for channel in channels
        ]
        self.monitor = LoopMonitor(self.running_job_ids)
        self._by_name = {consumer.channel.name: consumer for consumer in self.consumers}
        self.cancellations = CancelListener(client.redis, client.prefix, self.cancel)

    def cancel(self, channel: str, job_id: str) -> bool:
        """Cancel the job's handler if it runs in this process."""
        consumer = self._by_name.get(channel)
        return consumer is not None and consumer.runner.cancel(job_id)

    def running_job_ids(self) -> dict[str, list[str]]:
        """The ids of the jobs running now, by channel."""
        return {
            consumer.channel.name: consumer.runner.running_job_ids() for consumer in self.consumers
        }

    @property
    def running(self) -> int:
        """Jobs running in this process now, across channels."""
        return sum(consumer.running for consumer in self.consumers)

    def problem(self) -> str | None:
        """The first channel whose worker cannot take jobs now, and why; None when all can."""
        for consumer in self.consumers:
            if consumer.problem is not None:
                return f"{consumer.channel.name}: {consumer.problem}"
        return None

    async def start(self) -> None:
        for consumer in self.consumers:
            await consumer.start()
        self.monitor.start()
        if self.consumers:
            self.cancellations.start()
        names = ", ".join(consumer.channel.name for consumer in self.consumers)
        logger.info("workers started for %s as consumer %s", names or "no channel", self.consumer)

    def abandon(self) -> None:
        """Record nothing more: jobs still running stay unacknowledged for other processes."""
        for consumer in self.consumers:
            consumer.abandon()

    async def stop(self) -> bool:
        """Stop taking jobs; running ones get the shutdown timeout to finish (all channels
        at once). True when every job finished."""
        results = await asyncio.gather(
            *(consumer.stop(self.shutdown_timeout) for consumer in self.consumers)
        )
        await self.cancellations.stop()
        await self.monitor.stop()
        if self.watch is not None:
            await self.watch.close()
        return all(results)
