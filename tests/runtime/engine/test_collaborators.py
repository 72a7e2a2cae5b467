"""The consumer's collaborators, each started and stopped on its own against a real
Redis: OutcomeRecorder, JobRunner, Heartbeat, Reclaimer, RateLimiter, JobReader with
Launcher (due delayed jobs and the marker that wakes it included), and ChannelConsumer
composing them all.

Waits have generous deadlines; the assertions are about order and state, not speed."""

from __future__ import annotations

import asyncio
import logging
from dataclasses import replace

import pytest
from redis.asyncio import Redis

from runtime.engine.channel import Limiter, Retry, Stalled
from runtime.engine.client import Client
from runtime.engine.consumer import ChannelConsumer
from runtime.engine.context import JobContext
from runtime.engine.heartbeat import Heartbeat
from runtime.engine.jobs import JobError
from runtime.engine.keys import ChannelKeys
from runtime.engine.limiter import RateLimiter
from runtime.engine.metrics import Metrics
from runtime.engine.outcomes import Completed, Failed, Retrying
from runtime.engine.reader import JobReader
from runtime.engine.reclaimer import Reclaimer
from runtime.engine.recorder import OutcomeRecorder
from runtime.engine.runner import ClaimedJob
from runtime.engine.scripts import ChannelScripts, NewJob, Retention, RunNumbers, StreamEntry
from runtime.errors import PermanentError
from tests.runtime.engine.support import (
    CHANNEL,
    KEEP_ALL,
    Mail,
    Message,
    Parts,
    PartsFor,
    add,
    claim,
    claim_of,
    counted,
    eventually,
    job_hash,
    job_id_in,
    job_info,
    keyed,
    make_channel,
    markers,
    members,
    message,
    now_ms,
    pending,
    read,
    state_of,
    stop_awake,
    stream,
)


def claimed(entry: StreamEntry, n: int = 0) -> ClaimedJob:
    return ClaimedJob(
        entry.stream_id,
        entry.deliveries,
        entry.message,
        job_id_in(entry.message),
        Message(n=n),
        int(entry.stream_id.split("-")[0]),
    )


# OutcomeRecorder


def a_recorder(
    scripts: ChannelScripts, metrics: Metrics, running: int = 0, consumer: str = "worker"
) -> OutcomeRecorder:
    return OutcomeRecorder(
        scripts,
        channel=CHANNEL,
        consumer=consumer,
        keep=KEEP_ALL,
        metrics=metrics.channel(CHANNEL),
        running=lambda: running,
    )


@pytest.mark.usefixtures("group")
async def test_recorder_writes_outcomes_and_counts_them(
    redis: Redis, keys: ChannelKeys, scripts: ChannelScripts
) -> None:
    jobs = await claim(redis, scripts, ["a", "b", "c"])
    (a, _), (b, numbers), (c, _) = jobs["a"], jobs["b"], jobs["c"]
    metrics = Metrics()
    recorder = a_recorder(scripts, metrics, running=2)
    recorder.start()
    try:
        error = RuntimeError("provider timed out")
        recorder.record(Completed(a.stream_id, 1, "a", '"ok"'))
        recorder.record(
            Retrying(
                b.stream_id,
                b.deliveries,
                "b",
                JobError.from_exception(error, numbers.attempt),
                now_ms() + 60_000,
                b.message,
            )
        )
        recorder.record(Failed(c.stream_id, 1, "c", JobError.from_exception(error, 1), c.message))

        async def all_counted() -> bool:
            kinds = ("completed", "retried", "failed")
            return all(counted(metrics, f"channelkit_jobs_{kind}_total") == 1 for kind in kinds)

        await eventually(all_counted, what="three outcomes counted")
    finally:
        await recorder.stop()

    assert recorder.pending == 0
    assert [await state_of(redis, keys, job_id) for job_id in "abc"] == [
        "completed",
        "delayed",
        "failed",
    ]
    assert (await job_info(redis, keys, "a")).result == "ok"
    assert await pending(redis, keys) == []
    assert metrics.registry.get_sample_value("channelkit_jobs_running", {"channel": CHANNEL}) == 2


