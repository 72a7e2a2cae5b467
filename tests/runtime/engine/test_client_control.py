"""What an operator and a producer do to jobs and channels, against a real Redis:
priorities (start order, FIFO within one, per-item options of a batch), pause and
resume, cancel (waiting, delayed, taken but not started, running), the bulk operations
and the channel counts that show all of it.

Waits have generous deadlines; the assertions are about order and state, not speed."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any, cast

import pytest
from redis.asyncio import Redis
from redis.asyncio.client import PubSub

from runtime.engine.channel import Backoff, Channel, Retry
from runtime.engine.client import BULK_STEP, CancelResult, Client, JobRequest
from runtime.engine.consumer import ChannelConsumer
from runtime.engine.context import JobContext
from runtime.engine.jobs import JobError
from runtime.engine.keys import ChannelKeys, cancel_channel
from runtime.engine.limits import DEFAULT_PRIORITY
from runtime.engine.metrics import Metrics
from runtime.engine.outcomes import Deferred, Failed, Retrying
from runtime.engine.scripts import PAUSED, Cancellation, ChannelScripts, NewJob, Retention
from runtime.engine.workers import Workers
from runtime.errors import InvalidJobRequest
from tests.runtime.engine.support import (
    CHANNEL,
    KEEP_ALL,
    Message,
    add,
    claim,
    claim_of,
    claims,
    counted,
    create_group,
    eventually,
    job_hash,
    job_id_in,
    job_info,
    make_channel,
    markers,
    members,
    message,
    now_ms,
    pending,
    read,
    reclaim_entries,
    state_of,
    stop_awake,
    stream,
)

ERROR = JobError(type="builtins.ValueError", message="boom", traceback="", attempt=1, at=1)


async def _is(redis: Redis, keys: ChannelKeys, job_id: str, state: str) -> bool:
    return await state_of(redis, keys, job_id) == state


class Consumers:
    """ChannelConsumers started by a test, stopped at its end."""

    def __init__(self, client: Client) -> None:
        self.client = client
        self.started: list[ChannelConsumer] = []

    async def start(self, channel: Channel[Message, Any], name: str = "c1") -> ChannelConsumer:
        consumer = ChannelConsumer(
            channel, self.client, consumer=name, metrics=Metrics().channel(CHANNEL)
        )
        await consumer.start()
        self.started.append(consumer)
        return consumer


@pytest.fixture
async def consumers(client: Client, keys: ChannelKeys, redis: Redis) -> AsyncIterator[Consumers]:
    started = Consumers(client)
    yield started
    await stop_awake(redis, keys, *(consumer.stop(5) for consumer in started.started))


# priorities


async def test_a_high_priority_job_enqueued_behind_a_thousand_low_ones_starts_next(
    redis: Redis, keys: ChannelKeys, client: Client, consumers: Consumers
) -> None:
    started: list[str] = []
    first_running = asyncio.Event()
    release = asyncio.Event()

    async def handler(payload: Message, context: JobContext) -> None:
        started.append(context.job_id)
        if len(started) == 1:
            first_running.set()
            await release.wait()

    lows = [f"low{n}" for n in range(1000)]
    await client.enqueue_many(
        CHANNEL,
        [JobRequest(Message(n=n), job_id=job_id) for n, job_id in enumerate(lows)],
        priority=9,
    )
    await consumers.start(make_channel(handler, concurrency=1))
    async with asyncio.timeout(10):
        await first_running.wait()
    assert (await client.counts(CHANNEL)).waiting_by_priority == {9: 999}

    await client.enqueue(CHANNEL, Message(n=-1), job_id="high", priority=1)
    release.set()
    await eventually(lambda: _is(redis, keys, "high", "completed"), what="the high job ran")
    await client.pause(CHANNEL)  # the rest need not run

    assert started[:2] == ["low0", "high"]
    # the low ones start in the order they were enqueued
    assert started[2:] == lows[1 : len(started) - 1]


async def test_a_due_delayed_job_keeps_its_priority(
    redis: Redis, keys: ChannelKeys, scripts: ChannelScripts
) -> None:
    await create_group(redis, keys)
    now = now_ms()
    await scripts.enqueue(
        [NewJob(f"low{n}", message(f"low{n}"), priority=8) for n in range(3)], now
    )
    await scripts.enqueue([NewJob("retried", message("retried"), delay_ms=50, priority=2)], now)

    taken = await scripts.take("w", now + 50, 2, 100)

    assert [job_id_in(entry.message) for entry in taken.entries] == ["retried", "low0"]


async def test_enqueue_many_items_carry_their_own_id_delay_priority_and_timeout(
    redis: Redis, keys: ChannelKeys, client: Client
) -> None:
    ids = await client.enqueue_many(
        CHANNEL,
        [
            JobRequest(Message(n=1), job_id="own", priority=2, timeout_ms=1500),
            JobRequest(Message(n=2), delay_ms=60_000),
            Message(n=3),
        ],
        priority=7,
    )

    assert ids[0] == "own"
    own, later, plain = [await job_info(redis, keys, job_id) for job_id in ids]
    assert (own.state, own.priority) == ("waiting", 2)
    assert (later.state, later.priority) == ("delayed", 7)
    assert (plain.state, plain.priority) == ("waiting", 7)
    labels = json.loads((await job_hash(redis, keys, "own"))["data"])["labels"]
    # (a `traceparent` rides along too when a test before this one set a tracer provider)
    assert labels["timeout_ms"] == 1500
    assert "timeout_ms" not in json.loads((await job_hash(redis, keys, ids[2]))["data"])["labels"]
    assert await members(redis, keys.waiting) == ["own", ids[2]]

    # an item's own id makes it idempotent: enqueued again, nothing changes
    before = await job_hash(redis, keys, "own")
    again = await client.enqueue_many(CHANNEL, [JobRequest(Message(n=9), job_id="own")])
    assert again == ["own"]
    assert await job_hash(redis, keys, "own") == before


async def test_enqueue_many_refuses_a_bad_item_by_its_index_and_stores_nothing(
    redis: Redis, keys: ChannelKeys, client: Client
) -> None:
    with pytest.raises(InvalidJobRequest, match=r"^items\[1\]\.priority: 1 \(starts first\)"):
        await client.enqueue_many(
            CHANNEL, [JobRequest(Message(n=1), job_id="ok"), JobRequest(Message(n=2), priority=11)]
        )
    with pytest.raises(InvalidJobRequest, match=r"^items\[0\]\.timeout_ms: "):
        await client.enqueue_many(CHANNEL, [JobRequest(Message(n=1), timeout_ms=0)])
    with pytest.raises(InvalidJobRequest, match=r"^priority: "):
        await client.enqueue(CHANNEL, Message(n=1), priority=0)

    assert await redis.exists(keys.job("ok"), keys.waiting) == 0


# pause and resume


@pytest.mark.usefixtures("no_idle_wake")
async def test_a_paused_channel_takes_nothing_lets_running_jobs_finish_and_resumes_at_once(
    redis: Redis, keys: ChannelKeys, client: Client, consumers: Consumers
) -> None:
    entered = asyncio.Event()
    release = asyncio.Event()

    async def handler(payload: Message, context: JobContext) -> None:
        if payload.n == 0:
            entered.set()
            await release.wait()

    channel = make_channel(handler)
    consumer = await consumers.start(channel)
    await client.enqueue(CHANNEL, Message(n=0), job_id="running")
    async with asyncio.timeout(10):
        await entered.wait()

    await client.pause(CHANNEL)
    await client.enqueue(CHANNEL, Message(n=1), job_id="accepted")  # still accepted
    release.set()
    await eventually(lambda: _is(redis, keys, "running", "completed"), what="the job finished")

    async def reader_paused() -> bool:
        return consumer.reader.paused

    await eventually(reader_paused, what="the reader saw the pause")
    counts = await client.counts(CHANNEL)
    assert (counts.paused, counts.waiting, counts.active) == (True, 1, 0)
    assert await members(redis, keys.waiting) == ["accepted"]
    assert await pending(redis, keys) == []

    # a pause outlives the process: a consumer started now takes nothing either
    second = await consumers.start(channel, name="c2")

    async def second_paused() -> bool:
        return second.reader.paused

    await eventually(second_paused, what="the new consumer saw the pause")
    assert await state_of(redis, keys, "accepted") == "waiting"

    # the readers sleep on the marker (a minute): the resume wakes them
    await client.resume(CHANNEL)
    await eventually(lambda: _is(redis, keys, "accepted", "completed"), what="the job ran")
    assert not (await client.counts(CHANNEL)).paused


@pytest.mark.usefixtures("group")
async def test_reclaim_takes_nothing_over_while_the_channel_is_paused(
    redis: Redis, keys: ChannelKeys, scripts: ChannelScripts, client: Client
) -> None:
    jobs = await claim(redis, scripts, ["j1"], consumer="dead")
    entry, _ = jobs["j1"]
    await client.pause(CHANNEL)

    assert await reclaim_entries(scripts, "alive") == []
    assert await claims(redis, keys) == {entry.stream_id: ("dead", 1)}

    await client.resume(CHANNEL)
    assert [e.stream_id for e in await reclaim_entries(scripts, "alive")] == [entry.stream_id]


# cancel


async def test_cancel_of_a_waiting_job_ends_it_at_once(
    redis: Redis, keys: ChannelKeys, client: Client, scripts: ChannelScripts
) -> None:
    await create_group(redis, keys)
    job_id = await client.enqueue(CHANNEL, Message(n=1))

    assert await client.cancel(CHANNEL, job_id) == CancelResult(cancelled=True, state="waiting")

    info = await job_info(redis, keys, job_id)
    assert (info.state, info.attempts, info.cancel_requested) == ("cancelled", 0, False)
    assert info.finished_at is not None
    assert await redis.zcard(keys.waiting) == 0
    assert await members(redis, keys.cancelled) == [job_id]
    assert (await scripts.take("w", now_ms(), 10, 100)).entries == []
    assert (await client.counts(CHANNEL)).cancelled == 1


async def test_cancel_of_a_delayed_job_ends_it_at_once(
    redis: Redis, keys: ChannelKeys, client: Client
) -> None:
    job_id = await client.enqueue(CHANNEL, Message(n=1), delay_ms=60_000)

    assert await client.cancel(CHANNEL, job_id) == CancelResult(cancelled=True, state="delayed")

    stored = await job_hash(redis, keys, job_id)
    assert stored["state"] == "cancelled"
    assert "due_at" not in stored
    assert await redis.zcard(keys.delayed) == 0
    assert await members(redis, keys.cancelled) == [job_id]


@pytest.fixture
async def cancellations(redis: Redis, key_prefix: str) -> AsyncIterator[PubSub]:
    """A subscription to the prefix's cancellation channel, as every worker has."""
    pubsub = redis.pubsub(ignore_subscribe_messages=True)
    await pubsub.subscribe(cancel_channel(key_prefix))
    yield pubsub
    await pubsub.aclose()  # type: ignore[no-untyped-call]


