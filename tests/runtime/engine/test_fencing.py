"""Fencing of outcomes beyond finish.lua (whose own tests are in test_scripts.py): a
process that missed its stalled interval (paused, or its event loop blocked) lost its
jobs' claims to another process. Its recorder drops and reports their outcomes without
counting them, its heartbeat reports each lost job once and stops heartbeating it, and
two consumers on one channel end a taken-over job in the new owner's state only.

The consumer named "paused" is the one that lost its claims. Waits have generous
deadlines; the assertions are about state, not speed."""

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
from runtime.engine.metrics import Metrics
from runtime.engine.outcomes import Completed, Failed, Retrying
from runtime.engine.recorder import OutcomeRecorder
from runtime.engine.scripts import ChannelScripts, NewJob
from tests.runtime.engine.support import (
    CHANNEL,
    KEEP_ALL,
    Message,
    PartsFor,
    claim,
    claims,
    counted,
    eventually,
    job_hash,
    job_info,
    make_channel,
    members,
    message,
    now_ms,
    pending,
    read,
    state_of,
    stream,
    take_over,
)

TAKEN_OVER = "taken over by another process"  # the heartbeat's warning
NOT_RECORDED = "not recorded: another process took"  # the recorder's warning

STALLED = JobError(type="stalled", message="stalled", traceback="", attempt=0, at=0)


def logged(caplog: pytest.LogCaptureFixture, text: str) -> list[logging.LogRecord]:
    return [record for record in caplog.records if text in record.getMessage()]


def a_recorder(scripts: ChannelScripts, metrics: Metrics, consumer: str) -> OutcomeRecorder:
    return OutcomeRecorder(
        scripts,
        channel=CHANNEL,
        consumer=consumer,
        keep=KEEP_ALL,
        metrics=metrics.channel(CHANNEL),
        running=lambda: 0,
    )


def outcome_counts(*metrics: Metrics) -> dict[str, float]:
    """The outcome counters, summed over processes (one Metrics each)."""
    return {
        kind: sum(counted(each, f"channelkit_jobs_{kind}_total") for each in metrics)
        for kind in ("completed", "retried", "failed")
    }


# OutcomeRecorder


@pytest.mark.usefixtures("group")
async def test_recorder_logs_dropped_outcomes_once_and_does_not_count_them(
    redis: Redis, keys: ChannelKeys, scripts: ChannelScripts, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="channelkit.worker")
    jobs = await claim(redis, scripts, ["a", "b", "c"], consumer="paused")
    (a, _), (b, _), (c, _) = jobs["a"], jobs["b"], jobs["c"]
    for lost in (b, c):
        await take_over(redis, keys, lost.stream_id, "other")
    before = {job_id: await job_hash(redis, keys, job_id) for job_id in ("b", "c")}
    metrics = Metrics()
    recorder = a_recorder(scripts, metrics, consumer="paused")
    recorder.start()
    error = JobError.from_exception(RuntimeError("too late"), 1)
    # recorded before the recorder's task runs: the three go to Redis in one batch
    recorder.record(Completed(a.stream_id, 1, "a", ""))
    recorder.record(Retrying(b.stream_id, 1, "b", error, now_ms() + 60_000, b.message))
    recorder.record(Failed(c.stream_id, 1, "c", error, c.message))
    await recorder.stop()

    [warning] = logged(caplog, NOT_RECORDED)
    assert warning.levelno == logging.WARNING
    assert "2 outcome(s)" in warning.getMessage()
    assert "b, c" in warning.getMessage()
    assert warning.__dict__["job_ids"] == ["b", "c"]
    assert outcome_counts(metrics) == {"completed": 1, "retried": 0, "failed": 0}
    assert recorder.pending == 0
    assert await state_of(redis, keys, "a") == "completed"
    for job_id in ("b", "c"):
        assert await job_hash(redis, keys, job_id) == before[job_id]
    assert await claims(redis, keys) == {b.stream_id: ("other", 2), c.stream_id: ("other", 2)}
    assert await redis.zcard(keys.delayed) == 0
    assert await redis.zcard(keys.failed) == 0