@pytest.mark.usefixtures("group")
async def test_recorder_stop_writes_what_is_left(
    redis: Redis, keys: ChannelKeys, scripts: ChannelScripts
) -> None:
    jobs = await claim(redis, scripts, ["a", "b"])
    metrics = Metrics()
    recorder = a_recorder(scripts, metrics)
    recorder.start()
    for job_id, (entry, _) in jobs.items():
        recorder.record(Completed(entry.stream_id, 1, job_id, ""))
    assert recorder.pending == 2  # nothing written yet: the task has not run

    await recorder.stop()

    assert recorder.pending == 0
    assert await members(redis, keys.completed) == sorted(jobs)
    assert await pending(redis, keys) == []
    assert counted(metrics, "channelkit_jobs_completed_total") == 2


@pytest.mark.usefixtures("group")
async def test_recorder_abandon_drops_what_is_not_written(
    redis: Redis, keys: ChannelKeys, scripts: ChannelScripts
) -> None:
    jobs = await claim(redis, scripts, ["a"])
    entry, _ = jobs["a"]
    metrics = Metrics()
    recorder = a_recorder(scripts, metrics)
    recorder.start()
    recorder.record(Completed(entry.stream_id, 1, "a", ""))

    recorder.abandon()
    await recorder.stop()

    assert recorder.pending == 0
    assert await state_of(redis, keys, "a") == "active"
    assert [row["message_id"].decode() for row in await pending(redis, keys)] == [entry.stream_id]
    assert await redis.zcard(keys.completed) == 0
    assert counted(metrics, "channelkit_jobs_completed_total") == 0


@pytest.mark.usefixtures("group")
async def test_recorder_trim_applies_retention_by_age_with_nothing_to_record(
    redis: Redis, keys: ChannelKeys, scripts: ChannelScripts
) -> None:
    jobs = await claim(redis, scripts, ["old"])
    old = Completed(jobs["old"][0].stream_id, 1, "old", "")
    assert await scripts.finish("worker", [old], now_ms() - 10_000, KEEP_ALL) == []
    recorder = OutcomeRecorder(
        scripts,
        channel=CHANNEL,
        consumer="worker",
        keep=Retention(-1, 5000, -1, 0),
        metrics=Metrics().channel(CHANNEL),
        running=lambda: 0,
    )

    await recorder.trim()

    assert await redis.zcard(keys.completed) == 0
    assert await redis.exists(keys.job("old")) == 0


# JobRunner


@pytest.mark.usefixtures("group")
async def test_runner_records_completed_when_the_handler_returns(
    redis: Redis, keys: ChannelKeys, scripts: ChannelScripts, parts_for: PartsFor
) -> None:
    contexts: list[JobContext] = []

    async def double(payload: Message, context: JobContext) -> dict[str, int]:
        contexts.append(context)
        return {"n": payload.n * 2}

    parts = parts_for(make_channel(double))
    jobs = await claim(redis, scripts, ["j1"])
    entry, numbers = jobs["j1"]

    parts.runner.run(claimed(entry, n=3), numbers)
    assert await parts.runner.wait(10) is True
    await parts.recorder.stop()

    info = await job_info(redis, keys, "j1")
    assert (info.state, info.result, info.attempts) == ("completed", {"n": 6}, 1)
    assert [(c.job_id, c.channel, c.attempt) for c in contexts] == [("j1", CHANNEL, 1)]
    assert parts.runner.running == {}
    assert await pending(redis, keys) == []
    assert counted(parts.metrics, "channelkit_jobs_completed_total") == 1
    assert counted(parts.metrics, "channelkit_job_run_seconds_count") == 1


