"""Enqueue jobs into Redis: the producer side, shared by HTTP, gRPC and Python clients.

Jobs are taskiq messages (JSON) on the channel's stream, so any taskiq worker for the
channel's task can run them. A delayed job waits in a sorted set until a worker moves it.
"""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import Callable, Sequence
from typing import Any, Protocol, runtime_checkable

from pydantic import BaseModel
from redis.exceptions import ResponseError

from runtime.engine.clock import now_ms, text
from runtime.engine.connection import RedisClient, connect
from runtime.engine.jobs import ChannelCounts, JobInfo
from runtime.engine.keys import CONSUMER_GROUP, ChannelKeys
from runtime.engine.limits import check_delay, check_job_id
from runtime.engine.metrics import Metrics
from runtime.engine.redis_errors import redis_errors
from runtime.engine.scripts import ChannelScripts, NewJob, ScriptSet
from runtime.errors import EnqueueError, InvalidJobRequest, JobNotFound, JobStateConflict

__all__ = ["DEFAULT_PREFIX", "Client", "Enqueuer", "encode_job"]

DEFAULT_PREFIX = "channelkit"
# Waiting and active jobs are listed by reading the stream in order: a listing reads at
# most this deep (offset + limit), so a deep page cannot cost a scan of the whole backlog.
STREAM_LIST_DEPTH = 10_000