@pytest.mark.usefixtures("group")
async def test_recorder_counts_the_recorded_outcome_of_a_job_whose_older_run_was_dropped(
    redis: Redis, keys: ChannelKeys, scripts: ChannelScripts
) -> None:
    jobs = await claim(redis, scripts, ["j1"], consumer="worker")
    entry, _ = jobs["j1"]
    # the same consumer name took the entry back (its event loop blocked past the
    # stalled interval): a second run under delivery 2, and both runs end together
    reclaimed = await scripts.reclaim(
        "worker", min_idle_ms=0, count=10, max_stalled=5, now_ms=now_ms(), error=STALLED
    )
    assert [e.deliveries for e in reclaimed.entries] == [2]
    metrics = Metrics()
    recorder = a_recorder(scripts, metrics, consumer="worker")
    recorder.start()
    recorder.record(Completed(entry.stream_id, 1, "j1", ""))  # dropped: an old delivery
    recorder.record(Completed(entry.stream_id, 2, "j1", ""))  # recorded
    await recorder.stop()

    assert await state_of(redis, keys, "j1") == "completed"
    assert await pending(redis, keys) == []
    assert outcome_counts(metrics)["completed"] == 1


# Heartbeat and Launcher.forget


@pytest.mark.usefixtures("group")
async def test_heartbeat_reports_a_lost_job_once_and_hands_it_to_on_lost(
    redis: Redis,
    keys: ChannelKeys,
    scripts: ChannelScripts,
    parts_for: PartsFor,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.WARNING, logger="channelkit.worker")
    release = asyncio.Event()

    async def blocked(payload: Message, context: JobContext) -> None:
        await release.wait()

    parts = parts_for(make_channel(blocked), consumer="paused")
    await scripts.enqueue([NewJob("j1", message("j1"))], now_ms())
    [entry] = await read(redis, keys, "paused")
    await parts.launcher.launch([entry])
    assert parts.launcher.owned() == [entry.stream_id]
    await take_over(redis, keys, entry.stream_id, "other")

    handed: list[list[str]] = []
    beats = 0

    def owned() -> list[str]:
        nonlocal beats
        beats += 1
        return parts.launcher.owned()

    def on_lost(stream_ids: list[str]) -> None:
        handed.append(list(stream_ids))
        parts.launcher.forget(stream_ids)

    heartbeat = Heartbeat(
        scripts,
        channel=CHANNEL,
        consumer="paused",
        interval_s=0.02,
        owned=owned,
        on_lost=on_lost,
    )
    heartbeat.start()
    try:

        async def several_beats_after_the_loss() -> bool:
            return bool(handed) and beats >= 6

        await eventually(several_beats_after_the_loss, what="five more beats after the loss")
    finally:
        await heartbeat.stop()

    [warning] = logged(caplog, TAKEN_OVER)
    assert warning.__dict__["stream_ids"] == [entry.stream_id]
    assert handed == [[entry.stream_id]]
    assert parts.launcher.owned() == []
    assert parts.runner.lost == {entry.stream_id}
    assert list(parts.runner.running) == [entry.stream_id]  # a lost job runs on
    assert await claims(redis, keys) == {entry.stream_id: ("other", 2)}  # not taken back

    release.set()
    await parts.stop()

    assert parts.runner.lost == set()
    assert await state_of(redis, keys, "j1") == "active"  # its owner records it
    assert outcome_counts(parts.metrics)["completed"] == 0


