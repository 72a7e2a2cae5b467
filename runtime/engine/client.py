"""Enqueue jobs into Redis: the producer side, shared by HTTP, gRPC and Python clients.

Jobs are taskiq messages (JSON). A job waits in the channel's waiting set (by priority,
then FIFO) until a worker takes it onto the channel's stream; a delayed job waits in a
sorted set until it is due. Also here: what an operator does to jobs and channels (look
up, list, count, retry, discard, cancel, pause and resume, and their bulk forms).
"""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import AsyncGenerator, Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any, Protocol, runtime_checkable

from pydantic import BaseModel
from redis.exceptions import ResponseError

from runtime.engine import tracing
from runtime.engine.browse import BrowseScripts, JobFilter, JobPage, jobs_page
from runtime.engine.changes import ChangeFeed
from runtime.engine.clock import now_ms, text
from runtime.engine.connection import RedisClient, connect
from runtime.engine.envelope import TIMEOUT_LABEL
from runtime.engine.events import EventHub, EventPosition, JobEvent
from runtime.engine.jobs import ChannelCounts, JobInfo, JobState
from runtime.engine.keys import CONSUMER_GROUP, ChannelKeys
from runtime.engine.limits import (
    DEFAULT_PRIORITY,
    HIGHEST_PRIORITY,
    LOWEST_PRIORITY,
    check_delay,
    check_job_id,
    check_priority,
    check_timeout,
)
from runtime.engine.metrics import Metrics
from runtime.engine.processes import ProcessInfo, live_processes
from runtime.engine.redis_errors import redis_errors
from runtime.engine.schedules import Schedules
from runtime.engine.scripts import BulkOperation, Cancellation, ChannelScripts, NewJob, ScriptSet
from runtime.errors import EnqueueError, InvalidJobRequest, JobNotFound, JobStateConflict

__all__ = ["DEFAULT_PREFIX", "CancelResult", "Client", "Enqueuer", "JobRequest", "encode_job"]

BULK_STEP = 1000  # jobs one step of a bulk operation changes (one script call)

DEFAULT_PREFIX = "channelkit"
# Waiting and active jobs are listed by reading the stream in order: a listing reads at
# most this deep (offset + limit), so a deep page cannot cost a scan of the whole backlog.
STREAM_LIST_DEPTH = 10_000


def encode_job(
    channel: str,
    payload: BaseModel,
    job_id: str,
    timeout_ms: int | None = None,
    labels: Mapping[str, str] | None = None,
) -> bytes:
    """The bytes a worker receives: a taskiq message (taskiq.message.TaskiqMessage as JSON)
    calling the channel's task. Written by hand: building the taskiq model first would
    validate and serialise the payload twice on the enqueue hot path. Its labels carry a
    job's own timeout, and the trace context (`traceparent`) when tracing is on
    (runtime.engine.tracing)."""
    body = payload.model_dump_json(by_alias=True, exclude_unset=True)
    if timeout_ms is None and not labels:
        tags = "{}"
    else:
        tags = json.dumps(
            {**(labels or {}), **({TIMEOUT_LABEL: int(timeout_ms)} if timeout_ms else {})},
            separators=(",", ":"),
        )
    return (
        f'{{"task_id":{json.dumps(job_id)},"task_name":"channelkit.{channel}",'
        f'"labels":{tags},"labels_types":null,"args":[],"kwargs":{{"payload":{body}}}}}'
    ).encode()


@dataclass(frozen=True, slots=True)
class JobRequest:
    """One job of a batch with options of its own (`Client.enqueue_many`): an id (an id
    that exists already is not enqueued again), a delay, a priority (1 starts first,
    None: the channel's default as the caller passes it), a timeout."""

    payload: BaseModel
    job_id: str | None = None
    delay_ms: int | None = None
    priority: int | None = None
    timeout_ms: int | None = None