@pytest.mark.usefixtures("group")
async def test_runner_retries_while_attempts_are_left_then_fails(
    redis: Redis, keys: ChannelKeys, scripts: ChannelScripts, parts_for: PartsFor
) -> None:
    async def broken(payload: Message, context: JobContext) -> None:
        raise RuntimeError(f"attempt {context.attempt} broke")

    channel = make_channel(broken)
    channel = replace(channel, retry=Retry(attempts=2, backoff=channel.retry.backoff))
    parts = parts_for(channel)
    jobs = await claim(redis, scripts, ["j1"])
    entry, numbers = jobs["j1"]

    parts.runner.run(claimed(entry), numbers)
    await parts.runner.wait(10)
    await eventually(lambda: _is(redis, keys, "j1", "delayed"), what="the retry recorded")
    first = await job_info(redis, keys, "j1")
    assert first.failures == 1
    assert first.error is not None
    assert (first.error.type, first.error.message, first.error.attempt) == (
        "builtins.RuntimeError",
        "attempt 1 broke",
        1,
    )
    assert await redis.zscore(keys.delayed, "j1") is not None
    assert await pending(redis, keys) == []

    # the retry comes due: taken (take.lua moves it first), started again, fails for good
    [again] = (await scripts.take("worker", now_ms() + 60_000, 10, 10)).entries
    started = await scripts.start("worker", [claim_of(again)], now_ms())
    assert started.runs == [RunNumbers(2, 1)]
    parts.runner.run(claimed(again), started.runs[0])
    await parts.runner.wait(10)
    await parts.recorder.stop()

    final = await job_info(redis, keys, "j1")
    assert (final.state, final.attempts, final.failures) == ("failed", 2, 2)
    assert [error.attempt for error in final.errors] == [1, 2]
    assert await members(redis, keys.failed) == ["j1"]
    assert counted(parts.metrics, "channelkit_jobs_retried_total") == 1
    assert counted(parts.metrics, "channelkit_jobs_failed_total") == 1


async def _is(redis: Redis, keys: ChannelKeys, job_id: str, state: str) -> bool:
    return await state_of(redis, keys, job_id) == state


@pytest.mark.usefixtures("group")
async def test_runner_fails_a_permanent_error_at_once(
    redis: Redis, keys: ChannelKeys, scripts: ChannelScripts, parts_for: PartsFor
) -> None:
    async def refuse(payload: Message, context: JobContext) -> None:
        raise PermanentError("the provider rejected the address")

    channel = make_channel(refuse)
    parts = parts_for(replace(channel, retry=Retry(attempts=5, backoff=channel.retry.backoff)))
    jobs = await claim(redis, scripts, ["j1"])
    entry, numbers = jobs["j1"]

    parts.runner.run(claimed(entry), numbers)
    await parts.runner.wait(10)
    await parts.recorder.stop()

    info = await job_info(redis, keys, "j1")
    assert (info.state, info.failures) == ("failed", 1)
    assert info.error is not None
    assert info.error.type == "runtime.errors.PermanentError"
    assert info.error.message == "the provider rejected the address"
    assert await redis.zcard(keys.delayed) == 0
    assert counted(parts.metrics, "channelkit_jobs_retried_total") == 0


@pytest.mark.usefixtures("group")
async def test_runner_wait_gives_up_on_a_hanging_handler_and_records_nothing_for_it(
    redis: Redis, keys: ChannelKeys, scripts: ChannelScripts, parts_for: PartsFor
) -> None:
    cancelled: list[int] = []

    async def handler(payload: Message, context: JobContext) -> None:
        if payload.n == 1:
            try:
                await asyncio.Event().wait()  # never set
            except asyncio.CancelledError:
                cancelled.append(payload.n)
                raise

    parts = parts_for(make_channel(handler))
    jobs = await claim(redis, scripts, ["quick", "hangs"])
    parts.runner.run(claimed(jobs["quick"][0], n=0), jobs["quick"][1])
    parts.runner.run(claimed(jobs["hangs"][0], n=1), jobs["hangs"][1])

    async def only_the_hanging_one_runs() -> bool:
        return list(parts.runner.running) == [jobs["hangs"][0].stream_id]

    await eventually(only_the_hanging_one_runs, what="the quick job finished")
    assert await parts.runner.wait(0.1) is False
    await parts.recorder.stop()

    assert cancelled == [1]
    assert parts.runner.running == {}
    assert await state_of(redis, keys, "quick") == "completed"
    assert await state_of(redis, keys, "hangs") == "active"
    rows = await pending(redis, keys)
    assert [(row["message_id"].decode(), row["consumer"]) for row in rows] == [
        (jobs["hangs"][0].stream_id, b"worker")
    ]
    assert counted(parts.metrics, "channelkit_jobs_failed_total") == 0


