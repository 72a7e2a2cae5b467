"""Takes jobs for the channel's free slots, highest priority first, and waits without
polling when there are none.

    take.lua  ── due delayed jobs join the waiting set; up to `free` jobs move from it
              │  to the stream, claimed by this consumer (nothing while paused or held
              │  back by a RetryAfter)
              └─ nothing taken: block on the channel's marker (BZPOPMIN) until a new
                 job, an earlier delayed one, a resume, the next due time, or the idle
                 wake, whichever comes first

Idle readers of one process share one blocking read (runtime.engine.idle_watch) where
the Redis allows it; their idle wake then backs off from IDLE_WAKE_S to IDLE_WAKE_MAX_S
while nothing comes, so that quiet channels cost next to nothing.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Any

from redis.exceptions import RedisError, ResponseError

from runtime.engine.clock import now_ms
from runtime.engine.connection import RedisClient
from runtime.engine.idle_watch import MarkerWatch, Wakeup
from runtime.engine.keys import CONSUMER_GROUP, ChannelKeys
from runtime.engine.launcher import Launcher
from runtime.engine.limits import DEFAULT_EVENTS_MAX
from runtime.engine.loop import BackgroundLoop
from runtime.engine.metrics import ChannelMetrics
from runtime.engine.runner import JobRunner
from runtime.engine.scripts import PAUSED, ChannelScripts, Taken

__all__ = ["IDLE_WAKE_MAX_S", "IDLE_WAKE_S", "JobReader"]

logger = logging.getLogger("channelkit.worker")

# The longest an idle reader sleeps: also the longest a stop waits for it, and the
# latest a job that another producer wrote straight onto the stream (a taskiq producer)
# or a delayed job whose waker died is seen.
IDLE_WAKE_S = 0.5
# The longest a reader on the shared watch sleeps while its channel stays quiet: a
# quiet channel then costs one take.lua every IDLE_WAKE_MAX_S (500 channels: ~60
# commands/s), and a job a taskiq producer wrote straight onto its stream waits at most
# this long. Markers (every Channelkit enqueue, retry, resume) wake it at once.
IDLE_WAKE_MAX_S = 8.0
MOVE_BATCH = 500  # most due delayed jobs one take moves
RETRY_AFTER_ERROR_S = 1.0


class JobReader(BackgroundLoop):
    """take.lua for free slots, hand the entries to the launcher; while the rate limit
    holds jobs back, wait here until a start is due (no polling).

    The consumer group is (re)created here: at start, and whenever Redis says it is gone
    (NOGROUP: Redis restarted empty, a failover to an empty replica, the stream deleted).
    What keeps the reader from working is `problem`, for readiness; None when it works.
    `paused` is True while the channel is paused (as last seen).
    """

    def __init__(
        self,
        redis: RedisClient,
        scripts: ChannelScripts,
        *,
        consumer: str,
        launcher: Launcher,
        runner: JobRunner,
        metrics: ChannelMetrics,
        events_max: int = DEFAULT_EVENTS_MAX,
        watch: MarkerWatch | None = None,
    ) -> None:
        self._keys: ChannelKeys = scripts.keys
        self._events_max = events_max
        self._watch = watch
        self._idle_wake = IDLE_WAKE_S
        super().__init__(f"read:{self._keys.channel}")
        self._redis = redis
        self._scripts = scripts
        self._consumer = consumer
        self._launcher = launcher
        self._runner = runner
        self._metrics = metrics
        self.problem: str | None = "starting"
        self.paused = False
        self._group_ready = False

    async def ensure_group(self) -> None:
        """Create the consumer group (and the stream) unless it exists, and tell the
        scripts how many job events the channel keeps (channels.yaml's keep.events)."""
        await self._redis.hset(self._keys.meta, "events_max", self._events_max)
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
            taken = await self._scripts.take(self._consumer, now_ms(), free, MOVE_BATCH)
            self.problem = None
            self._set_paused(taken.hold == PAUSED)
            if not taken.entries:
                await self._wait_for_work(taken)
                return 0.0
            self._idle_wake = IDLE_WAKE_S
            await self._launcher.launch(taken.entries)
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

    async def _wait_for_work(self, taken: Taken) -> None:
        """Block on the marker until there may be work: a marker set by a new job (or a
        resume, a retry from the failed set), the next delayed job's due time, the end
        of a RetryAfter hold, or IDLE_WAKE_S."""
        idle = self._idle_wake
        timeout = idle
        if taken.hold > 0:
            timeout = min(timeout, taken.hold / 1000)
        if taken.next_due_ms is not None:
            timeout = min(timeout, (taken.next_due_ms - now_ms()) / 1000)
        if timeout < 0.001:
            return
        woken = await self._marker(timeout)
        if woken is None:
            if timeout >= idle and self._watch is not None:
                self._idle_wake = min(idle * 2, IDLE_WAKE_MAX_S)  # still quiet: back off
            return
        self._idle_wake = IDLE_WAKE_S
        if woken.member == b"d" and woken.score > now_ms() + 1:
            # an earlier delayed job than the one known: sleep until it is due, or until
            # another marker (a new job) comes
            await self._marker(min(idle, (woken.score - now_ms()) / 1000))

    async def _marker(self, within_s: float) -> Wakeup | None:
        """Pop the channel's marker, waiting up to `within_s` (a stop ends the wait)."""
        if self._watch is None:
            popped: Any = await self._redis.bzpopmin(self._keys.marker, within_s)
            return None if popped is None else Wakeup(bytes(popped[1]), float(popped[2]))
        waiting = asyncio.ensure_future(self._watch.wait(self._keys.marker, within_s))
        stop = asyncio.ensure_future(self._stopping.wait())
        try:
            await asyncio.wait((waiting, stop), return_when=asyncio.FIRST_COMPLETED)
        finally:
            stop.cancel()
            if not waiting.done():
                waiting.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await waiting
        return waiting.result() if not waiting.cancelled() else None

    def _set_paused(self, paused: bool) -> None:
        if paused != self.paused:
            self.paused = paused
            logger.info("%s: channel %s", self._keys.channel, "paused" if paused else "resumed")

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