async def published(pubsub: PubSub) -> str:
    async with asyncio.timeout(10):
        while True:
            found = await pubsub.get_message(ignore_subscribe_messages=True, timeout=1.0)
            if found is not None:
                return cast(bytes, found["data"]).decode()


@pytest.mark.usefixtures("group")
async def test_a_job_cancelled_after_it_was_taken_is_never_started(
    redis: Redis, keys: ChannelKeys, scripts: ChannelScripts, client: Client, cancellations: PubSub
) -> None:
    await scripts.enqueue([NewJob("j1", message("j1")), NewJob("j2", message("j2"))], now_ms())
    j1, j2 = await read(redis, keys, "worker")  # taken, about to start

    assert await client.cancel(CHANNEL, "j1") == CancelResult(cancelled=False, state="waiting")
    assert await published(cancellations) == f"{CHANNEL}\nj1"
    assert (await job_info(redis, keys, "j1")).cancel_requested

    started = await scripts.start("worker", [claim_of(j1), claim_of(j2)], now_ms())

    assert (started.cancelled, started.granted, started.dropped) == ([0], 1, [])
    stored = await job_hash(redis, keys, "j1")
    assert (stored["state"], stored["attempts"]) == ("cancelled", "0")
    assert stored["data"] == j1.message.decode()  # kept, so that it can be retried
    assert "cancel" not in stored
    assert await members(redis, keys.cancelled) == ["j1"]
    assert await claims(redis, keys) == {j2.stream_id: ("worker", 1)}
    assert [entry.stream_id for entry in await stream(redis, keys)] == [j2.stream_id]
    assert await state_of(redis, keys, "j2") == "active"


