"""Records how jobs ended: outcomes gather while one script call is in flight and go
to Redis together (results, retries, failures, acks and retention in one call)."""

from __future__ import annotations

import asyncio
import logging
from collections import Counter
from collections.abc import Callable

from redis.exceptions import RedisError

from runtime.engine.clock import now_ms
from runtime.engine.metrics import ChannelMetrics
from runtime.engine.outcomes import Completed, Failed, Outcome, Retrying
from runtime.engine.scripts import ChannelScripts, Retention

__all__ = ["OutcomeRecorder"]

logger = logging.getLogger("channelkit.worker")

MAX_BATCH = 500  # outcomes per script call
RETRY_AFTER_ERROR_S = 0.5
STOP_ATTEMPTS = 10  # while stopping, give up recording after ~5 s of Redis errors


class OutcomeRecorder:
    """`record()` never waits; a task writes what was recorded, batch by batch, and keeps
    retrying while Redis is away (the jobs stay unacknowledged until it is back)."""

    def __init__(
        self,
        scripts: ChannelScripts,
        *,
        channel: str,
        consumer: str,
        keep: Retention,
        metrics: ChannelMetrics,
        running: Callable[[], int],
    ) -> None:
        self._scripts = scripts
        self._channel = channel
        self._consumer = consumer
        self.keep = keep
        self._metrics = metrics
        self._running = running
        self._pending: list[Outcome] = []
        self._ready = asyncio.Event()
        self._stopping = False
        self._task: asyncio.Task[None] | None = None

    @property
    def pending(self) -> int:
        """Outcomes recorded but not yet written."""
        return len(self._pending)

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name=f"finish:{self._channel}")

    def record(self, outcome: Outcome) -> None:
        self._pending.append(outcome)
        self._ready.set()

    async def stop(self) -> None:
        """Write what is left (giving up after STOP_ATTEMPTS Redis errors), then end."""
        self._stopping = True
        self._ready.set()
        if self._task is not None:
            await self._task

    def abandon(self) -> None:
        """Drop what was not written: those jobs stay unacknowledged for other processes."""
        self._pending.clear()

    async def trim(self) -> None:
        """Apply retention by age with no outcome to record (a quiet channel)."""
        await self._scripts.finish(self._consumer, [], now_ms(), self.keep)

    async def _run(self) -> None:
        failures = 0
        while True:
            await self._ready.wait()
            self._ready.clear()
            while self._pending:
                batch = self._pending[:MAX_BATCH]
                try:
                    stale = await self._scripts.finish(self._consumer, batch, now_ms(), self.keep)
                except (RedisError, OSError) as failure:
                    failures += 1
                    if self._stopping and failures >= STOP_ATTEMPTS:
                        # Redis is gone and the process is stopping: the jobs stay
                        # unacknowledged and run again elsewhere (at least once).
                        logger.error(
                            "%s: could not record %d finished job(s) before stopping: %s",
                            self._channel,
                            len(self._pending),
                            failure,
                        )
                        self._pending.clear()
                        return
                    logger.warning(
                        "%s: recording finished jobs failed, retrying: %s",
                        self._channel,
                        failure,
                    )
                    await asyncio.sleep(RETRY_AFTER_ERROR_S)
                    continue
                failures = 0
                del self._pending[: len(batch)]
                if stale:
                    self._report_stale([outcome.job_id for outcome in stale])
                self._count(batch, stale)
            if self._stopping:
                return

    def _report_stale(self, job_ids: list[str]) -> None:
        logger.warning(
            "%s: %d outcome(s) not recorded: another process took job(s) %s over while this "
            "one ran them, or this one started them again (it missed the stalled interval: "
            "paused, or its event loop blocked); the run that holds each job records it",
            self._channel,
            len(job_ids),
            ", ".join(job_ids[:20]) + (" ..." if len(job_ids) > 20 else ""),
            extra={"channel": self._channel, "job_ids": job_ids},
        )

    def _count(self, batch: list[Outcome], stale: list[Outcome]) -> None:
        """Outcome counters per written batch: one metric update per kind, not per job.
        Dropped outcomes are left out: the run that holds the job counts it."""
        if stale:
            dropped = {id(outcome) for outcome in stale}
            kinds = Counter(outcome.kind for outcome in batch if id(outcome) not in dropped)
        else:
            kinds = Counter(outcome.kind for outcome in batch)
        metrics = self._metrics
        metrics.completed.inc(kinds[Completed.kind])
        metrics.retried.inc(kinds[Retrying.kind])
        metrics.failed.inc(kinds[Failed.kind])
        metrics.running.set(self._running())
