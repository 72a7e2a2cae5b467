"""Reads new jobs from the channel's stream, as many as there are free slots (never
more: nothing is parked in this process that it is not running)."""

from __future__ import annotations

import logging
from typing import Any

from redis.asyncio import Redis
from redis.exceptions import RedisError

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
    limit holds jobs back, wait here until a start is due (no polling)."""

    def __init__(
        self,
        redis: Redis,
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

    async def stop(self) -> None:
        self._runner.slot_freed.set()  # wake a reader that waits for a free slot
        await super().stop()

    async def step(self) -> float:
        try:
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
            if not response:
                return 0.0
            entries = [
                StreamEntry(_text(sid), bytes(fields.get(b"data", b"")))
                for sid, fields in response[0][1]
            ]
            await self._launcher.launch(entries)
            return self._limited_wait()
        except (RedisError, OSError) as error:
            logger.warning(
                "%s: Redis error while reading, retrying in 1 s: %s", self._keys.channel, error
            )
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


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value
