"""Turns due schedule ticks into jobs: one loop per `runtime serve` process, for the
channels it works on.

Any number of processes run it at once; each tick becomes exactly one job:

1. `schedule_advance.lua` moves the schedule's cursor past the due ticks and gives the
   tick to enqueue to ONE caller, with a lease (the others are refused: the cursor they
   read has moved);
2. that process enqueues the job with the tick's id (`schedule:<name>:<tick ms>`,
   the idempotent enqueue of `Client.enqueue`);
3. `schedule_done.lua` confirms it and makes the schedule due at its next tick.

A process that dies between 1 and 3 leaves the tick pending: when its lease ends the
schedule is due again and another process enqueues it under the same id (a no-op when
the job was stored). Nothing is enqueued twice while the job is kept, and no tick is lost.

Ticks missed while no process ran (the cursor is older than the latest due tick):
`catch_up: once` enqueues one job, for the latest of them; `catch_up: skip` enqueues none
and goes on to the next future tick. A tick that is due now (the only one due and at most
MISFIRE_GRACE_MS late) is never "missed".
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import time
from collections.abc import Sequence
from typing import Any

from pydantic import ValidationError
from redis.exceptions import RedisError

from runtime.engine.channel import Channel
from runtime.engine.client import Client
from runtime.engine.clock import now_ms, text
from runtime.engine.loop import BackgroundLoop
from runtime.engine.metrics import Metrics
from runtime.engine.schedules import ScheduleInfo, schedule_job_id
from runtime.errors import ChannelkitError, RedisUnavailable

__all__ = ["LEASE_MS", "MISFIRE_GRACE_MS", "POLL_S", "Scheduler"]

logger = logging.getLogger("channelkit.scheduler")

POLL_S = 1.0  # a schedule created or resumed by another process is seen this late at most
# ... on a channel that has schedules. A channel with none is looked at this often, or at
# once when any process creates or resumes a schedule (a counter every scheduler reads
# each POLL_S): quiet channels cost one command per EMPTY_POLL_S each, not three a second.
EMPTY_POLL_S = 10.0
LEASE_MS = 30_000  # a tick taken by a process that died is taken over after this long
MISFIRE_GRACE_MS = 30_000  # catch_up skip: a lone due tick this late still runs
DUE_BATCH = 100  # most due schedules per channel handled in one step
RETRY_AFTER_ERROR_S = 1.0


class Scheduler(BackgroundLoop):
    """Sleeps until the earliest next tick of its channels (at most POLL_S), woken at
    once when this process changes a schedule (`Client.schedules`)."""

    def __init__(
        self,
        channels: Sequence[Channel[Any, Any]],
        client: Client,
        *,
        metrics: Metrics | None = None,
    ) -> None:
        super().__init__("scheduler")
        self._channels = {channel.name: channel for channel in channels}
        self._client = client
        self._store = client.schedules.store
        self._metrics = metrics
        self._wake = asyncio.Event()
        self._empty_until: dict[str, float] = {}  # a channel without schedules: look again then
        self._changes_seen: bytes | None = None
        client.schedules.on_change(self._on_change)

    def _on_change(self, channel: str) -> None:
        if channel in self._channels:
            self._empty_until.pop(channel, None)
            self._wake.set()

    async def sleep(self, seconds: float) -> None:
        """Sleep, but wake at once on a stop or a schedule change."""
        if seconds <= 0 or self.stopping:
            return
        wake = asyncio.create_task(self._wake.wait())
        stop = asyncio.create_task(self._stopping.wait())
        try:
            await asyncio.wait({wake, stop}, timeout=seconds, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for task in (wake, stop):
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
        self._wake.clear()

    async def step(self) -> float:
        try:
            return await self.run_due(now_ms())
        except (RedisError, OSError, RedisUnavailable) as failure:
            logger.warning("scheduler: %s", failure)
            return RETRY_AFTER_ERROR_S

    async def run_due(self, now: int) -> float:
        """Enqueue every tick due at `now`; returns the seconds until the next one
        (at most POLL_S)."""
        clock = time.monotonic()
        changes: Any = await self._client.redis.get(self._store.changes_key)
        if changes != self._changes_seen:
            self._changes_seen = changes
            self._empty_until.clear()  # a schedule was created or resumed somewhere
        names = [name for name in self._channels if self._empty_until.get(name, 0.0) <= clock]
        replies: list[Any] = []
        if names:
            async with self._client.redis.pipeline(transaction=False) as pipe:
                for name in names:
                    index = self._store.index_key(name)
                    pipe.zrangebyscore(index, "-inf", now, start=0, num=DUE_BATCH)
                    pipe.zrange(index, 0, 0, withscores=True)
                    pipe.zcard(index)
                replies = await pipe.execute()
        earliest = math.inf
        progressed = False
        for position, channel in enumerate(names):
            due, first, count = replies[position * 3 : position * 3 + 3]
            if self._metrics is not None:
                self._metrics.set_schedules(channel, int(count))
            if not count:
                self._empty_until[channel] = clock + EMPTY_POLL_S
                continue
            self._empty_until.pop(channel, None)
            for raw in due:
                progressed |= await self._fire(channel, text(raw), now)
            if first:
                earliest = min(earliest, float(first[0][1]))
        if progressed:
            return 0.0
        return max(0.0, min(POLL_S, (earliest - now_ms()) / 1000))

    async def _fire(self, channel: str, name: str, now: int) -> bool:
        """Handle one due schedule; True when its state moved on."""
        info = await self._store.read(channel, name)
        if info is None:  # removed: only its index entry was left
            await self._store.remove(channel, name)
            return True
        if info.paused:
            return False
        if info.pending_tick_ms is not None:
            if (info.pending_until_ms or 0) > now:
                return False  # another process is enqueueing it
            if not await self._store.recover(info, info.pending_tick_ms, now, LEASE_MS):
                return False
            logger.warning(
                "%s: schedule %s: taking over tick %d of a process that stopped",
                channel,
                name,
                info.pending_tick_ms,
            )
            await self._enqueue(info, info.pending_tick_ms, recovering=True)
            return True
        cadence = info.schedule.cadence()
        first = cadence.next_after(info.after_ms)
        if first is None or first > now:  # not due after all: put it where it belongs
            await self._store.advance(
                info,
                new_after=info.after_ms,
                next_tick=first,
                enqueue_tick=None,
                now=now,
                lease_ms=LEASE_MS,
            )
            return False
        latest = cadence.latest_at_or_before(now, first)
        on_time = latest == first and now - latest <= MISFIRE_GRACE_MS
        run = info.schedule.catch_up == "once" or on_time
        taken = await self._store.advance(
            info,
            new_after=latest,
            next_tick=cadence.next_after(latest),
            enqueue_tick=latest if run else None,
            now=now,
            lease_ms=LEASE_MS,
        )
        if not taken:
            return True  # another process moved it: read it again
        if run:
            await self._enqueue(info, latest, recovering=False)
        else:
            logger.info(
                "%s: schedule %s: skipped ticks missed while no process ran (catch_up: skip)",
                channel,
                name,
            )
            if self._metrics is not None:
                self._metrics.schedule_skipped(channel, name)
        return True

    async def _enqueue(self, info: ScheduleInfo, tick: int, *, recovering: bool) -> None:
        channel = self._channels[info.channel]
        job_id = schedule_job_id(info.name, tick)
        error = ""
        created = False
        try:
            payload = channel.payload_model.model_validate(dict(info.schedule.payload))
        except ValidationError as invalid:
            # The channel's payload schema changed after the schedule was stored.
            error = f"payload no longer valid for {info.channel!r}: {invalid}"
            logger.error("%s: schedule %s: %s", info.channel, info.name, error)
        else:
            if recovering and await self._client.job(info.channel, job_id) is not None:
                created = False
            else:
                try:
                    await self._client.enqueue(info.channel, payload, job_id=job_id)
                except ChannelkitError as failure:
                    if isinstance(failure, RedisUnavailable):
                        raise  # the lease ends, and the tick is taken over
                    error = str(failure)
                else:
                    created = True
        await self._store.done(info, tick, job_id, created=created, now=now_ms(), error=error)
        if created and self._metrics is not None:
            self._metrics.schedule_enqueued(info.channel, info.name)
