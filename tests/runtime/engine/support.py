"""Helpers shared by the engine's unit tests: a channel declared in code, its jobs'
messages, taking jobs as a reader does (take.lua), readers of the Redis state the scripts
leave behind (job hashes, sorted sets, the marker, pending entries), a take-over by
another consumer, stopping readers asleep on the marker, and a channel's recorder,
runner, limiter and launcher wired together."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, replace
from typing import Any, Protocol, cast

from pydantic import Field
from redis.asyncio import Redis

from runtime.engine.channel import Backoff, Channel, Keep, Limiter, Retention, Retry, Stalled
from runtime.engine.client import encode_job
from runtime.engine.context import JobContext
from runtime.engine.jobs import JobError, JobInfo
from runtime.engine.keys import CONSUMER_GROUP, ChannelKeys
from runtime.engine.launcher import Launcher
from runtime.engine.limiter import RateLimiter
from runtime.engine.metrics import Metrics
from runtime.engine.model import Payload
from runtime.engine.recorder import OutcomeRecorder
from runtime.engine.runner import JobRunner
from runtime.engine.scripts import ChannelScripts, NewJob, RunNumbers, ScriptSet, StreamEntry
from runtime.engine.scripts import Retention as FinishRetention

CHANNEL = "jobs"


class Message(Payload):
    n: int
    tenant: str = "a"


class Mail(Payload):
    """A payload whose limiter key is renamed: the JSON property `from` is `sender`."""

    sender: str = Field(alias="from")


Handler = Callable[[Message, JobContext], Awaitable[Any]]


async def _nothing(payload: Message, context: JobContext) -> None:
    return None


def make_channel(process: Handler = _nothing, **changes: Any) -> Channel[Message, Any]:
    """A channel named CHANNEL with quick settings; `changes` replace any of them."""
    channel: Channel[Message, Any] = Channel(
        name=CHANNEL,
        description="",
        payload_model=Message,
        result_model=None,
        process=process,
        concurrency=4,
        limiter=None,
        stalled=Stalled(interval_ms=30_000, max_count=1),
        retry=Retry(attempts=1, backoff=Backoff(type="fixed", delay_ms=50)),
        keep=Keep(completed=Retention(None, None), failed=Retention(None, None)),
        batch_max=100,
    )
    return replace(channel, **changes)


def keyed(key: str, max_starts: int = 2) -> Limiter:
    return Limiter(max=max_starts, duration_ms=10_000, key=key)


def message(job_id: str, n: int = 0) -> bytes:
    """The bytes Client.enqueue stores for Message(n=n) under `job_id`."""
    return encode_job(CHANNEL, Message(n=n), job_id)


def job_id_in(data: bytes) -> str:
    task_id = json.loads(data)["task_id"]
    assert isinstance(task_id, str)
    return task_id


async def create_group(redis: Redis, keys: ChannelKeys) -> None:
    await redis.xgroup_create(keys.stream, CONSUMER_GROUP, id="0", mkstream=True)


async def read(
    redis: Redis, keys: ChannelKeys, consumer: str, count: int = 100
) -> list[StreamEntry]:
    """Take waiting jobs as `consumer`, as a worker's reader does (take.lua: they become
    pending entries for it, highest priority first)."""
    taken = await ChannelScripts(ScriptSet(redis), keys).take(consumer, now_ms(), count, 500)
    return taken.entries


@dataclass(slots=True)
class EntryClaim:
    """A read entry as start.lua's claim: the job id, its stream id and delivery count."""

    job_id: str
    stream_id: str
    delivery: int


def claim_of(entry: StreamEntry) -> EntryClaim:
    return EntryClaim(job_id_in(entry.message), entry.stream_id, entry.deliveries)


@dataclass(slots=True)
class HeldEntry(EntryClaim):
    """A read entry as requeue.lua's held job: its claim and its message."""

    message: bytes


def held_of(entry: StreamEntry) -> HeldEntry:
    return HeldEntry(job_id_in(entry.message), entry.stream_id, entry.deliveries, entry.message)


async def claim(
    redis: Redis, scripts: ChannelScripts, job_ids: list[str], consumer: str = "worker"
) -> dict[str, tuple[StreamEntry, RunNumbers]]:
    """Enqueue the jobs, read them as `consumer` and start them, as a worker does:
    job id -> (its stream entry, its run numbers). The consumer group must exist."""
    await scripts.enqueue(
        [NewJob(job_id, message(job_id, n)) for n, job_id in enumerate(job_ids)], now_ms()
    )
    entries = await read(redis, scripts.keys, consumer)
    by_id = {job_id_in(entry.message): entry for entry in entries}
    assert sorted(by_id) == sorted(job_ids)
    started = await scripts.start(
        consumer, [claim_of(by_id[job_id]) for job_id in job_ids], now_ms()
    )
    assert started.granted == len(job_ids)
    return {
        job_id: (by_id[job_id], numbers)
        for job_id, numbers in zip(job_ids, started.runs, strict=True)
    }


def now_ms() -> int:
    return int(time.time() * 1000)


async def job_hash(redis: Redis, keys: ChannelKeys, job_id: str) -> dict[str, str]:
    raw = cast("dict[bytes, bytes]", await redis.hgetall(keys.job(job_id)))
    return {name.decode(): value.decode() for name, value in raw.items()}


async def raw_hash(redis: Redis, keys: ChannelKeys, job_id: str) -> dict[bytes, bytes]:
    """HGETALL of a job, as JobInfo.from_hash reads it."""
    return cast("dict[bytes, bytes]", await redis.hgetall(keys.job(job_id)))


async def job_info(redis: Redis, keys: ChannelKeys, job_id: str) -> JobInfo:
    raw = await raw_hash(redis, keys, job_id)
    assert raw, f"no hash for job {job_id}"
    return JobInfo.from_hash(keys.channel, job_id, raw)