@dataclass(frozen=True, slots=True)
class CancelResult:
    """`cancelled`: the job is cancelled now (it was waiting or delayed); False: it is
    running (or about to start) and its worker was told to cancel it. `state` is the
    state it was found in."""

    cancelled: bool
    state: str


@runtime_checkable
class Enqueuer(Protocol):
    """What every enqueue path (HTTP, gRPC, the generated producer) calls: a `Client`."""

    async def enqueue(
        self,
        channel: str,
        payload: BaseModel,
        *,
        job_id: str | None = None,
        delay_ms: int | None = None,
        priority: int | None = None,
        timeout_ms: int | None = None,
    ) -> str: ...

    async def enqueue_many(
        self,
        channel: str,
        payloads: Sequence[BaseModel | JobRequest],
        *,
        priority: int | None = None,
    ) -> list[str]: ...


class Client:
    """A connection to the Redis that holds the channels, and the key prefix they use.

    Redis trouble reaches callers as `runtime.errors.RedisUnavailable` (`EnqueueError`
    from the enqueue methods), with redis-py's error as the cause.
    """

    def __init__(
        self, redis: RedisClient, *, prefix: str = DEFAULT_PREFIX, metrics: Metrics | None = None
    ) -> None:
        self.redis = redis
        self.prefix = prefix
        self.metrics = metrics  # counts enqueued jobs when given
        self._script_set = ScriptSet(redis)
        self.event_hub = EventHub(redis, self.keys)
        self.changes = ChangeFeed(redis, self.keys)
        """Which channels' jobs changed, sampled once a second (runtime.engine.changes)."""
        self._scripts: dict[str, ChannelScripts] = {}
        self._coalescer = _Coalescer(self.scripts)
        self._browse = BrowseScripts(redis)
        self.schedules = Schedules(redis, prefix)
        """Create, list, pause, resume and remove schedules (runtime.engine.schedules)."""

    @classmethod
    def from_url(cls, url: str, *, prefix: str = DEFAULT_PREFIX, **options: Any) -> Client:
        """A REDIS_URL: one Redis (`redis://`, `rediss://`, `unix://`), a Redis Cluster
        (`redis+cluster://`) or a Sentinel-managed master (`redis+sentinel://`); see
        runtime.engine.connection for the forms. `options` are redis-py connection options."""
        return cls(connect(url, **options), prefix=prefix)

    def keys(self, channel: str) -> ChannelKeys:
        return ChannelKeys(self.prefix, channel)

    async def close(self) -> None:
        await self.event_hub.close()
        await self.changes.close()
        await self.redis.aclose()

    async def __aenter__(self) -> Client:
        return self

    async def __aexit__(self, *_: object) -> None:
        await self.close()

    def scripts(self, channel: str) -> ChannelScripts:
        found = self._scripts.get(channel)
        if found is None:
            found = self._scripts[channel] = ChannelScripts(self._script_set, self.keys(channel))
        return found

    async def enqueue(
        self,
        channel: str,
        payload: BaseModel,
        *,
        job_id: str | None = None,
        delay_ms: int | None = None,
        priority: int | None = None,
        timeout_ms: int | None = None,
    ) -> str:
        """Store one job; returns its id. An id that exists already is not enqueued again
        (idempotent enqueue, for as long as the job is kept): its id is returned.

        `priority` runs from 1 (starts first) to 10; None is DEFAULT_PRIORITY (the
        generated producers and APIs pass the channel's declared default). `timeout_ms`
        overrides the channel's timeout for this job.

        Raises InvalidJobRequest for a job id, delay, priority or timeout out of bounds
        (runtime.engine.limits), EnqueueError when Redis does not take the job."""
        if tracing.ENABLED and tracing.recording():
            job_id = uuid.uuid4().hex if job_id is None else job_id
            with tracing.enqueue_span(channel, [job_id]) as labels:
                job = _new_job(channel, payload, job_id, delay_ms, priority, timeout_ms, labels)
                return await self._store(channel, job)
        job = _new_job(channel, payload, job_id, delay_ms, priority, timeout_ms)
        return await self._store(channel, job)

    async def _store(self, channel: str, job: NewJob) -> str:
        job_id = job.job_id
        with redis_errors(EnqueueError, f"job {job_id} of {channel!r} was not enqueued"):
            created = await self._coalescer.enqueue(channel, job)
        if self.metrics is not None and created:
            self.metrics.enqueued(channel, 1)
        return job_id

    async def enqueue_many(
        self,
        channel: str,
        payloads: Sequence[BaseModel | JobRequest],
        *,
        priority: int | None = None,
    ) -> list[str]:
        """Store several jobs in one round trip, all or nothing; returns their ids in
        order. An item may be a `JobRequest` with its own id, delay, priority and
        timeout; `priority` is the default of the others.

        Raises InvalidJobRequest naming the first item out of bounds (`items[3].priority:
        ...`): then nothing is stored."""
        requests = [
            JobRequest(item, priority=priority) if not isinstance(item, JobRequest) else item
            for item in payloads
        ]
        if tracing.ENABLED and tracing.recording():
            requests = [
                replace(request, job_id=request.job_id or uuid.uuid4().hex) for request in requests
            ]
            job_ids = [request.job_id or "" for request in requests]
            with tracing.enqueue_span(channel, job_ids) as labels:
                return await self._store_many(channel, requests, priority, labels)
        return await self._store_many(channel, requests, priority)

    async def _store_many(
        self,
        channel: str,
        requests: Sequence[JobRequest],
        priority: int | None,
        labels: Mapping[str, str] | None = None,
    ) -> list[str]:
        jobs: list[NewJob] = []
        for index, item in enumerate(requests):
            try:
                job = _new_job(
                    channel,
                    item.payload,
                    item.job_id,
                    item.delay_ms,
                    priority if item.priority is None else item.priority,
                    item.timeout_ms,
                    labels,
                )
            except InvalidJobRequest as error:
                raise InvalidJobRequest(f"items[{index}].{error}") from None
            jobs.append(job)
        with redis_errors(EnqueueError, f"{len(jobs)} job(s) of {channel!r} were not enqueued"):
            created = await self.scripts(channel).enqueue(jobs, now_ms())
        if self.metrics is not None:
            self.metrics.enqueued(channel, sum(created))
        return [job.job_id for job in jobs]

    async def job(self, channel: str, job_id: str) -> JobInfo | None:
        with redis_errors():
            raw: dict[bytes, bytes] = await self.redis.hgetall(self.keys(channel).job(job_id))  # type: ignore[assignment]
        return JobInfo.from_hash(channel, job_id, raw) if raw else None

    async def counts(self, channel: str) -> ChannelCounts:
        return (await self.counts_many([channel]))[0]

    async def counts_many(self, channels: Sequence[str]) -> list[ChannelCounts]:
        """Jobs per state of each channel, in one pipeline (what /metrics reads)."""
        priorities = range(HIGHEST_PRIORITY, LOWEST_PRIORITY + 1)
        per_channel = 11 + len(priorities)
        with redis_errors():
            async with self.redis.pipeline(transaction=False) as pipe:
                for channel in channels:
                    keys = self.keys(channel)
                    pipe.zcard(keys.waiting)
                    pipe.xlen(keys.stream)
                    pipe.xpending(keys.stream, CONSUMER_GROUP)
                    pipe.zcard(keys.delayed)
                    pipe.zcard(keys.completed)
                    pipe.zcard(keys.failed)
                    pipe.zcard(keys.cancelled)
                    pipe.get(keys.limiter_total())  # starts granted in the current window
                    pipe.pttl(keys.limiter())
                    pipe.exists(keys.paused)
                    pipe.pttl(keys.backoff())
                    for priority in priorities:
                        low, high = _priority_range(priority)
                        pipe.zcount(keys.waiting, low, high)
                # No consumer group yet (nothing ever consumed) makes XPENDING an error.
                results = await pipe.execute(raise_on_error=False)
        counts = []
        for index, channel in enumerate(channels):
            row = results[index * per_channel : (index + 1) * per_channel]
            waiting, in_stream, pending, delayed, completed, failed, cancelled = row[:7]
            granted, ttl, paused, backoff = row[7:11]
            active = int(pending["pending"]) if isinstance(pending, dict) else 0
            # entries on the stream not yet delivered: written there by a taskiq producer
            undelivered = max(0, int(in_stream) - active)
            by_priority = {
                priority: int(found)
                for priority, found in zip(priorities, row[11:], strict=True)
                if int(found)
            }
            if undelivered:
                by_priority[DEFAULT_PRIORITY] = by_priority.get(DEFAULT_PRIORITY, 0) + undelivered
            counts.append(
                ChannelCounts(
                    channel=channel,
                    waiting=int(waiting) + undelivered,
                    active=active,
                    delayed=int(delayed),
                    completed=int(completed),
                    failed=int(failed),
                    cancelled=int(cancelled),
                    paused=bool(paused),
                    held_back_ms=max(int(backoff), 0),
                    waiting_by_priority=by_priority,
                    limiter={
                        "granted_in_window": int(granted or 0),
                        "window_resets_in_ms": max(int(ttl), 0),
                    },
                )
            )
        return counts

    async def jobs(
        self, channel: str, state: str, *, offset: int = 0, limit: int = 50
    ) -> list[JobInfo]:
        """Jobs in `state`, newest first (waiting and active: oldest first)."""
        with redis_errors():
            return await self._jobs(channel, state, offset=offset, limit=limit)

    async def _jobs(
        self, channel: str, state: str, *, offset: int = 0, limit: int = 50
    ) -> list[JobInfo]:
        keys = self.keys(channel)
        if state in ("failed", "completed", "delayed", "cancelled"):
            index = {
                "failed": keys.failed,
                "completed": keys.completed,
                "delayed": keys.delayed,
                "cancelled": keys.cancelled,
            }[state]
            raw_ids: list[bytes] = await self.redis.zrevrange(index, offset, offset + limit - 1)  # type: ignore[assignment]
            ids = [text(job_id) for job_id in raw_ids]
        elif state == "waiting":
            # in start order: by priority, then FIFO (a page costs O(log n + limit))
            raw_ids = await self.redis.zrange(keys.waiting, offset, offset + limit - 1)  # type: ignore[assignment]
            ids = [text(job_id) for job_id in raw_ids]
        else:
            if offset + limit > STREAM_LIST_DEPTH:
                raise InvalidJobRequest(
                    f"offset: offset + limit is at most {STREAM_LIST_DEPTH} for {state} jobs "
                    f"(read from the stream in order); got {offset} + {limit}"
                )
            ids = await self._stream_job_ids(keys, state, offset, limit)
        async with self.redis.pipeline(transaction=False) as pipe:
            for job_id in ids:
                pipe.hgetall(keys.job(job_id))
            hashes: list[dict[bytes, bytes]] = await pipe.execute()
        return [
            info
            for job_id, raw in zip(ids, hashes, strict=True)
            if raw and (info := JobInfo.from_hash(channel, job_id, raw)).state == state
        ]

    async def _stream_job_ids(
        self, keys: ChannelKeys, state: str, offset: int, limit: int
    ) -> list[str]:
        """Active jobs are the group's pending entries: only the page's entries are read
        in full."""
        try:
            pending: Any = await self.redis.xpending_range(
                keys.stream, CONSUMER_GROUP, min="-", max="+", count=offset + limit
            )
        except ResponseError:  # no stream or group yet
            return []
        async with self.redis.pipeline(transaction=False) as pipe:
            for item in pending[offset : offset + limit]:
                pipe.xrange(keys.stream, min=item["message_id"], max=item["message_id"])
            ranges: list[Any] = await pipe.execute()
        return [
            job_id
            for found in ranges
            for _, fields in found
            if (job_id := _task_id(fields.get(b"data", b"")))
        ]

    async def retry(self, channel: str, job_id: str) -> None:
        """Run a failed or cancelled job again (its failures reset).

        Raises JobNotFound, or JobStateConflict when the job is in another state.
        """
        with redis_errors():
            done = await self.scripts(channel).retry_failed(job_id)
        if not done.done:
            raise _refused(channel, job_id, done.state, "retried", ("failed", "cancelled"))

    async def discard(self, channel: str, job_id: str) -> None:
        """Remove a failed, completed, cancelled or delayed job.

        Raises JobNotFound, or JobStateConflict when the job is waiting or running.
        """
        with redis_errors():
            done = await self.scripts(channel).discard(job_id)
        if not done.done:
            allowed = ("failed", "completed", "cancelled", "delayed")
            raise _refused(channel, job_id, done.state, "discarded", allowed)

    async def cancel(self, channel: str, job_id: str) -> CancelResult:
        """Cancel a job: a waiting or delayed one at once; a running one cooperatively
        (its handler gets asyncio.CancelledError and the job ends cancelled, not retried).

        Raises JobNotFound, or JobStateConflict when the job has ended already.
        """
        with redis_errors():
            found = await self.scripts(channel).cancel(job_id, now_ms())
        if found.outcome == Cancellation.CANCELLED:
            return CancelResult(cancelled=True, state=found.state)
        if found.outcome == Cancellation.REQUESTED:
            return CancelResult(cancelled=False, state=found.state)
        allowed = ("waiting", "delayed", "active")
        raise _refused(channel, job_id, found.state, "cancelled", allowed)

    async def retry_all_failed(self, channel: str) -> int:
        """Run every failed job of the channel again; returns how many."""
        return await self._bulk(channel, "retry_failed")

    async def discard_all_failed(self, channel: str) -> int:
        """Remove every failed job of the channel; returns how many."""
        return await self._bulk(channel, "discard_failed")

    async def cancel_all(self, channel: str, state: str = "waiting") -> int:
        """Cancel every waiting (or, with state="delayed", delayed) job of the channel;
        returns how many. Running jobs are not touched: cancel them one by one."""
        if state not in ("waiting", "delayed"):
            raise InvalidJobRequest(f"state: 'waiting' or 'delayed'; got {state!r}")
        return await self._bulk(
            channel, "cancel_waiting" if state == "waiting" else "cancel_delayed"
        )

    async def _bulk(self, channel: str, operation: BulkOperation) -> int:
        """Steps of BULK_STEP jobs until a step does fewer: Redis is never blocked by one
        long call, and jobs added meanwhile may or may not be included."""
        scripts = self.scripts(channel)
        total = 0
        with redis_errors():
            while True:
                done = await scripts.bulk(operation, BULK_STEP, now_ms())
                total += done
                if done < BULK_STEP:
                    return total

    async def pause(self, channel: str) -> None:
        """Stop every process from starting jobs of the channel (running ones finish);
        jobs are still accepted. Lasts until `resume`, across restarts."""
        with redis_errors():
            await self.scripts(channel).pause(True, now_ms())

    async def resume(self, channel: str) -> None:
        """Let processes start the channel's jobs again (wakes them at once)."""
        with redis_errors():
            await self.scripts(channel).pause(False, now_ms())

    async def jobs_page(
        self,
        channel: str,
        state: JobState,
        *,
        cursor: str | None = None,
        limit: int = 50,
        where: JobFilter | None = None,
    ) -> JobPage:
        """A page of jobs by cursor, filtered (runtime.engine.browse): what the dashboard
        lists. Raises InvalidJobRequest for a malformed cursor or filter."""
        with redis_errors():
            return await jobs_page(
                self.redis,
                self._browse,
                self.keys(channel),
                state,
                cursor=cursor,
                limit=limit,
                where=where,
            )

    def events(
        self, channel: str, *, job_id: str | None = None, after: str | None = None
    ) -> AsyncGenerator[JobEvent, None]:
        """The channel's job events as they happen (one job's with `job_id`), after the
        event id `after` ("0": from the oldest kept; None: from now on). A consumer that
        falls behind the channel's cap gets a `gap` event saying how many it missed.
        Every iterator of this Client shares one Redis read per channel::

            async for event in client.events("email"):
                print(event.event, event.job_id, event.data)
        """
        position = EventPosition.parse(after) if after is not None else None
        if job_id is not None:
            check_job_id(job_id)
        return self.event_hub.subscribe(channel, job_id=job_id, after=position)

    async def job_events(self, channel: str, job_id: str) -> list[JobEvent]:
        """The events of one job still in the channel's event stream, oldest first."""
        check_job_id(job_id)
        return await self.event_hub.reader(channel).history(job_id)

    async def processes(self) -> list[ProcessInfo]:
        """The live `runtime serve` processes on this Redis and prefix
        (runtime.engine.processes), oldest first."""
        with redis_errors():
            return await live_processes(self.redis, self.prefix)