# JobReader: delayed jobs and the marker


def a_reader(redis: Redis, scripts: ChannelScripts, parts: Parts) -> JobReader:
    return JobReader(
        redis,
        scripts,
        consumer="worker",
        launcher=parts.launcher,
        runner=parts.runner,
        metrics=parts.metrics.channel(CHANNEL),
    )


@pytest.mark.usefixtures("no_idle_wake")
async def test_reader_starts_a_delayed_job_once_it_is_due_and_not_before(
    redis: Redis, keys: ChannelKeys, client: Client, scripts: ChannelScripts, parts_for: PartsFor
) -> None:
    parts = parts_for(make_channel())
    reader = a_reader(redis, scripts, parts)
    reader.start()
    try:
        await eventually(lambda: _group_ready(reader), what="the reader idle")
        job_id = await client.enqueue(CHANNEL, Message(n=1), delay_ms=300)
        await eventually(lambda: _is(redis, keys, job_id, "completed"), what="the job ran")
    finally:
        await stop_awake(redis, keys, reader.stop())

    stored = await job_hash(redis, keys, job_id)
    assert int(stored["started_at"]) >= int(stored["enqueued_at"]) + 300  # not before it was due
    assert "due_at" not in stored
    assert await redis.zcard(keys.delayed) == 0
    assert await redis.zcard(keys.waiting) == 0


@pytest.mark.usefixtures("no_idle_wake")
async def test_an_earlier_delayed_job_wakes_a_reader_sleeping_until_a_later_one(
    redis: Redis, keys: ChannelKeys, client: Client, scripts: ChannelScripts, parts_for: PartsFor
) -> None:
    parts = parts_for(make_channel())
    reader = a_reader(redis, scripts, parts)
    reader.start()
    try:
        await client.enqueue(CHANNEL, Message(n=1), job_id="later", delay_ms=3_600_000)
        # the reader sleeps until "later" is due (an hour; its idle wake is a minute)
        await eventually(lambda: _marker_taken(redis, keys), what="the reader asleep")
        await client.enqueue(CHANNEL, Message(n=2), job_id="soon", delay_ms=200)
        await eventually(lambda: _is(redis, keys, "soon", "completed"), what="soon ran")
    finally:
        await stop_awake(redis, keys, reader.stop())

    stored = await job_hash(redis, keys, "soon")
    assert int(stored["started_at"]) >= int(stored["enqueued_at"]) + 200
    assert await members(redis, keys.delayed) == ["later"]


@pytest.mark.usefixtures("no_idle_wake")
async def test_a_new_job_wakes_a_blocked_reader_at_once(
    redis: Redis, keys: ChannelKeys, client: Client, scripts: ChannelScripts, parts_for: PartsFor
) -> None:
    parts = parts_for(make_channel())
    reader = a_reader(redis, scripts, parts)
    reader.start()
    try:
        await eventually(lambda: _group_ready(reader), what="the reader idle")
        await asyncio.sleep(0.1)  # blocked on the marker by now, for up to a minute
        job_id = await client.enqueue(CHANNEL, Message(n=1))
        # within `eventually`'s bound, far below the minute: the marker woke it
        await eventually(lambda: _is(redis, keys, job_id, "completed"), what="the job ran")
    finally:
        await stop_awake(redis, keys, reader.stop())

    assert await markers(redis, keys) == {}