async def markers(redis: Redis, keys: ChannelKeys) -> dict[str, int]:
    """The channel's marker: '0' while jobs wait, 'd' the due ms of a delayed job."""
    raw = cast("list[tuple[bytes, float]]", await redis.zrange(keys.marker, 0, -1, withscores=True))
    return {member.decode(): int(score) for member, score in raw}


async def members(redis: Redis, key: str) -> list[str]:
    """A sorted set's members, lowest score first."""
    raw = cast("list[bytes]", await redis.zrange(key, 0, -1))
    return [member.decode() for member in raw]


async def pending(redis: Redis, keys: ChannelKeys) -> list[dict[str, Any]]:
    """XPENDING's detail rows: message_id, consumer, time_since_delivered, times_delivered."""
    rows: list[dict[str, Any]] = await redis.xpending_range(
        keys.stream, CONSUMER_GROUP, min="-", max="+", count=100
    )
    return rows


async def claims(redis: Redis, keys: ChannelKeys) -> dict[str, tuple[str, int]]:
    """Who holds each pending entry: stream id -> (consumer, delivery count)."""
    return {
        row["message_id"].decode(): (row["consumer"].decode(), row["times_delivered"])
        for row in await pending(redis, keys)
    }


async def reclaim_entries(scripts: ChannelScripts, consumer: str) -> list[StreamEntry]:
    """Take over every pending entry for `consumer` (reclaim.lua with no idle minimum)."""
    stalled = JobError(type="stalled", message="stalled", traceback="", attempt=0, at=0)
    reclaimed = await scripts.reclaim(
        consumer, min_idle_ms=0, count=100, max_stalled=10, now_ms=now_ms(), error=stalled
    )
    return reclaimed.entries


async def take_over(redis: Redis, keys: ChannelKeys, stream_id: str, consumer: str) -> None:
    """XCLAIM an entry for `consumer`, as a process that found it stalled would: the
    delivery count goes up by one and the previous holder's claim is gone."""
    await redis.xclaim(keys.stream, CONSUMER_GROUP, consumer, 0, [stream_id])


async def add(redis: Redis, keys: ChannelKeys, data: bytes) -> str:
    """XADD a message by hand (as a foreign producer would); returns its stream id."""
    sid = cast("bytes", await redis.xadd(keys.stream, {"data": data}))
    return sid.decode()


async def stream(redis: Redis, keys: ChannelKeys) -> list[StreamEntry]:
    raw: Any = await redis.xrange(keys.stream)
    return [StreamEntry(sid.decode(), bytes(fields[b"data"])) for sid, fields in raw]


async def eventually(
    condition: Callable[[], Awaitable[bool]], *, within: float = 10.0, what: str = ""
) -> None:
    """Poll `condition` until it holds; fail after `within` seconds (a generous bound:
    the tests assert what happens, not how fast)."""
    deadline = time.monotonic() + within
    while not await condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"not reached within {within} s: {what}")
        await asyncio.sleep(0.02)


async def stop_awake(redis: Redis, keys: ChannelKeys, *stops: Awaitable[object]) -> None:
    """Run the stops of readers that may sleep on the channel's marker (for a minute under
    the `no_idle_wake` fixture): a stop waits for the step a reader is in, so wake them
    as an enqueue would (one marker wakes one reader) until every stop is done."""
    tasks = [asyncio.ensure_future(stop) for stop in stops]
    async with asyncio.timeout(10):
        while tasks:
            await redis.zadd(keys.marker, {"0": 0})
            _, still = await asyncio.wait(tasks, timeout=0.05)
            tasks = list(still)


async def state_of(redis: Redis, keys: ChannelKeys, job_id: str) -> str:
    return (await job_hash(redis, keys, job_id)).get("state", "")


def counted(metrics: Metrics, name: str) -> float:
    """A channel counter's value (`channelkit_jobs_completed_total` and the like)."""
    value = metrics.registry.get_sample_value(name, {"channel": CHANNEL})
    return 0.0 if value is None else value


KEEP_ALL = FinishRetention(-1, 0, -1, 0)  # what finish.lua keeps: everything


@dataclass
class Parts:
    """A channel's recorder, runner, limiter and launcher, wired as the consumer wires
    them; only the recorder runs a task (started here, stopped by `stop`)."""

    metrics: Metrics
    recorder: OutcomeRecorder
    runner: JobRunner
    limiter: RateLimiter
    launcher: Launcher

    async def stop(self) -> None:
        await self.runner.wait(5)
        await self.recorder.stop()


def build_parts(scripts: ChannelScripts, channel: Channel[Any, Any], consumer: str) -> Parts:
    """The parts for `channel`, recording as `consumer`; the recorder's task is started."""
    metrics = Metrics()
    channel_metrics = metrics.channel(channel.name)
    runner: JobRunner
    recorder = OutcomeRecorder(
        scripts,
        channel=channel.name,
        consumer=consumer,
        keep=KEEP_ALL,
        metrics=channel_metrics,
        running=lambda: len(runner.running),
    )
    runner = JobRunner(channel, recorder, channel_metrics)
    limiter = RateLimiter(channel, scripts)
    launcher = Launcher(
        channel,
        scripts,
        consumer=consumer,
        limiter=limiter,
        runner=runner,
        recorder=recorder,
        metrics=channel_metrics,
    )
    recorder.start()
    return Parts(metrics, recorder, runner, limiter, launcher)


class PartsFor(Protocol):
    """The `parts_for` fixture: parts for a channel, recording as `consumer` (the name
    the test claims its entries under)."""

    def __call__(self, channel: Channel[Any, Any], consumer: str = "worker") -> Parts: ...