def _new_job(
    channel: str,
    payload: BaseModel,
    job_id: str | None,
    delay_ms: int | None,
    priority: int | None,
    timeout_ms: int | None,
    labels: Mapping[str, str] | None = None,
) -> NewJob:
    """A job to store, its options checked against runtime.engine.limits."""
    if job_id is None:
        job_id = uuid.uuid4().hex
    else:
        check_job_id(job_id)
    if delay_ms:
        check_delay(delay_ms)
    if priority is None:
        priority = DEFAULT_PRIORITY
    else:
        check_priority(priority)
    if timeout_ms is not None:
        check_timeout(timeout_ms)
    message = encode_job(channel, payload, job_id, timeout_ms, labels)
    return NewJob(job_id, message, delay_ms or 0, priority)


def _priority_range(priority: int) -> tuple[int, int]:
    """The waiting set's scores of one priority (see include/wait.lua)."""
    span = 2**44
    return priority * span, (priority + 1) * span - 1


def _refused(
    channel: str, job_id: str, state: str, action: str, allowed: tuple[str, ...]
) -> JobNotFound | JobStateConflict:
    if not state:
        return JobNotFound(channel, job_id)
    return JobStateConflict(channel, job_id, action=action, state=state, allowed=allowed)


class _Coalescer:
    """Single enqueues of one channel that arrive together share one script call.

    While a call is in flight, new jobs gather; they go in the next call as soon as it
    returns. Under concurrent HTTP or gRPC load this turns many round trips into few, at
    the cost of at most one in-flight call's wait; a lone enqueue goes out at once.
    """

    def __init__(self, scripts: Callable[[str], ChannelScripts]) -> None:
        self._scripts = scripts
        self._pending: dict[str, list[tuple[NewJob, asyncio.Future[bool]]]] = {}
        self._flushing: set[str] = set()
        self._tasks: set[asyncio.Task[None]] = set()

    async def enqueue(self, channel: str, job: NewJob) -> bool:
        """True when the job was created, False when its id existed already."""
        future: asyncio.Future[bool] = asyncio.get_running_loop().create_future()
        self._pending.setdefault(channel, []).append((job, future))
        if channel not in self._flushing:
            self._flushing.add(channel)
            task = asyncio.create_task(self._flush(channel))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)
        return await future

    async def _flush(self, channel: str) -> None:
        try:
            while batch := self._pending.pop(channel, []):
                try:
                    created = await self._scripts(channel).enqueue(
                        [job for job, _ in batch], now_ms()
                    )
                except Exception as error:
                    for _, future in batch:
                        if not future.done():
                            future.set_exception(error)
                    continue
                for (_, future), was_created in zip(batch, created, strict=True):
                    if not future.done():
                        future.set_result(was_created)
        finally:
            self._flushing.discard(channel)


def _task_id(data: bytes) -> str | None:
    try:
        job_id = json.loads(data).get("task_id")
    except (ValueError, AttributeError):
        return None
    return job_id if isinstance(job_id, str) else None