@pytest.mark.usefixtures("group")
async def test_launcher_forget_drops_a_held_job_and_marks_a_running_one_lost(
    redis: Redis, keys: ChannelKeys, scripts: ChannelScripts, parts_for: PartsFor
) -> None:
    release = asyncio.Event()

    async def blocked(payload: Message, context: JobContext) -> None:
        await release.wait()

    channel = make_channel(blocked, limiter=Limiter(max=1, duration_ms=10_000))
    parts = parts_for(channel, consumer="paused")
    await scripts.enqueue([NewJob(f"j{n}", message(f"j{n}", n)) for n in range(3)], now_ms())
    entries = await read(redis, keys, "paused")
    running, held, kept = (entry.stream_id for entry in entries)
    await parts.launcher.launch(entries)
    assert list(parts.runner.running) == [running]
    assert [job.stream_id for job in parts.launcher.held] == [held, kept]
    for sid in (running, held):
        await take_over(redis, keys, sid, "other")

    parts.launcher.forget([running, held, "1-1"])  # an id it does not hold is ignored

    assert parts.launcher.owned() == [kept]
    assert [job.job_id for job in parts.launcher.held] == ["j2"]
    assert parts.runner.lost == {running}
    assert list(parts.runner.running) == [running]  # it runs on, not counted as owned

    release.set()
    assert await parts.runner.wait(10) is True
    await parts.launcher.release_held()  # only the job still held goes back
    await parts.recorder.stop()

    assert parts.runner.lost == set()
    assert await state_of(redis, keys, "j0") == "active"  # its outcome was dropped
    assert await claims(redis, keys) == {running: ("other", 2), held: ("other", 2)}
    assert [entry.stream_id for entry in await stream(redis, keys)] == [running, held]
    assert await members(redis, keys.waiting) == ["j2"]  # given back to wait again
    assert outcome_counts(parts.metrics)["completed"] == 0


@pytest.mark.usefixtures("group")
async def test_release_held_leaves_a_job_another_process_took_over_to_it(
    redis: Redis, keys: ChannelKeys, scripts: ChannelScripts, parts_for: PartsFor
) -> None:
    release = asyncio.Event()

    async def blocked(payload: Message, context: JobContext) -> None:
        await release.wait()

    channel = make_channel(blocked, limiter=Limiter(max=1, duration_ms=10_000))
    parts = parts_for(channel, consumer="paused")
    await scripts.enqueue([NewJob(f"j{n}", message(f"j{n}", n)) for n in range(2)], now_ms())
    entries = await read(redis, keys, "paused")
    running, held = (entry.stream_id for entry in entries)
    await parts.launcher.launch(entries)
    assert [job.stream_id for job in parts.launcher.held] == [held]
    # paused past the stalled interval: another process took the held job over, and
    # this one stops before its heartbeat noticed
    await take_over(redis, keys, held, "other")
    try:
        await parts.launcher.release_held()

        assert await claims(redis, keys) == {running: ("paused", 1), held: ("other", 2)}
        assert [entry.stream_id for entry in await stream(redis, keys)] == [running, held]
        done = Completed(held, 2, "j1", "")
        assert await scripts.finish("other", [done], now_ms(), KEEP_ALL) == []
    finally:
        release.set()


# JobRunner


@pytest.mark.usefixtures("group")
async def test_every_run_in_flight_stays_tracked_when_a_job_is_reclaimed_by_its_own_consumer(
    redis: Redis, keys: ChannelKeys, scripts: ChannelScripts, parts_for: PartsFor
) -> None:
    calls: list[asyncio.Event] = []
    in_flight = 0
    ended = 0

    async def handler(payload: Message, context: JobContext) -> None:
        nonlocal in_flight, ended
        release = asyncio.Event()
        calls.append(release)
        in_flight += 1
        try:
            await release.wait()
        finally:
            in_flight -= 1
            ended += 1

    parts = parts_for(make_channel(handler))
    await scripts.enqueue([NewJob("j1", message("j1"))], now_ms())
    [entry] = await read(redis, keys, "worker")
    await parts.launcher.launch([entry])
    # the event loop blocked past the stalled interval; the reclaimer of this very
    # process takes the job back (delivery 2) and launches it
    reclaimed = await scripts.reclaim(
        "worker", min_idle_ms=0, count=10, max_stalled=5, now_ms=now_ms(), error=STALLED
    )
    await parts.launcher.launch(reclaimed.entries)
    try:

        async def called() -> bool:
            return bool(calls)

        await eventually(called, what="the handler called")
        calls[0].set()

        async def first_ended() -> bool:
            return ended >= 1

        await eventually(first_ended, what="the first run ended")

        # whatever runs here is tracked: counted as running, and heartbeated
        assert len(parts.runner.running) == in_flight
        assert parts.launcher.owned() == ([entry.stream_id] if in_flight else [])
    finally:
        for release in calls:
            release.set()

        async def none_in_flight() -> bool:
            return in_flight == 0

        await eventually(none_in_flight, what="every run ended")