@pytest.mark.usefixtures("no_idle_wake")
async def test_reader_waits_out_a_channel_back_off_then_takes(
    redis: Redis, keys: ChannelKeys, client: Client, scripts: ChannelScripts, parts_for: PartsFor
) -> None:
    before = now_ms()
    await redis.set(keys.backoff(), before + 300, px=300)  # a RetryAfter of scope channel
    job_id = await client.enqueue(CHANNEL, Message(n=1))
    reader = a_reader(redis, scripts, parts_for(make_channel()))
    reader.start()
    try:
        # nothing wakes it but the end of the hold it was told about (its idle wake is
        # a minute)
        await eventually(lambda: _is(redis, keys, job_id, "completed"), what="the job ran")
    finally:
        await stop_awake(redis, keys, reader.stop())

    assert int((await job_hash(redis, keys, job_id))["started_at"]) >= before + 300


async def test_reader_stops_while_a_job_is_far_from_due(
    redis: Redis, keys: ChannelKeys, client: Client, scripts: ChannelScripts, parts_for: PartsFor
) -> None:
    await client.enqueue(CHANNEL, Message(n=1), job_id="j1", delay_ms=3_600_000)
    reader = a_reader(redis, scripts, parts_for(make_channel()))
    reader.start()
    await eventually(lambda: _marker_taken(redis, keys), what="the reader asleep")

    async with asyncio.timeout(2):
        await reader.stop()

    assert reader.stopping
    assert await members(redis, keys.delayed) == ["j1"]
    assert await redis.xlen(keys.stream) == 0


async def _group_ready(reader: JobReader) -> bool:
    return reader.problem is None


async def _marker_taken(redis: Redis, keys: ChannelKeys) -> bool:
    """The reader popped the marker: it has seen every job enqueued so far."""
    return await redis.exists(keys.stream) == 1 and await markers(redis, keys) == {}


# Heartbeat


@pytest.mark.usefixtures("group")
async def test_heartbeat_keeps_owned_entries_fresh(
    redis: Redis, keys: ChannelKeys, scripts: ChannelScripts
) -> None:
    await scripts.enqueue([NewJob(job_id, message(job_id)) for job_id in ("a", "b")], now_ms())
    owned, other = await read(redis, keys, "w")
    lost: list[list[str]] = []
    heartbeat = Heartbeat(
        scripts,
        channel=CHANNEL,
        consumer="w",
        interval_s=0.02,
        owned=lambda: [owned.stream_id],
        on_lost=lost.append,
    )
    heartbeat.start()
    try:

        async def other_idle_long() -> bool:
            rows = await pending(redis, keys)
            return any(
                row["message_id"].decode() == other.stream_id and row["time_since_delivered"] > 400
                for row in rows
            )

        await eventually(other_idle_long, what="the entry without heartbeat idle 400 ms")
        rows = {row["message_id"].decode(): row for row in await pending(redis, keys)}
    finally:
        await heartbeat.stop()

    assert (
        rows[owned.stream_id]["time_since_delivered"]
        < rows[other.stream_id]["time_since_delivered"]
    )
    assert rows[owned.stream_id]["consumer"] == b"w"
    assert rows[owned.stream_id]["times_delivered"] == 1
    assert lost == []


@pytest.mark.usefixtures("group")
async def test_heartbeat_logs_entries_another_consumer_took_over(
    redis: Redis, keys: ChannelKeys, scripts: ChannelScripts, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="channelkit.worker")
    await scripts.enqueue([NewJob("a", message("a"))], now_ms())
    [entry] = await read(redis, keys, "w")
    await redis.xclaim(keys.stream, "channelkit", "other", 0, [entry.stream_id])
    lost: list[list[str]] = []
    heartbeat = Heartbeat(
        scripts,
        channel=CHANNEL,
        consumer="w",
        interval_s=0.02,
        owned=lambda: [entry.stream_id],
        on_lost=lost.append,
    )
    heartbeat.start()
    try:

        async def warned() -> bool:
            return any("taken over by another process" in r.getMessage() for r in caplog.records)

        await eventually(warned, what="the take-over logged")
    finally:
        await heartbeat.stop()

    [row] = await pending(redis, keys)
    assert row["consumer"] == b"other"  # the heartbeat did not take it back
    assert lost[0] == [entry.stream_id]


# Reclaimer


