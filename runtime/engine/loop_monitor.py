"""Notices when the event loop was blocked, and names the jobs that were running then.

A handler that blocks the loop (`time.sleep` in an async handler, synchronous I/O, long
CPU work) stops everything in the process: reads, heartbeats, other jobs. Past the
stalled interval other processes take its jobs over. What a user sees of it otherwise is
a Redis timeout far from the cause; this says what happened and where to look.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Mapping, Sequence

from runtime.engine.loop import BackgroundLoop

__all__ = ["LoopMonitor"]

logger = logging.getLogger("channelkit.worker")

TICK_S = 0.25
BLOCKED_S = 1.0  # a tick this much late is reported


class LoopMonitor(BackgroundLoop):
    """Sleeps TICK_S at a time and reports a wake-up more than BLOCKED_S late, with the
    jobs `running()` lists (channel -> job ids)."""

    def __init__(self, running: Callable[[], Mapping[str, Sequence[str]]]) -> None:
        super().__init__("loop-monitor")
        self._running = running
        self._expected: float | None = None
        self.longest_block_s = 0.0

    async def step(self) -> float:
        now = asyncio.get_running_loop().time()
        if self._expected is not None:
            late = now - self._expected
            if late >= BLOCKED_S:
                self.longest_block_s = max(self.longest_block_s, late)
                self._report(late)
        self._expected = now + TICK_S
        return TICK_S

    def _report(self, late: float) -> None:
        running = {channel: list(ids) for channel, ids in self._running().items() if ids}
        where = (
            "; ".join(
                f"channel {channel!r} (its handler), job(s) {', '.join(ids[:5])}"
                + (" ..." if len(ids) > 5 else "")
                for channel, ids in running.items()
            )
            or "no job was running"
        )
        logger.warning(
            "the event loop was blocked for %.1f s: something ran without awaiting "
            "(time.sleep, synchronous I/O or long CPU work in an async handler?); running "
            "then: %s. Use asyncio.sleep / async clients, or asyncio.to_thread for blocking "
            "work: past the stalled interval, other processes take this one's jobs over",
            late,
            where,
            extra={"blocked_s": round(late, 3), "running": running},
        )
