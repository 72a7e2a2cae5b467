"""Moves delayed jobs and retries onto the stream when they are due."""

from __future__ import annotations

import logging

from redis.exceptions import RedisError

from runtime.engine.clock import now_ms
from runtime.engine.loop import BackgroundLoop
from runtime.engine.scripts import ChannelScripts

__all__ = ["DelayedMover"]

logger = logging.getLogger("channelkit.worker")

POLL_S = 0.05  # jobs delayed by another process start at most this late
MOVE_BATCH = 500  # most jobs moved by one script call
RETRY_AFTER_ERROR_S = 1.0


class DelayedMover(BackgroundLoop):
    """Polls the channel's delayed set; sleeps until the next due job, at most POLL_S
    (another process may add an earlier one), and not at all while a backlog is due."""

    def __init__(self, scripts: ChannelScripts, *, channel: str) -> None:
        super().__init__(f"delayed:{channel}")
        self._scripts = scripts
        self._channel = channel

    async def step(self) -> float:
        try:
            moved, next_due = await self._scripts.move_due(now_ms(), MOVE_BATCH)
        except (RedisError, OSError) as failure:
            logger.warning("%s: moving delayed jobs failed: %s", self._channel, failure)
            return RETRY_AFTER_ERROR_S
        if moved == MOVE_BATCH:
            return 0.0
        if next_due is None:
            return POLL_S
        return min(POLL_S, max(0.0, (next_due - now_ms()) / 1000))