def encode_job(channel: str, payload: BaseModel, job_id: str) -> bytes:
    """The bytes a worker receives: a taskiq message (taskiq.message.TaskiqMessage as JSON)
    calling the channel's task. Written by hand: building the taskiq model first would
    validate and serialise the payload twice on the enqueue hot path."""
    body = payload.model_dump_json(by_alias=True, exclude_unset=True)
    return (
        f'{{"task_id":{json.dumps(job_id)},"task_name":"channelkit.{channel}",'
        f'"labels":{{}},"labels_types":null,"args":[],"kwargs":{{"payload":{body}}}}}'
    ).encode()


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
    ) -> str: ...

    async def enqueue_many(self, channel: str, payloads: Sequence[BaseModel]) -> list[str]: ...


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
        self._scripts: dict[str, ChannelScripts] = {}
        self._coalescer = _Coalescer(self.scripts)

    @classmethod
    def from_url(cls, url: str, *, prefix: str = DEFAULT_PREFIX, **options: Any) -> Client:
        """A REDIS_URL: one Redis (`redis://`, `rediss://`, `unix://`), a Redis Cluster
        (`redis+cluster://`) or a Sentinel-managed master (`redis+sentinel://`); see
        runtime.engine.connection for the forms. `options` are redis-py connection options."""
        return cls(connect(url, **options), prefix=prefix)

    def keys(self, channel: str) -> ChannelKeys:
        return ChannelKeys(self.prefix, channel)

    async def close(self) -> None:
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
    ) -> str:
        """Store one job; returns its id. An id that exists already is not enqueued again
        (idempotent enqueue, for as long as the job is kept): its id is returned.

        Raises InvalidJobRequest for a job id or delay out of bounds (runtime.engine.limits),
        EnqueueError when Redis does not take the job."""
        if job_id is None:
            job_id = uuid.uuid4().hex
        else:
            check_job_id(job_id)
        if delay_ms:
            check_delay(delay_ms)
        job = NewJob(job_id, encode_job(channel, payload, job_id), delay_ms or 0)
        with redis_errors(EnqueueError, f"job {job_id} of {channel!r} was not enqueued"):
            created = await self._coalescer.enqueue(channel, job)
        if self.metrics is not None and created:
            self.metrics.enqueued(channel, 1)
        return job_id

    async def enqueue_many(self, channel: str, payloads: Sequence[BaseModel]) -> list[str]:
        """Store several jobs in one round trip; returns their ids in order."""
        job_ids = [uuid.uuid4().hex for _ in payloads]
        jobs = [
            NewJob(job_id, encode_job(channel, payload, job_id))
            for job_id, payload in zip(job_ids, payloads, strict=True)
        ]
        with redis_errors(EnqueueError, f"{len(jobs)} job(s) of {channel!r} were not enqueued"):
            await self.scripts(channel).enqueue(jobs, now_ms())
        if self.metrics is not None:
            self.metrics.enqueued(channel, len(job_ids))
        return job_ids

    async def job(self, channel: str, job_id: str) -> JobInfo | None:
        with redis_errors():
            raw: dict[bytes, bytes] = await self.redis.hgetall(self.keys(channel).job(job_id))  # type: ignore[assignment]
        return JobInfo.from_hash(channel, job_id, raw) if raw else None

    async def counts(self, channel: str) -> ChannelCounts:
        return (await self.counts_many([channel]))[0]

    async def counts_many(self, channels: Sequence[str]) -> list[ChannelCounts]:
        """Jobs per state of each channel, in one pipeline (what /metrics reads)."""
        with redis_errors():
            async with self.redis.pipeline(transaction=False) as pipe:
                for channel in channels:
                    keys = self.keys(channel)
                    pipe.xlen(keys.stream)
                    pipe.xpending(keys.stream, CONSUMER_GROUP)
                    pipe.zcard(keys.delayed)
                    pipe.zcard(keys.completed)
                    pipe.zcard(keys.failed)
                    pipe.get(keys.limiter_total())  # starts granted in the current window
                    pipe.pttl(keys.limiter())
                # No consumer group yet (nothing ever consumed) makes XPENDING an error.
                results = await pipe.execute(raise_on_error=False)
        counts = []
        for index, channel in enumerate(channels):
            in_stream, pending, delayed, completed, failed, granted, ttl = results[
                index * 7 : index * 7 + 7
            ]
            active = int(pending["pending"]) if isinstance(pending, dict) else 0
            counts.append(
                ChannelCounts(
                    channel=channel,
                    waiting=max(0, int(in_stream) - active),
                    active=active,
                    delayed=int(delayed),
                    completed=int(completed),
                    failed=int(failed),
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
        if state in ("failed", "completed", "delayed"):
            index = {"failed": keys.failed, "completed": keys.completed, "delayed": keys.delayed}[
                state
            ]
            raw_ids: list[bytes] = await self.redis.zrevrange(index, offset, offset + limit - 1)  # type: ignore[assignment]
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
        """Waiting jobs are the entries after the group's last delivered one, active jobs
        its pending entries: only the page's entries are read in full."""
        try:
            groups: list[dict[str, Any]] = await self.redis.xinfo_groups(keys.stream)
        except ResponseError:  # no stream yet
            return []
        group = next((g for g in groups if text(g["name"]) == CONSUMER_GROUP), None)
        if state == "waiting":
            after = text(group["last-delivered-id"]) if group is not None else "0-0"
            entries: Any = await self.redis.xrange(
                keys.stream, min=f"({after}", count=offset + limit
            )
        else:
            if group is None:
                return []
            pending: Any = await self.redis.xpending_range(
                keys.stream, CONSUMER_GROUP, min="-", max="+", count=offset + limit
            )
            async with self.redis.pipeline(transaction=False) as pipe:
                for item in pending[offset : offset + limit]:
                    pipe.xrange(keys.stream, min=item["message_id"], max=item["message_id"])
                ranges: list[Any] = await pipe.execute()
            entries = [entry for found in ranges for entry in found]
            offset = 0
        return [
            job_id
            for _, fields in entries[offset : offset + limit]
            if (job_id := _task_id(fields.get(b"data", b"")))
        ]

    async def retry(self, channel: str, job_id: str) -> None:
        """Run a failed job again (its failures reset).

        Raises JobNotFound, or JobStateConflict when the job is not failed.
        """
        with redis_errors():
            done = await self.scripts(channel).retry_failed(job_id)
        if not done.done:
            raise _refused(channel, job_id, done.state, "retried", ("failed",))

    async def discard(self, channel: str, job_id: str) -> None:
        """Remove a failed, completed or delayed job.

        Raises JobNotFound, or JobStateConflict when the job is waiting or running.
        """
        with redis_errors():
            done = await self.scripts(channel).discard(job_id)
        if not done.done:
            allowed = ("failed", "completed", "delayed")
            raise _refused(channel, job_id, done.state, "discarded", allowed)


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
