"""Reads new jobs from the channel's stream, as many as there are free slots (never
more: nothing is parked in this process that it is not running)."""

from __future__ import annotations

import logging
from typing import Any

from redis.exceptions import RedisError, ResponseError

from runtime.engine.clock import text
from runtime.engine.connection import RedisClient
from runtime.engine.keys import CONSUMER_GROUP, ChannelKeys
from runtime.engine.launcher import Launcher
from runtime.engine.loop import BackgroundLoop
from runtime.engine.metrics import ChannelMetrics
from runtime.engine.runner import JobRunner
from runtime.engine.scripts import StreamEntry

__all__ = ["StreamReader"]

logger = logging.getLogger("channelkit.worker")

READ_BLOCK_MS = 500  # how long an idle read waits; also the longest a stop waits for it
RETRY_AFTER_ERROR_S = 1.0


class StreamReader(BackgroundLoop):
    """XREADGROUP for free slots, hand the entries to the launcher; while the rate
    limit holds jobs back, wait here until a start is due (no polling).

    The consumer group is (re)created here: at start, and whenever Redis says it is gone
    (NOGROUP: Redis restarted empty, a failover to an empty replica, the stream deleted).
    What keeps the reader from working is `problem`, for readiness; None when it works.
    """

    def __init__(
        self,
        redis: RedisClient,
        keys: ChannelKeys,
        *,
        consumer: str,
        launcher: Launcher,
        runner: JobRunner,
        metrics: ChannelMetrics,
    ) -> None:
        super().__init__(f"read:{keys.channel}")
        self._redis = redis
        self._keys = keys
        self._consumer = consumer
        self._launcher = launcher
        self._runner = runner
        self._metrics = metrics
        self.problem: str | None = "starting"
        self._group_ready = False

    async def ensure_group(self) -> None:
        """Create the consumer group (and the stream) unless it exists."""
        try:
            await self._redis.xgroup_create(
                self._keys.stream, CONSUMER_GROUP, id="0", mkstream=True
            )
        except ResponseError as error:
            if "BUSYGROUP" not in str(error):
                raise
        self._group_ready = True

    async def stop(self) -> None:
        self._runner.slot_freed.set()  # wake a reader that waits for a free slot
        await super().stop()

    async def step(self) -> float:
        try:
            if not self._group_ready:
                await self.ensure_group()
            if self._launcher.held:
                await self._launcher.launch_held()
                return self._limited_wait()
            free = self._runner.free_slots
            if free <= 0:
                self._runner.slot_freed.clear()
                await self._runner.slot_freed.wait()
                return 0.0
            response: Any = await self._redis.xreadgroup(
                CONSUMER_GROUP,
                self._consumer,
                {self._keys.stream: ">"},
                count=free,
                block=READ_BLOCK_MS,
            )
            self.problem = None
            if not response:
                return 0.0
            entries = [
                StreamEntry(text(sid), bytes(fields.get(b"data", b"")))
                for sid, fields in response[0][1]
            ]
            await self._launcher.launch(entries)
            return self._limited_wait()
        except ResponseError as error:
            if "NOGROUP" not in str(error):
                return self._failed(f"Redis refused a command: {error}")
            self._group_ready = False
            logger.warning(
                "%s: the consumer group is gone (Redis restarted empty, or the stream was "
                "deleted); recreating it",
                self._keys.channel,
            )
            self.problem = "consumer group missing; recreating it"
            return 0.0
        except (RedisError, OSError) as error:
            return self._failed(f"Redis error: {error}")

    def _failed(self, problem: str) -> float:
        if problem != self.problem:  # once per kind of trouble, not every second
            logger.warning("%s: %s; retrying every 1 s", self._keys.channel, problem)
        self.problem = problem
        return RETRY_AFTER_ERROR_S

    def _limited_wait(self) -> float:
        """Jobs the rate limit held back wait in this process (claimed and heartbeated)
        until a start is due."""
        launcher = self._launcher
        if not launcher.held:
            return 0.0
        self._metrics.limited_seconds.inc(launcher.limited_ms / 1000)
        logger.debug(
            "%s: rate limited, %d job(s) wait %d ms",
            self._keys.channel,
            len(launcher.held),
            launcher.limited_ms,
        )
        return launcher.limited_ms / 1000
