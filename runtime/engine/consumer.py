"""One channel's worker loop: read, start, run, finish, all paid per batch.

    read ── XREADGROUP as many jobs as there are free slots (never more: nothing is
    │       parked in this process that it is not running)
    ├── rate limit: a sliding window in Redis grants starts; the rest wait here
    ├── start: one script marks the batch active and counts attempts
    ├── run: one asyncio task per job, at most `concurrency` at once
    └── finish: results, retries, failures and acks of all jobs that ended meanwhile,
        one script call (retention trimming included)

Beside it: a heartbeat keeps this process's claim on its running jobs fresh, a reclaimer
takes over jobs whose process died, and a mover puts delayed jobs on the stream when due.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import random
import time
import traceback
import uuid
from collections import Counter
from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel, ValidationError
from redis.asyncio import Redis
from redis.exceptions import RedisError, ResponseError

from runtime.engine.channel import Channel
from runtime.engine.context import JobContext
from runtime.engine.envelope import (
    describe,
    envelope_model,
    is_payload_error,
    job_id_of,
    payload_of,
)
from runtime.engine.keys import CONSUMER_GROUP, ChannelKeys
from runtime.engine.metrics import ChannelMetrics
from runtime.engine.scripts import ChannelScripts, Finish, RateLimit
from runtime.errors import PermanentError

__all__ = ["ChannelConsumer", "backoff_ms"]

logger = logging.getLogger("channelkit.worker")

READ_BLOCK_MS = 500  # how long an idle read waits; also the longest a stop waits for it
DELAYED_POLL_S = 0.05  # jobs delayed by another process start at most this late
MAX_FINISH_BATCH = 500
STOP_FLUSH_ATTEMPTS = 10  # while stopping, give up recording outcomes after ~5 s
TRIM_EVERY_S = 30.0  # retention by age runs at least this often, busy or not
MAX_TRACEBACK = 8000


def backoff_ms(channel: Channel[Any, Any], failures: int) -> int:
    """Wait before the run after the `failures`-th failure (from 1)."""
    backoff = channel.retry.backoff
    delay = float(backoff.delay_ms)
    if backoff.type == "exponential":
        delay *= 2 ** (failures - 1)
    if backoff.max_delay_ms is not None:
        delay = min(delay, backoff.max_delay_ms)
    if backoff.jitter:
        delay -= delay * backoff.jitter * random.random()
    return int(delay)


def _now_ms() -> int:
    return int(time.time() * 1000)


def _error_json(error: BaseException, attempt: int, kind: str | None = None) -> str:
    text = "".join(traceback.format_exception(error))
    return json.dumps(
        {
            "type": kind or f"{type(error).__module__}.{type(error).__qualname__}",
            "message": str(error),
            "traceback": text[-MAX_TRACEBACK:],
            "attempt": attempt,
            "at": _now_ms(),
        }
    )


@dataclass(slots=True)
class _Job:
    stream_id: str
    data: bytes
    job_id: str
    payload: BaseModel
    due_ms: int


class ChannelConsumer:
    def __init__(
        self,
        channel: Channel[Any, Any],
        redis: Redis,
        *,
        prefix: str,
        consumer: str,
        metrics: ChannelMetrics,
    ) -> None:
        self.channel = channel
        self.redis = redis
        self.keys = ChannelKeys(prefix, channel.name)
        self.scripts = ChannelScripts(redis, self.keys)
        self.consumer = consumer
        self.metrics = metrics
        self.running: dict[str, asyncio.Task[None]] = {}  # by stream id
        self.held: list[_Job] = []  # read and claimed, waiting for the rate limiter
        self._limited_ms = 0
        self._stopping = asyncio.Event()
        self._slot_freed = asyncio.Event()
        self._finished: list[Finish] = []
        self._finish_ready = asyncio.Event()
        self._abandoned = False
        self._loops: list[asyncio.Task[None]] = []
        self._heartbeat: asyncio.Task[None] | None = None
        self._flusher: asyncio.Task[None] | None = None
        self._job_logger = logging.getLogger(f"channelkit.jobs.{channel.name}")
        self._envelope = envelope_model(channel)
        stalled = channel.stalled
        retention = channel.keep
        self._keep = (
            -1 if retention.completed.count is None else retention.completed.count,
            retention.completed.age_ms or 0,
            -1 if retention.failed.count is None else retention.failed.count,
            retention.failed.age_ms or 0,
        )
        self._heartbeat_s = stalled.interval_ms / 3000
        self._reclaim_s = min(max(stalled.interval_ms / 5000, 0.05), 5.0)
        # Grants are counted a little longer than the window: a job starts a moment after
        # its grant, and windows measured by start time must hold the limit too.
        duration = channel.limiter.duration_ms if channel.limiter else 0
        self._window_ms = duration + min(20, duration // 50)
        self._token_seed = uuid.uuid4().hex[:10]
        self._limiter_field = _field_name(channel)
        self._token_count = 0

    # -- lifecycle -------------------------------------------------------------------

    async def start(self) -> None:
        try:
            await self.redis.xgroup_create(self.keys.stream, CONSUMER_GROUP, id="0", mkstream=True)
        except ResponseError as error:
            if "BUSYGROUP" not in str(error):
                raise
        self._heartbeat = asyncio.create_task(
            self._heartbeat_loop(), name=f"heartbeat:{self.channel.name}"
        )
        self._flusher = asyncio.create_task(self._flush_loop(), name=f"finish:{self.channel.name}")
        self._loops = [
            asyncio.create_task(self._read_loop(), name=f"read:{self.channel.name}"),
            asyncio.create_task(self._reclaim_loop(), name=f"reclaim:{self.channel.name}"),
            asyncio.create_task(self._delayed_loop(), name=f"delayed:{self.channel.name}"),
        ]

    async def stop(self, timeout: float) -> bool:  # noqa: ASYNC109
        """Stop taking jobs and let running ones finish for up to `timeout` seconds.

        True when all finished. Otherwise the rest are abandoned unacknowledged: another
        process takes them over once their stalled interval has passed.
        """
        self._stopping.set()
        self._slot_freed.set()
        await asyncio.gather(*self._loops, return_exceptions=True)
        if self.held:
            with contextlib.suppress(RedisError):
                await self.scripts.requeue([(job.stream_id, job.data) for job in self.held])
            self.held.clear()
        clean = True
        if self.running:
            _, pending = await asyncio.wait(list(self.running.values()), timeout=timeout)
            if pending:
                clean = False
                self._abandoned = True
                for task in pending:
                    task.cancel()
                await asyncio.gather(*pending, return_exceptions=True)
        self._finish_ready.set()
        if self._flusher is not None:
            await self._flusher
        if self._heartbeat is not None:
            self._heartbeat.cancel()
            await asyncio.gather(self._heartbeat, return_exceptions=True)
        return clean

    def abandon(self) -> None:
        self._abandoned = True
        self._finished.clear()

    # -- reading ---------------------------------------------------------------------

    async def _read_loop(self) -> None:
        concurrency = self.channel.concurrency
        while not self._stopping.is_set():
            try:
                if self.held:
                    held, self.held = self.held, []
                    await self._launch(held)
                    await self._wait_for_limiter()
                    continue
                free = concurrency - len(self.running)
                if free <= 0:
                    self._slot_freed.clear()
                    await self._slot_freed.wait()
                    continue
                response: Any = await self.redis.xreadgroup(
                    CONSUMER_GROUP,
                    self.consumer,
                    {self.keys.stream: ">"},
                    count=free,
                    block=READ_BLOCK_MS,
                )
                if not response:
                    continue
                entries = [
                    (_text(sid), bytes(fields.get(b"data", b""))) for sid, fields in response[0][1]
                ]
                await self._start(entries)
                await self._wait_for_limiter()
            except (RedisError, OSError) as error:
                logger.warning(
                    "%s: Redis error while reading, retrying in 1 s: %s", self.channel.name, error
                )
                await self._sleep(1.0)

    async def _wait_for_limiter(self) -> None:
        """Jobs the rate limit held back wait here, in this process, until a start is due
        (they stay claimed and heartbeated); no polling while limited."""
        if self.held:
            self.metrics.limited_seconds.inc(self._limited_ms / 1000)
            logger.debug(
                "%s: rate limited, %d job(s) wait %d ms",
                self.channel.name,
                len(self.held),
                self._limited_ms,
            )
            await self._sleep(self._limited_ms / 1000)

    def _token(self) -> str:
        self._token_count += 1
        return f"{self._token_seed}:{self._token_count}"

    async def _reclaim_loop(self) -> None:
        stalled = self.channel.stalled
        error = json.dumps(
            {
                "type": "stalled",
                "message": f"the job stalled more than {stalled.max_count} time(s): the process "
                "running it stopped heartbeating (crashed, was killed, or blocked its event loop)",
                "traceback": "",
                "attempt": 0,
                "at": 0,
            }
        )
        next_trim = time.monotonic() + TRIM_EVERY_S
        while not self._stopping.is_set():
            await self._sleep(self._reclaim_s)
            if self._stopping.is_set():
                return
            try:
                if time.monotonic() >= next_trim:
                    # Retention by age also on a quiet channel (finishing jobs trims too).
                    await self.scripts.finish([], _now_ms(), self._keep)
                    next_trim = time.monotonic() + TRIM_EVERY_S
                free = self.channel.concurrency - len(self.running) - len(self.held)
                if free <= 0:
                    continue
                rows, failed = await self.scripts.reclaim(
                    self.consumer, stalled.interval_ms, free, stalled.max_count, _now_ms(), error
                )
                if failed:
                    self.metrics.stalled.inc(failed)
                    self.metrics.failed.inc(failed)
                    logger.error(
                        "%s: %d job(s) stalled more than %d time(s): moved to the failed set",
                        self.channel.name,
                        failed,
                        stalled.max_count,
                        extra={"channel": self.channel.name},
                    )
                if rows:
                    self.metrics.stalled.inc(len(rows))
                    logger.warning(
                        "%s: took over %d stalled job(s)",
                        self.channel.name,
                        len(rows),
                        extra={"channel": self.channel.name},
                    )
                    await self._start([(sid, data) for sid, data, _ in rows])
            except (RedisError, OSError) as failure:
                logger.warning("%s: reclaiming stalled jobs failed: %s", self.channel.name, failure)

    async def _delayed_loop(self) -> None:
        while not self._stopping.is_set():
            try:
                moved, next_due = await self.scripts.move_due(_now_ms(), 500)
            except (RedisError, OSError) as failure:
                logger.warning("%s: moving delayed jobs failed: %s", self.channel.name, failure)
                await self._sleep(1.0)
                continue
            if moved == 500:
                continue
            wait = DELAYED_POLL_S
            if next_due is not None:
                wait = min(wait, max(0.0, (next_due - _now_ms()) / 1000))
            await self._sleep(wait)

    async def _heartbeat_loop(self) -> None:
        while True:
            await asyncio.sleep(self._heartbeat_s)
            owned = [*self.running, *(job.stream_id for job in self.held)]
            if not owned:
                continue
            try:
                lost = await self.scripts.heartbeat(self.consumer, owned)
            except (RedisError, OSError) as failure:
                logger.warning("%s: heartbeat failed: %s", self.channel.name, failure)
                continue
            if lost:
                logger.warning(
                    "%s: %d running job(s) were taken over by another process "
                    "(this one missed its stalled interval); they may run twice",
                    self.channel.name,
                    len(lost),
                )

    async def _sleep(self, seconds: float) -> None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._stopping.wait(), timeout=seconds)

    # -- starting and running --------------------------------------------------------

    async def _start(self, entries: list[tuple[str, bytes]]) -> None:
        jobs: list[_Job] = []
        for stream_id, data in entries:
            try:
                envelope = self._envelope.model_validate_json(data)
            except ValidationError as error:
                self._poison(stream_id, data, error)
                continue
            due_ms = int(stream_id.split("-", 1)[0])
            payload = payload_of(envelope)
            if payload is None:
                self._poison(stream_id, data, "message_invalid: the message carries no payload")
                continue
            jobs.append(_Job(stream_id, data, envelope.task_id, payload, due_ms))
        if self.channel.limiter is not None and self.channel.limiter.key is not None:
            jobs = await self._limit_by_key(jobs)
        if jobs:
            await self._launch(jobs)

    async def _launch(self, jobs: list[_Job]) -> None:
        """Mark jobs active and run them; a global rate limit may hold some back."""
        limiter = self.channel.limiter
        limit = None
        if limiter is not None and limiter.key is None:
            limit = RateLimit(None, self._window_ms, limiter.max, self._token())
        now = _now_ms()
        granted, wait_ms, rows, used = await self.scripts.start(
            [job.job_id for job in jobs], now, limit
        )
        if granted < len(jobs):
            self.held = jobs[granted:] + self.held
            self._limited_ms = wait_ms
        wait_seconds = self.metrics.wait_seconds
        for job, (attempt, failures) in zip(jobs[:granted], rows, strict=True):
            wait_seconds.observe(max(0, now - job.due_ms) / 1000)
            self.running[job.stream_id] = asyncio.create_task(self._run(job, attempt, failures))
        self.metrics.started.inc(granted)
        self.metrics.running.set(len(self.running))
        if granted and logger.isEnabledFor(logging.DEBUG):
            logger.debug(
                "%s: claimed and started %d job(s)",
                self.channel.name,
                granted,
                extra={
                    "channel": self.channel.name,
                    "job_ids": [job.job_id for job in jobs[:granted]],
                },
            )
        if limit is not None and granted and used * 2 > limit.max:
            # Windows are measured by start time, and a start lags its grant by the handlers
            # entered before it on this loop (tens of ms on a cold or busy process): one loop
            # turn runs the jobs just created into their handlers, then their grants are
            # dated now. Should that fail, the grants keep their time (a smaller margin).
            # Only needed once a window is over half full: below that, any start-time window
            # spans grants of at most two half-full windows, which is within the limit.
            await asyncio.sleep(0)
            with contextlib.suppress(RedisError, OSError):
                await self.scripts.restamp(limit, granted)

    async def _limit_by_key(self, jobs: list[_Job]) -> list[_Job]:
        """Each value of the limiter's payload field has its own window; jobs over their
        group's limit go to the delayed set until a slot is due, freeing this slot."""
        limiter = self.channel.limiter
        assert limiter is not None
        assert limiter.key is not None
        groups: dict[str, list[_Job]] = {}
        for job in jobs:
            groups.setdefault(str(getattr(job.payload, self._limiter_field, "")), []).append(job)
        allowed: list[_Job] = []
        now = _now_ms()
        for group, members in groups.items():
            granted, wait_ms = await self.scripts.limit(
                RateLimit(group, self._window_ms, limiter.max, self._token()), len(members)
            )
            allowed += members[:granted]
            for job in members[granted:]:
                self._record(["defer", job.stream_id, job.job_id, now + wait_ms, job.data, ""])
        return allowed

    def _poison(self, stream_id: str, data: bytes, error: ValidationError | str) -> None:
        """A message that cannot become a job goes to the failed set, with the reason."""
        job_id = job_id_of(data) or f"poison-{stream_id}"
        if isinstance(error, str):
            kind, problems = "message_invalid", error
        else:
            problems = describe(error)
            kind = "payload_invalid" if is_payload_error(error) else "message_invalid"
        wrapped = PermanentError(f"{kind}: {problems}")
        logger.error(
            "%s: job %s cannot be decoded, moved to the failed set: %s",
            self.channel.name,
            job_id,
            problems,
            extra={"channel": self.channel.name, "job_id": job_id},
        )
        self._record(["fail", stream_id, job_id, _error_json(wrapped, 0, kind), data, ""])

    async def _run(self, job: _Job, attempt: int, failures: int) -> None:
        channel = self.channel
        context = JobContext(
            job_id=job.job_id, channel=channel.name, attempt=attempt, logger=self._job_logger
        )
        started = time.perf_counter()
        record: Finish
        try:
            result = await channel.process(job.payload, context)
            record = ["done", job.stream_id, job.job_id, self._encode_result(result), "", ""]
            outcome = "completed"
        except asyncio.CancelledError:
            if self._abandoned:
                return  # left unacknowledged for another process
            raise
        except Exception as error:
            permanent = isinstance(error, PermanentError | ValidationError)
            if not permanent and failures + 1 < channel.retry.attempts:
                due = _now_ms() + backoff_ms(channel, failures + 1)
                record = [
                    "retry",
                    job.stream_id,
                    job.job_id,
                    _error_json(error, attempt),
                    due,
                    job.data,
                ]
                outcome = "retried"
            else:
                record = [
                    "fail",
                    job.stream_id,
                    job.job_id,
                    _error_json(error, attempt),
                    job.data,
                    "",
                ]
                outcome = "failed"
            self._log_failure(job, attempt, outcome, error, time.perf_counter() - started)
        finally:
            self.running.pop(job.stream_id, None)
            self._slot_freed.set()
        elapsed = time.perf_counter() - started
        self.metrics.run_seconds.observe(elapsed)
        if outcome == "completed" and self._job_logger.isEnabledFor(logging.DEBUG):
            self._job_logger.debug(
                "job completed", extra=self._fields(job, attempt, elapsed, outcome)
            )
        self._record(record)

    def _encode_result(self, result: Any) -> str:
        model = self.channel.result_model
        if result is None:
            return ""
        if model is not None and not isinstance(result, model):
            result = model.model_validate(result)
        if isinstance(result, BaseModel):
            return result.model_dump_json(by_alias=True, exclude_unset=True)
        return json.dumps(result, default=str)

    def _fields(self, job: _Job, attempt: int, elapsed: float, outcome: str) -> dict[str, Any]:
        return {
            "channel": self.channel.name,
            "job_id": job.job_id,
            "attempt": attempt,
            "duration_ms": round(elapsed * 1000, 3),
            "outcome": outcome,
        }

    def _log_failure(
        self, job: _Job, attempt: int, outcome: str, error: Exception, elapsed: float
    ) -> None:
        fields = self._fields(job, attempt, elapsed, outcome) | {
            "error": f"{type(error).__name__}: {error}"
        }
        if outcome == "retried":
            self._job_logger.warning("job failed, will retry", extra=fields)
        else:
            self._job_logger.error("job failed", extra=fields, exc_info=error)

    # -- finishing -------------------------------------------------------------------

    def _record(self, record: Finish) -> None:
        self._finished.append(record)
        self._finish_ready.set()

    async def _flush_loop(self) -> None:
        failures = 0
        while True:
            await self._finish_ready.wait()
            self._finish_ready.clear()
            while self._finished:
                batch = self._finished[:MAX_FINISH_BATCH]
                try:
                    await self.scripts.finish(batch, _now_ms(), self._keep)
                except (RedisError, OSError) as failure:
                    failures += 1
                    if self._stopping.is_set() and failures >= STOP_FLUSH_ATTEMPTS:
                        # Redis is gone and the process is stopping: the jobs stay
                        # unacknowledged and run again elsewhere (at least once).
                        logger.error(
                            "%s: could not record %d finished job(s) before stopping: %s",
                            self.channel.name,
                            len(self._finished),
                            failure,
                        )
                        self._finished.clear()
                        return
                    logger.warning(
                        "%s: recording finished jobs failed, retrying: %s",
                        self.channel.name,
                        failure,
                    )
                    await asyncio.sleep(0.5)
                    continue
                failures = 0
                del self._finished[: len(batch)]
                self._count_outcomes(batch)
            if self._stopping.is_set() and not self.running:
                return

    def _count_outcomes(self, records: list[Finish]) -> None:
        """Outcome counters per recorded batch: one metric update per kind, not per job."""
        kinds = Counter(record[0] for record in records)
        metrics = self.metrics
        metrics.completed.inc(kinds["done"])
        metrics.retried.inc(kinds["retry"])
        metrics.failed.inc(kinds["fail"])
        metrics.running.set(len(self.running))


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


def _field_name(channel: Channel[Any, Any]) -> str:
    """The model attribute of the limiter's key: channels.yaml names the JSON property,
    which the model may have renamed (`from` becomes `from_` with an alias)."""
    key: str | None = channel.limiter.key if channel.limiter else None
    if key is None:
        return ""
    for name, field in channel.payload_model.model_fields.items():
        if key in (name, field.alias):
            return str(name)
    return key