@pytest.mark.usefixtures("group")
async def test_reclaimer_takes_over_a_dead_consumers_job_and_runs_it(
    redis: Redis, keys: ChannelKeys, scripts: ChannelScripts, parts_for: PartsFor
) -> None:
    runs: list[tuple[str, int]] = []

    async def handler(payload: Message, context: JobContext) -> str:
        runs.append((context.job_id, context.attempt))
        return "done"

    channel = make_channel(handler, stalled=Stalled(interval_ms=200, max_count=1))
    await claim(redis, scripts, ["j1"], consumer="dead")  # started, then its process died
    parts = parts_for(channel, consumer="alive")
    reclaimer = Reclaimer(
        channel,
        scripts,
        consumer="alive",
        launcher=parts.launcher,
        runner=parts.runner,
        recorder=parts.recorder,
        metrics=parts.metrics.channel(CHANNEL),
    )
    reclaimer.start()
    try:
        await eventually(lambda: _is(redis, keys, "j1", "completed"), what="j1 reclaimed")
    finally:
        await reclaimer.stop()

    assert runs == [("j1", 2)]
    info = await job_info(redis, keys, "j1")
    assert (info.attempts, info.failures, info.result) == (2, 0, "done")
    assert await pending(redis, keys) == []
    assert await redis.xlen(keys.stream) == 0
    assert counted(parts.metrics, "channelkit_jobs_stalled_total") == 1


# RateLimiter


async def test_global_requests_carry_unique_tokens(scripts: ChannelScripts) -> None:
    limited = RateLimiter(make_channel(limiter=Limiter(max=5, duration_ms=1000)), scripts)
    requests = [limited.global_request() for _ in range(3)]

    assert not limited.keyed
    assert all(request is not None for request in requests)
    tokens = {request.token for request in requests if request is not None}
    assert len(tokens) == 3
    for request in requests:
        assert request is not None
        assert (request.group, request.max) == (None, 5)
        assert request.window_ms >= 1000

    assert RateLimiter(make_channel(), scripts).global_request() is None
    by_key = RateLimiter(make_channel(limiter=keyed("tenant")), scripts)
    assert by_key.keyed
    assert by_key.global_request() is None


async def test_grant_by_key_splits_by_the_payload_field(
    redis: Redis, keys: ChannelKeys, scripts: ChannelScripts
) -> None:
    limiter = RateLimiter(make_channel(limiter=keyed("tenant", max_starts=2)), scripts)
    tenants = ["a", "a", "b", "a", "b", "b", "c"]

    answers = await limiter.grant_by_key([Message(n=n, tenant=t) for n, t in enumerate(tenants)])

    assert [granted for granted, _ in answers] == [True, True, True, False, True, False, True]
    assert all(wait == 0 for granted, wait in answers if granted)
    assert all(0 < wait <= limiter.window_ms for granted, wait in answers if not granted)
    for tenant, used in (("a", b"2"), ("b", b"2"), ("c", b"1")):
        assert await redis.get(keys.limiter_total(tenant)) == used
    [(granted, wait)] = await limiter.grant_by_key([Message(n=9, tenant="a")])
    assert not granted
    assert 0 < wait <= limiter.window_ms


async def test_grant_by_key_reads_a_renamed_field_by_its_alias(
    redis: Redis, keys: ChannelKeys, scripts: ChannelScripts
) -> None:
    channel = make_channel(payload_model=Mail, limiter=keyed("from", max_starts=1))
    limiter = RateLimiter(channel, scripts)
    payloads = [
        Mail.model_validate({"from": "ann@example.com"}),
        Mail(sender="ann@example.com"),
        Mail.model_validate({"from": "bob@example.com"}),
    ]

    answers = await limiter.grant_by_key(payloads)

    assert [granted for granted, _ in answers] == [True, False, True]
    assert await redis.get(keys.limiter_total("ann@example.com")) == b"1"
    assert await redis.get(keys.limiter_total("bob@example.com")) == b"1"


# Launcher