@pytest.mark.usefixtures("group")
@pytest.mark.parametrize("kind", ["retry", "defer"])
async def test_a_retry_or_deferral_of_a_job_whose_cancel_was_asked_ends_it_cancelled(
    redis: Redis, keys: ChannelKeys, scripts: ChannelScripts, client: Client, kind: str
) -> None:
    entry, _ = (await claim(redis, scripts, ["j1"]))["j1"]
    assert await client.cancel(CHANNEL, "j1") == CancelResult(cancelled=False, state="active")
    later = now_ms() + 60_000
    outcome = (
        Retrying(entry.stream_id, 1, "j1", ERROR, later, entry.message)
        if kind == "retry"
        else Deferred(entry.stream_id, 1, "j1", later, entry.message, "channel")
    )

    assert await scripts.finish("worker", [outcome], now_ms(), KEEP_ALL) == []

    info = await job_info(redis, keys, "j1")
    assert (info.state, info.failures, info.cancel_requested) == ("cancelled", 0, False)
    assert info.errors == ([ERROR] if kind == "retry" else [])
    assert await members(redis, keys.cancelled) == ["j1"]
    assert await redis.zcard(keys.delayed) == 0
    assert await pending(redis, keys) == []


@asynccontextmanager
async def serving(
    client: Client, channel: Channel[Message, Any], metrics: Metrics
) -> AsyncIterator[Workers]:
    """The channel's Workers, as `runtime serve` runs them: its consumer and the listener
    of cancellations (subscribed before this yields)."""
    workers = Workers([channel], client, shutdown_timeout=5, metrics=metrics, consumer="w1")
    await workers.start()
    try:
        async with asyncio.timeout(10):
            await workers.cancellations.subscribed.wait()
        yield workers
    finally:
        assert await workers.stop() is True