# Two consumers on one channel


@pytest.mark.parametrize("attempts", [1, 3], ids=["would-fail", "would-retry"])
async def test_a_paused_consumers_late_outcome_leaves_the_new_owners_completion(
    redis: Redis,
    keys: ChannelKeys,
    client: Client,
    caplog: pytest.LogCaptureFixture,
    attempts: int,
) -> None:
    caplog.set_level(logging.WARNING, logger="channelkit.worker")
    entered = asyncio.Event()
    resume = asyncio.Event()
    raised: list[int] = []

    async def pauses(payload: Message, context: JobContext) -> None:
        entered.set()
        await resume.wait()
        raised.append(context.attempt)
        raise RuntimeError("the paused process's run broke after all")

    taken: list[int] = []

    async def completes(payload: Message, context: JobContext) -> dict[str, int]:
        taken.append(context.attempt)
        return {"n": payload.n}

    channel = make_channel(pauses)
    channel = replace(channel, retry=Retry(attempts=attempts, backoff=channel.retry.backoff))
    # A's heartbeat first beats after 10 s (a third of the 30 s stalled interval): to B,
    # whose stalled interval is 200 ms, A looks paused once its job is 200 ms idle.
    other = replace(channel, process=completes, stalled=Stalled(interval_ms=200, max_count=1))
    metrics_a, metrics_b = Metrics(), Metrics()
    a = ChannelConsumer(channel, client, consumer="paused", metrics=metrics_a.channel(CHANNEL))
    b = ChannelConsumer(other, client, consumer="other", metrics=metrics_b.channel(CHANNEL))
    await a.start()
    started_b = False
    try:
        job_id = await client.enqueue(CHANNEL, Message(n=5))
        async with asyncio.timeout(10):
            await entered.wait()
        await b.start()
        started_b = True

        async def completed() -> bool:
            return await state_of(redis, keys, job_id) == "completed"

        await eventually(completed, what="B took the job over and completed it")
        resume.set()  # A's handler goes on, and raises

        async def dropped() -> bool:
            return bool(logged(caplog, NOT_RECORDED)) and not a.runner.running

        await eventually(dropped, what="A's late outcome dropped")
    finally:
        resume.set()
        clean_a = await a.stop(5)
        clean_b = await b.stop(5) if started_b else True
    assert (clean_a, clean_b) == (True, True)

    assert raised == [1]
    assert taken == [2]
    info = await job_info(redis, keys, job_id)
    assert (info.state, info.result, info.attempts) == ("completed", {"n": 5}, 2)
    assert (info.failures, info.error, info.errors) == (0, None, [])
    assert await members(redis, keys.completed) == [job_id]
    assert await redis.zscore(keys.failed, job_id) is None
    assert await redis.zscore(keys.delayed, job_id) is None
    assert await pending(redis, keys) == []
    assert await redis.xlen(keys.stream) == 0
    [warning] = logged(caplog, NOT_RECORDED)
    assert warning.__dict__["job_ids"] == [job_id]
    assert outcome_counts(metrics_a, metrics_b) == {"completed": 1, "retried": 0, "failed": 0}
    assert counted(metrics_b, "channelkit_jobs_stalled_total") == 1