@pytest.mark.usefixtures("group")
async def test_launcher_holds_what_the_global_limit_refuses_and_can_give_it_back(
    redis: Redis, keys: ChannelKeys, scripts: ChannelScripts, parts_for: PartsFor
) -> None:
    release = asyncio.Event()

    async def blocked(payload: Message, context: JobContext) -> None:
        await release.wait()

    parts = parts_for(make_channel(blocked, limiter=Limiter(max=2, duration_ms=10_000)))
    await scripts.enqueue([NewJob(f"j{n}", message(f"j{n}", n)) for n in range(4)], now_ms())
    entries = await read(redis, keys, "worker")
    sids = [entry.stream_id for entry in entries]

    await parts.launcher.launch(entries)

    assert [job.job_id for job in parts.launcher.held] == ["j2", "j3"]
    assert 0 < parts.launcher.limited_ms <= parts.limiter.window_ms
    assert sorted(parts.launcher.owned()) == sorted(sids)  # running and held: heartbeated
    states = [await state_of(redis, keys, f"j{n}") for n in range(4)]
    assert states == ["active", "active", "waiting", "waiting"]

    await parts.launcher.release_held()

    assert parts.launcher.held == []
    assert sorted(parts.launcher.owned()) == sorted(sids[:2])
    assert [row["message_id"].decode() for row in await pending(redis, keys)] == sids[:2]
    assert [entry.stream_id for entry in await stream(redis, keys)] == sids[:2]
    assert await members(redis, keys.waiting) == ["j2", "j3"]  # waiting again, in order
    again = await read(redis, keys, "other")  # anyone may take them at once
    assert [job_id_in(entry.message) for entry in again] == ["j2", "j3"]
    assert not {entry.stream_id for entry in again} & set(sids)
    release.set()


@pytest.mark.usefixtures("group")
async def test_launcher_defers_jobs_over_their_keys_window(
    redis: Redis, keys: ChannelKeys, scripts: ChannelScripts, parts_for: PartsFor
) -> None:
    parts = parts_for(make_channel(limiter=keyed("tenant", max_starts=1)))
    await scripts.enqueue([NewJob(f"j{n}", message(f"j{n}", n)) for n in range(2)], now_ms())
    entries = await read(redis, keys, "worker")

    await parts.launcher.launch(entries)
    await parts.stop()

    assert await state_of(redis, keys, "j0") == "completed"
    deferred = await job_hash(redis, keys, "j1")
    assert (deferred["state"], deferred["failures"], deferred["attempts"]) == (
        "delayed",
        "0",
        "0",
    )
    assert "error" not in deferred
    assert await members(redis, keys.delayed) == ["j1"]
    assert await pending(redis, keys) == []


# JobReader + Launcher


@pytest.mark.usefixtures("group")
async def test_reader_and_launcher_run_enqueued_jobs(
    redis: Redis,
    keys: ChannelKeys,
    scripts: ChannelScripts,
    client: Client,
    parts_for: PartsFor,
) -> None:
    seen: list[int] = []
    running = 0
    most_running = 0

    async def handler(payload: Message, context: JobContext) -> None:
        nonlocal running, most_running
        running += 1
        most_running = max(most_running, running)
        await asyncio.sleep(0.01)
        seen.append(payload.n)
        running -= 1

    parts = parts_for(make_channel(handler, concurrency=3))
    reader = a_reader(redis, scripts, parts)
    reader.start()
    try:
        job_ids = await client.enqueue_many(CHANNEL, [Message(n=n) for n in range(10)])

        async def all_completed() -> bool:
            return await redis.zcard(keys.completed) == 10

        await eventually(all_completed, what="ten jobs completed")
    finally:
        await reader.stop()

    assert sorted(seen) == list(range(10))
    assert most_running <= 3
    for job_id in job_ids:
        info = await job_info(redis, keys, job_id)
        assert (info.state, info.attempts) == ("completed", 1)
    assert await pending(redis, keys) == []
    assert await redis.xlen(keys.stream) == 0
    assert counted(parts.metrics, "channelkit_jobs_started_total") == 10