async def test_cancel_of_a_running_job_cancels_its_handler_and_ends_it_cancelled(
    redis: Redis, keys: ChannelKeys, client: Client
) -> None:
    entered = asyncio.Event()
    seen: list[str] = []

    async def hang(payload: Message, context: JobContext) -> None:
        entered.set()
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            seen.append(context.job_id)
            raise

    retry = Retry(attempts=3, backoff=Backoff(type="fixed", delay_ms=10))
    metrics = Metrics()
    async with serving(client, make_channel(hang, retry=retry), metrics) as workers:
        job_id = await client.enqueue(CHANNEL, Message(n=1))
        async with asyncio.timeout(10):
            await entered.wait()
        # what the listener calls for every cancellation: only a job running here stops
        assert not workers.cancel(CHANNEL, "not-running-here")
        assert not workers.cancel("another-channel", job_id)

        assert await client.cancel(CHANNEL, job_id) == CancelResult(cancelled=False, state="active")
        await eventually(lambda: _is(redis, keys, job_id, "cancelled"), what="the job cancelled")

    assert seen == [job_id]  # asyncio.CancelledError reached the handler
    info = await job_info(redis, keys, job_id)
    assert (info.attempts, info.failures, info.error, info.cancel_requested) == (1, 0, None, False)
    assert await members(redis, keys.cancelled) == [job_id]
    assert await redis.zcard(keys.delayed) == 0  # not retried
    assert await redis.zcard(keys.failed) == 0
    assert await pending(redis, keys) == []
    assert (await client.counts(CHANNEL)).cancelled == 1
    assert counted(metrics, "channelkit_jobs_cancelled_total") == 1


async def test_a_handler_that_swallows_its_cancellation_completes(
    redis: Redis, keys: ChannelKeys, client: Client
) -> None:
    entered = asyncio.Event()

    async def stubborn(payload: Message, context: JobContext) -> str:
        entered.set()
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            return "finished anyway"
        return "never"

    async with serving(client, make_channel(stubborn), Metrics()):
        job_id = await client.enqueue(CHANNEL, Message(n=1))
        async with asyncio.timeout(10):
            await entered.wait()
        assert not (await job_info(redis, keys, job_id)).cancel_requested

        await client.cancel(CHANNEL, job_id)
        await eventually(lambda: _is(redis, keys, job_id, "completed"), what="the job ended")

    info = await job_info(redis, keys, job_id)
    assert (info.result, info.cancel_requested) == ("finished anyway", False)
    assert await members(redis, keys.completed) == [job_id]
    assert await redis.zcard(keys.cancelled) == 0


async def test_retention_trims_cancelled_jobs_with_the_failed_settings(
    redis: Redis, keys: ChannelKeys, scripts: ChannelScripts, client: Client
) -> None:
    ids = await client.enqueue_many(CHANNEL, [Message(n=n) for n in range(3)])
    for offset, job_id in enumerate(ids):
        await scripts.cancel(job_id, now_ms() - 10_000 + offset)

    await scripts.finish("worker", [], now_ms(), Retention(-1, 0, 1, 0))

    assert await members(redis, keys.cancelled) == [ids[2]]
    assert await redis.exists(keys.job(ids[0]), keys.job(ids[1])) == 0


# bulk operations: more jobs than one step changes, so that the loop runs

MANY = BULK_STEP + 205


