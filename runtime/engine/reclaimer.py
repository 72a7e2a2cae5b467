"""Takes over jobs whose process died (stopped heartbeating), and applies retention by
age on a quiet channel."""

from __future__ import annotations

import logging
import time
from typing import Any

from redis.exceptions import RedisError

from runtime.engine.channel import Channel
from runtime.engine.clock import now_ms
from runtime.engine.jobs import JobError
from runtime.engine.launcher import Launcher
from runtime.engine.loop import BackgroundLoop
from runtime.engine.metrics import ChannelMetrics
from runtime.engine.recorder import OutcomeRecorder
from runtime.engine.runner import JobRunner
from runtime.engine.scripts import ChannelScripts

__all__ = ["Reclaimer"]

logger = logging.getLogger("channelkit.worker")

TRIM_EVERY_S = 30.0  # retention by age runs at least this often, busy or not


class Reclaimer(BackgroundLoop):
    """Every fifth of the stalled interval (0.05 to 5 s), claims jobs idle longer than
    that interval, as many as there are free slots, and launches them here; a job that
    stalled more than `max_count` times goes to the failed set instead."""

    def __init__(
        self,
        channel: Channel[Any, Any],
        scripts: ChannelScripts,
        *,
        consumer: str,
        launcher: Launcher,
        runner: JobRunner,
        recorder: OutcomeRecorder,
        metrics: ChannelMetrics,
    ) -> None:
        super().__init__(f"reclaim:{channel.name}")
        self.channel = channel
        self._scripts = scripts
        self._consumer = consumer
        self._launcher = launcher
        self._runner = runner
        self._recorder = recorder
        self._metrics = metrics
        stalled = channel.stalled
        self.every_s = min(max(stalled.interval_ms / 5000, 0.05), 5.0)
        self._next_trim = time.monotonic() + TRIM_EVERY_S
        self._error = JobError(
            type="stalled",
            message=f"the job stalled more than {stalled.max_count} time(s): the process "
            "running it stopped heartbeating (crashed, was killed, or blocked its event loop)",
            traceback="",
            attempt=0,
            at=0,
        )

    async def _run(self) -> None:
        await self.sleep(self.every_s)
        await super()._run()

    async def step(self) -> float:
        try:
            if time.monotonic() >= self._next_trim:
                # Retention by age also on a quiet channel (finishing jobs trims too).
                await self._recorder.trim()
                self._next_trim = time.monotonic() + TRIM_EVERY_S
            free = self._runner.free_slots - len(self._launcher.held)
            if free > 0:
                await self._reclaim(free)
        except (RedisError, OSError) as failure:
            logger.warning("%s: reclaiming stalled jobs failed: %s", self.channel.name, failure)
        return self.every_s

    async def _reclaim(self, free: int) -> None:
        stalled = self.channel.stalled
        name = self.channel.name
        reclaimed = await self._scripts.reclaim(
            self._consumer,
            min_idle_ms=stalled.interval_ms,
            count=free,
            max_stalled=stalled.max_count,
            now_ms=now_ms(),
            error=self._error,
        )
        if reclaimed.failed:
            self._metrics.stalled.inc(reclaimed.failed)
            self._metrics.failed.inc(reclaimed.failed)
            logger.error(
                "%s: %d job(s) stalled more than %d time(s): moved to the failed set",
                name,
                reclaimed.failed,
                stalled.max_count,
                extra={"channel": name},
            )
        if reclaimed.entries:
            self._metrics.stalled.inc(len(reclaimed.entries))
            logger.warning(
                "%s: took over %d stalled job(s)",
                name,
                len(reclaimed.entries),
                extra={"channel": name},
            )
            await self._launcher.launch(reclaimed.entries)