@pytest.mark.usefixtures("group")
async def test_reader_and_launcher_fail_poison_messages(
    redis: Redis, keys: ChannelKeys, scripts: ChannelScripts, parts_for: PartsFor
) -> None:
    calls: list[int] = []

    async def handler(payload: Message, context: JobContext) -> None:
        calls.append(payload.n)

    parts = parts_for(make_channel(handler))
    bad_payload = b'{"task_id":"bad-payload","kwargs":{"payload":{"n":"many"}}}'
    no_payload = b'{"task_id":"no-payload","args":[],"kwargs":{}}'
    await add(redis, keys, bad_payload)
    await add(redis, keys, no_payload)
    not_json = await add(redis, keys, b"not json")
    reader = a_reader(redis, scripts, parts)
    reader.start()
    try:

        async def three_failed() -> bool:
            return await redis.zcard(keys.failed) == 3

        await eventually(three_failed, what="three poison messages failed")
    finally:
        await reader.stop()

    assert calls == []
    expected = {
        "bad-payload": ("payload_invalid", bad_payload),
        "no-payload": ("message_invalid", no_payload),
        f"poison-{not_json}": ("message_invalid", b"not json"),
    }
    for job_id, (kind, data) in expected.items():
        info = await job_info(redis, keys, job_id)
        assert info.state == "failed"
        assert info.error is not None
        assert (info.error.type, info.error.attempt) == (kind, 0)
        assert info.error.message.startswith(f"{kind}: ")
        assert (await job_hash(redis, keys, job_id))["data"] == data.decode()
    bad = await job_info(redis, keys, "bad-payload")
    assert bad.error is not None
    assert "n: " in bad.error.message
    assert await pending(redis, keys) == []
    assert await redis.xlen(keys.stream) == 0


# ChannelConsumer


async def test_consumer_stop_waits_for_a_running_job(
    redis: Redis, keys: ChannelKeys, client: Client
) -> None:
    entered = asyncio.Event()
    release = asyncio.Event()

    async def handler(payload: Message, context: JobContext) -> dict[str, int]:
        entered.set()
        await release.wait()
        return {"n": payload.n}

    consumer = ChannelConsumer(
        make_channel(handler), client, consumer="c1", metrics=Metrics().channel(CHANNEL)
    )
    await consumer.start()  # creates the consumer group itself
    job_id = await client.enqueue(CHANNEL, Message(n=4))
    async with asyncio.timeout(10):
        await entered.wait()

    stopping = asyncio.create_task(consumer.stop(10))
    await asyncio.sleep(0.2)
    assert not stopping.done()  # the job is still running
    assert consumer.running == 1
    release.set()
    assert await stopping is True

    info = await job_info(redis, keys, job_id)
    assert (info.state, info.result) == ("completed", {"n": 4})
    assert await pending(redis, keys) == []


async def test_consumer_stop_with_a_short_timeout_leaves_the_job_to_another(
    redis: Redis, keys: ChannelKeys, client: Client
) -> None:
    entered = asyncio.Event()

    async def hang(payload: Message, context: JobContext) -> None:
        entered.set()
        await asyncio.Event().wait()

    channel = make_channel(hang, stalled=Stalled(interval_ms=300, max_count=1))
    first = ChannelConsumer(channel, client, consumer="c1", metrics=Metrics().channel(CHANNEL))
    await first.start()
    job_id = await client.enqueue(CHANNEL, Message(n=1))
    async with asyncio.timeout(10):
        await entered.wait()

    assert await first.stop(0.1) is False

    assert await state_of(redis, keys, job_id) == "active"
    [row] = await pending(redis, keys)
    assert (row["consumer"], row["times_delivered"]) == (b"c1", 1)

    attempts: list[int] = []

    async def finish(payload: Message, context: JobContext) -> None:
        attempts.append(context.attempt)

    second = ChannelConsumer(
        replace(channel, process=finish), client, consumer="c2", metrics=Metrics().channel(CHANNEL)
    )
    await second.start()
    try:
        await eventually(lambda: _is(redis, keys, job_id, "completed"), what="taken over")
    finally:
        assert await second.stop(5) is True

    assert attempts == [2]
    assert await pending(redis, keys) == []