async def fail_every_waiting_job(redis: Redis, scripts: ChannelScripts) -> list[str]:
    """Take, start and fail every waiting job, as a worker would; returns their ids."""
    entries = (await scripts.take("worker", now_ms(), MANY, 100)).entries
    started = await scripts.start("worker", [claim_of(entry) for entry in entries], now_ms())
    assert started.granted == len(entries)
    failed = [
        Failed(entry.stream_id, 1, job_id_in(entry.message), ERROR, entry.message)
        for entry in entries
    ]
    assert await scripts.finish("worker", failed, now_ms(), KEEP_ALL) == []
    return [outcome.job_id for outcome in failed]


async def test_retry_all_failed_and_discard_all_failed_count_what_they_did(
    redis: Redis, keys: ChannelKeys, scripts: ChannelScripts, client: Client
) -> None:
    await create_group(redis, keys)
    await client.enqueue_many(CHANNEL, [Message(n=n) for n in range(MANY)], priority=3)
    ids = await fail_every_waiting_job(redis, scripts)
    assert len(ids) == MANY
    assert (await client.counts(CHANNEL)).failed == MANY
    await redis.delete(keys.marker)

    assert await client.retry_all_failed(CHANNEL) == MANY

    counts = await client.counts(CHANNEL)
    assert (counts.failed, counts.waiting, counts.waiting_by_priority) == (0, MANY, {3: MANY})
    assert await markers(redis, keys) == {"0": 0}
    stored = await job_hash(redis, keys, ids[-1])
    assert (stored["state"], stored["failures"]) == ("waiting", "0")
    assert await client.retry_all_failed(CHANNEL) == 0

    assert len(await fail_every_waiting_job(redis, scripts)) == MANY
    assert await client.discard_all_failed(CHANNEL) == MANY

    assert (await client.counts(CHANNEL)).failed == 0
    assert await redis.exists(*(keys.job(job_id) for job_id in ids)) == 0


async def test_cancel_all_cancels_every_waiting_or_delayed_job(
    redis: Redis, keys: ChannelKeys, client: Client
) -> None:
    await client.enqueue_many(CHANNEL, [Message(n=n) for n in range(MANY)])
    delayed = await client.enqueue_many(
        CHANNEL, [JobRequest(Message(n=n), delay_ms=60_000) for n in range(3)]
    )

    assert await client.cancel_all(CHANNEL) == MANY

    counts = await client.counts(CHANNEL)
    assert (counts.waiting, counts.delayed, counts.cancelled) == (0, 3, MANY)
    assert await client.cancel_all(CHANNEL, "delayed") == 3
    counts = await client.counts(CHANNEL)
    assert (counts.delayed, counts.cancelled) == (0, MANY + 3)
    assert [await state_of(redis, keys, job_id) for job_id in delayed] == ["cancelled"] * 3
    assert await client.cancel_all(CHANNEL) == 0


# counts


async def test_counts_show_priorities_pause_back_off_and_cancelled_jobs(
    redis: Redis, keys: ChannelKeys, client: Client, scripts: ChannelScripts
) -> None:
    await create_group(redis, keys)
    for priority, how_many in ((1, 2), (DEFAULT_PRIORITY, 1), (10, 3)):
        await client.enqueue_many(
            CHANNEL, [Message(n=n) for n in range(how_many)], priority=priority
        )
    await add(redis, keys, message("foreign"))  # a taskiq producer's job: default priority
    cancelled = await client.enqueue(CHANNEL, Message(n=0), delay_ms=60_000)
    await client.cancel(CHANNEL, cancelled)

    counts = await client.counts(CHANNEL)
    assert counts.waiting == 7
    assert counts.waiting_by_priority == {1: 2, DEFAULT_PRIORITY: 2, 10: 3}
    assert (counts.cancelled, counts.delayed, counts.paused, counts.held_back_ms) == (
        1,
        0,
        False,
        0,
    )

    await client.pause(CHANNEL)
    await redis.set(keys.backoff(), 1, px=60_000)  # what a RetryAfter of scope channel sets
    counts = await client.counts(CHANNEL)
    assert counts.paused
    assert 0 < counts.held_back_ms <= 60_000
    taken = await scripts.take("w", now_ms(), 10, 100)
    assert (taken.entries, taken.hold) == ([], PAUSED)

    await client.resume(CHANNEL)
    assert not (await client.counts(CHANNEL)).paused


async def test_cancel_refuses_a_cancelled_job(client: Client) -> None:
    job_id = await client.enqueue(CHANNEL, Message(n=0))
    assert (await client.cancel(CHANNEL, job_id)).cancelled
    found = await client.scripts(CHANNEL).cancel(job_id, now_ms())
    assert found == Cancellation(0, "cancelled")
