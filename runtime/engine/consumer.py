"""One channel's worker: small collaborators, each with its own job, started and stopped
together. Every guarantee is paid per batch, not per job.

    JobReader        takes as many jobs as there are free slots (take.lua), highest
                     priority first, due delayed jobs included; blocks on the
                     channel's marker when there are none (no polling)
    Launcher         decode, rate-limit (RateLimiter), mark a batch started (start.lua)
    JobRunner        one task per running job: the handler, then its outcome
    OutcomeRecorder  results, retries, failures, acks and retention: one script call
                     for all the outcomes gathered meanwhile (finish.lua)
    Heartbeat        keeps this process's claim on its running and held jobs fresh
    Reclaimer        takes over jobs whose process died; retention on a quiet channel
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Any

from redis.exceptions import RedisError

from runtime.engine.channel import Channel
from runtime.engine.client import Client
from runtime.engine.clock import now_ms
from runtime.engine.heartbeat import Heartbeat
from runtime.engine.idle_watch import MarkerWatch
from runtime.engine.launcher import Launcher
from runtime.engine.limiter import RateLimiter
from runtime.engine.metrics import ChannelMetrics
from runtime.engine.reader import JobReader
from runtime.engine.reclaimer import Reclaimer
from runtime.engine.recorder import OutcomeRecorder
from runtime.engine.runner import JobRunner
from runtime.engine.scripts import Claim, Retention

__all__ = ["ChannelConsumer"]

logger = logging.getLogger("channelkit.worker")


class ChannelConsumer:
    def __init__(
        self,
        channel: Channel[Any, Any],
        client: Client,
        *,
        consumer: str,
        metrics: ChannelMetrics,
        resources: object = None,
        watch: MarkerWatch | None = None,
    ) -> None:
        self.channel = channel
        self.consumer = consumer
        self._redis = client.redis
        self.keys = client.keys(channel.name)
        scripts = client.scripts(channel.name)
        self.recorder = OutcomeRecorder(
            scripts,
            channel=channel.name,
            consumer=consumer,
            keep=_retention(channel),
            metrics=metrics,
            running=lambda: len(self.runner.running),
        )

        async def write_progress(claim: Claim, value_json: str) -> bool:
            return await scripts.progress(consumer, claim, value_json, now_ms())

        self.runner = JobRunner(channel, self.recorder, metrics, resources, progress=write_progress)
        self.launcher = Launcher(
            channel,
            scripts,
            consumer=consumer,
            limiter=RateLimiter(channel, scripts),
            runner=self.runner,
            recorder=self.recorder,
            metrics=metrics,
        )
        self.reader = JobReader(
            self._redis,
            scripts,
            consumer=consumer,
            launcher=self.launcher,
            runner=self.runner,
            metrics=metrics,
            events_max=channel.keep.events,
            watch=watch,
        )
        self.reclaimer = Reclaimer(
            channel,
            scripts,
            consumer=consumer,
            launcher=self.launcher,
            runner=self.runner,
            recorder=self.recorder,
            metrics=metrics,
        )
        self.heartbeat = Heartbeat(
            scripts,
            channel=channel.name,
            consumer=consumer,
            interval_s=channel.stalled.interval_ms / 3000,
            owned=self.launcher.owned,
            on_lost=self.launcher.forget,
        )

    @property
    def running(self) -> int:
        """Jobs of this channel running in this process now."""
        return len(self.runner.running)

    @property
    def problem(self) -> str | None:
        """Why this channel's worker cannot take jobs now (for readiness); None when it can."""
        return self.reader.problem

    async def start(self) -> None:
        """Start every collaborator. Redis trouble does not stop the start: the reader
        creates the consumer group once Redis takes writes again (out of memory, down)."""
        try:
            await self.reader.ensure_group()
        except (RedisError, OSError) as error:
            logger.warning(
                "%s: cannot create the consumer group yet (%s); retrying every 1 s",
                self.channel.name,
                error,
            )
        self.heartbeat.start()
        self.recorder.start()
        self.reader.start()
        self.reclaimer.start()

    async def stop(self, timeout: float) -> bool:  # noqa: ASYNC109
        """Stop taking jobs and let running ones finish for up to `timeout` seconds.

        True when all finished. Otherwise the rest are abandoned unacknowledged: another
        process takes them over once their stalled interval has passed.
        """
        await asyncio.gather(self.reader.stop(), self.reclaimer.stop())
        with contextlib.suppress(RedisError, OSError):
            await self.launcher.release_held()
        clean = await self.runner.wait(timeout)
        await self.recorder.stop()
        await self.heartbeat.stop()
        return clean

    def abandon(self) -> None:
        """Record nothing more: running jobs stay unacknowledged for other processes."""
        self.runner.abandon()
        self.recorder.abandon()


def _retention(channel: Channel[Any, Any]) -> Retention:
    keep = channel.keep
    return Retention(
        completed_count=-1 if keep.completed.count is None else keep.completed.count,
        completed_age_ms=keep.completed.age_ms or 0,
        failed_count=-1 if keep.failed.count is None else keep.failed.count,
        failed_age_ms=keep.failed.age_ms or 0,
    )
