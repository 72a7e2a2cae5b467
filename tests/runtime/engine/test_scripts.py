"""Every Lua script driven through ChannelScripts on a real Redis, with the state it
leaves read back: job hashes, the stream and its pending entries, the sorted sets."""

from __future__ import annotations

import asyncio
import json
from dataclasses import replace

import pytest
from redis.asyncio import Redis

from runtime.engine.client import Client
from runtime.engine.jobs import JobError, JobInfo
from runtime.engine.keys import CONSUMER_GROUP, ChannelKeys
from runtime.engine.limits import DEFAULT_PRIORITY
from runtime.engine.outcomes import Completed, Deferred, Failed, Outcome, Retrying
from runtime.engine.scripts import (
    PAUSED,
    Cancellation,
    ChannelScripts,
    NewJob,
    RateLimit,
    Retention,
    RunNumbers,
    StreamEntry,
    Transition,
)
from tests.runtime.engine.support import (
    add,
    claim,
    claim_of,
    claims,
    create_group,
    eventually,
    held_of,
    job_hash,
    job_id_in,
    job_info,
    markers,
    members,
    message,
    now_ms,
    pending,
    raw_hash,
    read,
    stream,
    take_over,
)

KEEP_ALL = Retention(completed_count=-1, completed_age_ms=0, failed_count=-1, failed_age_ms=0)
PRIORITY_SPAN = 2**44  # waiting set scores per priority (include/wait.lua)


def an_error(attempt: int = 1, text: str = "boom") -> JobError:
    return JobError(type="builtins.ValueError", message=text, traceback="", attempt=attempt, at=1)


# enqueue.lua


async def test_enqueue_stores_a_waiting_job_and_its_message(
    redis: Redis, keys: ChannelKeys, scripts: ChannelScripts
) -> None:
    now = now_ms()
    assert await scripts.enqueue([NewJob("j1", message("j1", 7), priority=3)], now) == [True]

    assert await job_hash(redis, keys, "j1") == {
        "state": "waiting",
        "enqueued_at": str(now),
        "attempts": "0",
        "failures": "0",
        "priority": "3",
        "data": message("j1", 7).decode(),
    }
    # in the waiting set by priority, then by the channel's sequence; not on the stream
    assert await redis.zscore(keys.waiting, "j1") == 3 * PRIORITY_SPAN + 1
    assert await redis.exists(keys.stream) == 0
    assert await redis.zcard(keys.delayed) == 0
    assert await markers(redis, keys) == {"0": 0}  # a blocked worker wakes


async def test_enqueue_with_a_delay_stores_a_delayed_job(
    redis: Redis, keys: ChannelKeys, scripts: ChannelScripts
) -> None:
    now = now_ms()
    assert await scripts.enqueue([NewJob("j1", message("j1"), delay_ms=5000)], now) == [True]

    assert await job_hash(redis, keys, "j1") == {
        "state": "delayed",
        "enqueued_at": str(now),
        "due_at": str(now + 5000),
        "attempts": "0",
        "failures": "0",
        "priority": str(DEFAULT_PRIORITY),
        "data": message("j1").decode(),
    }
    assert await redis.zscore(keys.delayed, "j1") == now + 5000
    assert await redis.zcard(keys.waiting) == 0
    assert await redis.exists(keys.stream) == 0
    # a sleeping worker learns of the due time
    assert await markers(redis, keys) == {"d": now + 5000}


async def test_enqueue_of_an_earlier_delayed_job_lowers_the_due_marker(
    redis: Redis, keys: ChannelKeys, scripts: ChannelScripts
) -> None:
    now = now_ms()
    await scripts.enqueue([NewJob("late", message("late"), delay_ms=9000)], now)
    await scripts.enqueue([NewJob("later", message("later"), delay_ms=20_000)], now)
    assert await markers(redis, keys) == {"d": now + 9000}

    await scripts.enqueue([NewJob("soon", message("soon"), delay_ms=100)], now)

    assert await markers(redis, keys) == {"d": now + 100}


async def test_enqueue_of_an_existing_id_changes_nothing(
    redis: Redis, keys: ChannelKeys, scripts: ChannelScripts
) -> None:
    first = now_ms()
    await scripts.enqueue([NewJob("j1", message("j1", 1))], first)
    before = await job_hash(redis, keys, "j1")

    created = await scripts.enqueue(
        [NewJob("j1", message("j1", 2), delay_ms=1000), NewJob("j2", message("j2"))], first + 5
    )

    assert created == [False, True]
    assert await job_hash(redis, keys, "j1") == before
    assert before["data"] == message("j1", 1).decode()
    assert await members(redis, keys.waiting) == ["j1", "j2"]
    assert await redis.zcard(keys.delayed) == 0


# start.lua


@pytest.mark.usefixtures("group")
async def test_start_counts_attempts_and_marks_jobs_active(
    redis: Redis, keys: ChannelKeys, scripts: ChannelScripts
) -> None:
    await scripts.enqueue([NewJob("a", message("a")), NewJob("b", message("b"))], now_ms())
    a, b = await read(redis, keys, "worker")
    now = now_ms()

    started = await scripts.start("worker", [claim_of(a), claim_of(b)], now)

    assert started.granted == 2
    assert started.wait_ms == 0
    assert started.runs == [RunNumbers(1, 0), RunNumbers(1, 0)]
    for job_id in ("a", "b"):
        stored = await job_hash(redis, keys, job_id)
        assert stored["state"] == "active"
        assert stored["started_at"] == str(now)
        assert stored["attempts"] == "1"

    again = await scripts.start("worker", [claim_of(a)], now + 10)
    assert again.runs == [RunNumbers(2, 0)]
    assert (await job_hash(redis, keys, "a"))["started_at"] == str(now + 10)


@pytest.mark.usefixtures("group")
async def test_start_grants_nothing_while_the_channel_is_paused(
    redis: Redis, keys: ChannelKeys, scripts: ChannelScripts
) -> None:
    """Jobs a process took before the pause (held by its rate limiter, or taken over)
    do not start while the channel is paused: they stay claimed, and start once resumed."""
    await scripts.enqueue([NewJob("a", message("a"))], now_ms())
    [a] = await read(redis, keys, "worker")
    await redis.set(keys.paused, 1)

    held = await scripts.start("worker", [claim_of(a)], now_ms())

    assert (held.granted, held.runs) == (0, [])
    assert held.wait_ms > 0
    assert (await job_hash(redis, keys, "a"))["state"] == "waiting"
    await redis.delete(keys.paused)
    started = await scripts.start("worker", [claim_of(a)], now_ms())
    assert started.granted == 1
    assert (await job_hash(redis, keys, "a"))["state"] == "active"


@pytest.mark.usefixtures("group")
async def test_start_under_a_rate_limit_grants_what_the_window_allows(
    redis: Redis, keys: ChannelKeys, scripts: ChannelScripts
) -> None:
    ids = [f"j{n}" for n in range(5)]
    await scripts.enqueue([NewJob(job_id, message(job_id)) for job_id in ids], now_ms())
    claims = [claim_of(entry) for entry in await read(redis, keys, "worker")]
    limit = RateLimit(group=None, window_ms=10_000, max=2, token="t1")

    started = await scripts.start("worker", claims, now_ms(), limit)

    assert started.granted == 2
    assert 0 < started.wait_ms <= 10_000
    assert started.used == 2
    assert started.runs == [RunNumbers(1, 0), RunNumbers(1, 0)]
    states = [(await job_hash(redis, keys, job_id))["state"] for job_id in ids]
    assert states == ["active", "active", "waiting", "waiting", "waiting"]
    assert await members(redis, keys.limiter()) == ["t1:2"]
    assert await redis.get(keys.limiter_total()) == b"2"

    # the window is full: nothing more starts, and the wait says until when
    later = await scripts.start("worker", claims[2:], now_ms(), RateLimit(None, 10_000, 2, "t2"))
    assert (later.granted, later.runs, later.used) == (0, [], 2)
    assert 0 < later.wait_ms <= 10_000
    assert (await job_hash(redis, keys, "j2"))["state"] == "waiting"


@pytest.mark.usefixtures("group")
async def test_start_leaves_a_job_whose_claim_was_taken_over_to_its_owner(
    redis: Redis, keys: ChannelKeys, scripts: ChannelScripts
) -> None:
    """A process resumed after a pause must not start again what another took over."""
    await scripts.enqueue([NewJob(f"j{n}", message(f"j{n}", n)) for n in range(3)], now_ms())
    j0, j1, j2 = await read(redis, keys, "paused")
    await take_over(redis, keys, j1.stream_id, "other")

    started = await scripts.start("paused", [claim_of(j0), claim_of(j1), claim_of(j2)], now_ms())

    assert started.dropped == [1]
    assert started.granted == 2
    assert [(await job_hash(redis, keys, job_id))["state"] for job_id in ("j0", "j1", "j2")] == [
        "active",
        "waiting",
        "active",
    ]
    assert (await job_hash(redis, keys, "j1"))["attempts"] == "0"
    # a delivery count the entry no longer has is no claim either
    stale = await scripts.start("other", [claim_of(j1)], now_ms())
    assert (stale.granted, stale.dropped) == (0, [0])


# finish.lua


@pytest.mark.usefixtures("group")
async def test_finish_completed_with_a_result(
    redis: Redis, keys: ChannelKeys, scripts: ChannelScripts
) -> None:
    jobs = await claim(redis, scripts, ["j1"])
    entry, _ = jobs["j1"]
    now = now_ms()

    stale = await scripts.finish(
        "worker", [Completed(entry.stream_id, 1, "j1", '{"sent": 3}')], now, KEEP_ALL
    )

    assert stale == []

    stored = await job_hash(redis, keys, "j1")
    assert stored["state"] == "completed"
    assert stored["finished_at"] == str(now)
    assert json.loads(stored["result"]) == {"sent": 3}
    assert await redis.zscore(keys.completed, "j1") == now
    assert await pending(redis, keys) == []
    assert await redis.xlen(keys.stream) == 0


@pytest.mark.usefixtures("group")
async def test_finish_completed_without_a_result(
    redis: Redis, keys: ChannelKeys, scripts: ChannelScripts
) -> None:
    jobs = await claim(redis, scripts, ["j1"])
    entry = jobs["j1"][0]
    await scripts.finish("worker", [Completed(entry.stream_id, 1, "j1", "")], now_ms(), KEEP_ALL)

    stored = await job_hash(redis, keys, "j1")
    assert stored["state"] == "completed"
    assert "result" not in stored
    assert (await job_info(redis, keys, "j1")).result is None
    assert await pending(redis, keys) == []


@pytest.mark.usefixtures("group")
async def test_finish_retrying_keeps_the_message_for_the_next_run(
    redis: Redis, keys: ChannelKeys, scripts: ChannelScripts
) -> None:
    jobs = await claim(redis, scripts, ["j1"])
    entry, _ = jobs["j1"]
    now = now_ms()
    error = an_error()

    await scripts.finish(
        "worker",
        [Retrying(entry.stream_id, entry.deliveries, "j1", error, now + 1000, entry.message)],
        now,
        KEEP_ALL,
    )

    stored = await job_hash(redis, keys, "j1")
    assert stored["state"] == "delayed"
    assert stored["failures"] == "1"
    assert stored["attempts"] == "1"
    assert stored["due_at"] == str(now + 1000)
    assert stored["data"] == entry.message.decode()
    assert "finished_at" not in stored
    info = await job_info(redis, keys, "j1")
    assert info.error == error
    assert info.errors == [error]
    assert await redis.zscore(keys.delayed, "j1") == now + 1000
    assert await pending(redis, keys) == []
    assert await redis.xlen(keys.stream) == 0


@pytest.mark.usefixtures("group")
async def test_finish_failed_goes_to_the_failed_set(
    redis: Redis, keys: ChannelKeys, scripts: ChannelScripts
) -> None:
    jobs = await claim(redis, scripts, ["j1"])
    entry, _ = jobs["j1"]
    now = now_ms()
    error = an_error()

    await scripts.finish(
        "worker", [Failed(entry.stream_id, 1, "j1", error, entry.message)], now, KEEP_ALL
    )

    stored = await job_hash(redis, keys, "j1")
    assert stored["state"] == "failed"
    assert stored["finished_at"] == str(now)
    assert stored["failures"] == "1"
    assert stored["data"] == entry.message.decode()
    assert (await job_info(redis, keys, "j1")).error == error
    assert await redis.zscore(keys.failed, "j1") == now
    assert await redis.zscore(keys.delayed, "j1") is None
    assert await pending(redis, keys) == []
    assert await redis.xlen(keys.stream) == 0


@pytest.mark.usefixtures("group")
async def test_finish_deferred_is_delayed_without_a_failure(
    redis: Redis, keys: ChannelKeys, scripts: ChannelScripts
) -> None:
    jobs = await claim(redis, scripts, ["j1"])
    entry, _ = jobs["j1"]
    now = now_ms()

    await scripts.finish(
        "worker", [Deferred(entry.stream_id, 1, "j1", now + 700, entry.message)], now, KEEP_ALL
    )

    stored = await job_hash(redis, keys, "j1")
    assert stored["state"] == "delayed"
    assert stored["due_at"] == str(now + 700)
    assert stored["data"] == entry.message.decode()
    assert stored["failures"] == "0"
    assert "error" not in stored
    assert "errors" not in stored
    assert await redis.zscore(keys.delayed, "j1") == now + 700
    assert await pending(redis, keys) == []
    assert await redis.xlen(keys.stream) == 0


@pytest.mark.usefixtures("group")
async def test_finish_records_a_batch_of_mixed_outcomes_and_acks_only_those(
    redis: Redis, keys: ChannelKeys, scripts: ChannelScripts
) -> None:
    jobs = await claim(redis, scripts, ["a", "b", "c"])
    now = now_ms()
    a, b = jobs["a"][0], jobs["b"][0]

    await scripts.finish(
        "worker",
        [Completed(a.stream_id, 1, "a", ""), Failed(b.stream_id, 1, "b", an_error(), b.message)],
        now,
        KEEP_ALL,
    )

    assert [row["message_id"].decode() for row in await pending(redis, keys)] == [
        jobs["c"][0].stream_id
    ]
    assert [entry.stream_id for entry in await stream(redis, keys)] == [jobs["c"][0].stream_id]
    assert (await job_hash(redis, keys, "c"))["state"] == "active"


@pytest.mark.usefixtures("group")
async def test_finish_keeps_the_last_ten_errors(
    redis: Redis, keys: ChannelKeys, scripts: ChannelScripts
) -> None:
    await scripts.enqueue([NewJob("j1", message("j1"))], now_ms())
    now = now_ms()
    for attempt in range(1, 13):
        # taken when the retry before it is due: back to the waiting set, then taken
        [entry] = (await scripts.take("worker", now + 1000, 10, 10)).entries
        error = an_error(attempt, f"run {attempt}")
        retry = Retrying(entry.stream_id, entry.deliveries, "j1", error, now + 1000, entry.message)
        assert await scripts.finish("worker", [retry], now, KEEP_ALL) == []

    info = await job_info(redis, keys, "j1")
    assert [error.attempt for error in info.errors] == list(range(3, 13))
    assert info.error == an_error(12, "run 12")
    assert info.failures == 12


# retention (include/trim.lua, applied by finish.lua)


@pytest.mark.usefixtures("group")
async def test_retention_by_count_keeps_the_newest_completed_jobs(
    redis: Redis, keys: ChannelKeys, scripts: ChannelScripts
) -> None:
    ids = [f"j{n}" for n in range(5)]
    jobs = await claim(redis, scripts, ids)
    keep = Retention(completed_count=2, completed_age_ms=0, failed_count=-1, failed_age_ms=0)
    now = now_ms()
    for offset, job_id in enumerate(ids):
        done = Completed(jobs[job_id][0].stream_id, 1, job_id, "")
        await scripts.finish("worker", [done], now + offset, keep)

    assert await members(redis, keys.completed) == ["j3", "j4"]
    for job_id in ids:
        assert await redis.exists(keys.job(job_id)) == (1 if job_id in ("j3", "j4") else 0)


@pytest.mark.usefixtures("group")
async def test_retention_by_age_drops_completed_jobs_older_than_it(
    redis: Redis, keys: ChannelKeys, scripts: ChannelScripts
) -> None:
    jobs = await claim(redis, scripts, ["old", "new"])
    keep = Retention(completed_count=-1, completed_age_ms=1000, failed_count=-1, failed_age_ms=0)
    now = now_ms()

    old, new = jobs["old"][0], jobs["new"][0]
    await scripts.finish("worker", [Completed(old.stream_id, 1, "old", "")], now - 5000, keep)
    assert await members(redis, keys.completed) == ["old"]  # 0 s old when recorded
    await scripts.finish("worker", [Completed(new.stream_id, 1, "new", "")], now, keep)

    assert await members(redis, keys.completed) == ["new"]
    assert await redis.exists(keys.job("old")) == 0
    assert (await job_hash(redis, keys, "new"))["state"] == "completed"


@pytest.mark.usefixtures("group")
async def test_retention_of_failed_jobs_by_count_and_age(
    redis: Redis, keys: ChannelKeys, scripts: ChannelScripts
) -> None:
    ids = ["f0", "f1", "f2", "f3"]
    jobs = await claim(redis, scripts, ids)
    now = now_ms()
    by_count = Retention(completed_count=-1, completed_age_ms=0, failed_count=2, failed_age_ms=0)
    for offset, job_id in enumerate(ids[:3]):
        entry = jobs[job_id][0]
        failed = Failed(entry.stream_id, 1, job_id, an_error(), entry.message)
        await scripts.finish("worker", [failed], now - 10_000 + offset, by_count)
    assert await members(redis, keys.failed) == ["f1", "f2"]
    assert await redis.exists(keys.job("f0")) == 0

    by_age = Retention(completed_count=-1, completed_age_ms=0, failed_count=-1, failed_age_ms=5000)
    entry = jobs["f3"][0]
    await scripts.finish(
        "worker", [Failed(entry.stream_id, 1, "f3", an_error(), entry.message)], now, by_age
    )
    assert await members(redis, keys.failed) == ["f3"]
    assert await redis.exists(keys.job("f1"), keys.job("f2")) == 0


# reclaim.lua


async def _stall(redis: Redis, keys: ChannelKeys, idle_ms: int) -> None:
    """Wait until every pending entry has been idle longer than `idle_ms`."""

    async def idle() -> bool:
        return all(row["time_since_delivered"] > idle_ms for row in await pending(redis, keys))

    await eventually(idle, what=f"pending entries idle for {idle_ms} ms")


STALLED = JobError(type="stalled", message="stalled too often", traceback="", attempt=0, at=0)


@pytest.mark.usefixtures("group")
async def test_reclaim_takes_over_a_job_idle_too_long(
    redis: Redis, keys: ChannelKeys, scripts: ChannelScripts
) -> None:
    await scripts.enqueue([NewJob("j1", message("j1")), NewJob("j2", message("j2"))], now_ms())
    [dead_entry] = await read(redis, keys, "dead", count=1)
    await _stall(redis, keys, 50)
    [fresh] = await read(redis, keys, "busy", count=1)  # just delivered: not idle enough

    reclaimed = await scripts.reclaim(
        "alive", min_idle_ms=50, count=10, max_stalled=1, now_ms=now_ms(), error=STALLED
    )

    assert reclaimed.entries == [replace(dead_entry, deliveries=2)]
    assert [entry.deliveries for entry in reclaimed.entries] == [2]
    assert reclaimed.failed == 0
    owners = {row["message_id"].decode(): row for row in await pending(redis, keys)}
    assert owners[dead_entry.stream_id]["consumer"] == b"alive"
    assert owners[dead_entry.stream_id]["times_delivered"] == 2
    assert owners[fresh.stream_id]["consumer"] == b"busy"
    assert (await job_hash(redis, keys, "j1"))["state"] == "waiting"


@pytest.mark.usefixtures("group")
async def test_reclaim_fails_a_job_that_stalled_more_than_allowed(
    redis: Redis, keys: ChannelKeys, scripts: ChannelScripts
) -> None:
    jobs = await claim(redis, scripts, ["j1"], consumer="dead")
    entry, _ = jobs["j1"]
    await _stall(redis, keys, 50)
    first = await scripts.reclaim(
        "alive", min_idle_ms=50, count=10, max_stalled=1, now_ms=now_ms(), error=STALLED
    )
    deliveries = [claimed.deliveries for claimed in first.entries]
    assert (first.entries, deliveries, first.failed) == ([replace(entry, deliveries=2)], [2], 0)

    # "alive" stalls as well: one take-over was allowed, this second stall fails the job
    await _stall(redis, keys, 50)
    now = now_ms()
    second = await scripts.reclaim(
        "third", min_idle_ms=50, count=10, max_stalled=1, now_ms=now, error=STALLED
    )

    assert (second.entries, second.failed) == ([], 1)
    info = await job_info(redis, keys, "j1")
    assert info.state == "failed"
    assert info.error == STALLED
    assert info.errors == [STALLED]
    assert info.failures == 1
    assert info.attempts == 1
    stored = await job_hash(redis, keys, "j1")
    assert stored["finished_at"] == str(now)
    assert stored["data"] == entry.message.decode()
    assert await redis.zscore(keys.failed, "j1") == now
    assert await pending(redis, keys) == []
    assert await redis.xlen(keys.stream) == 0


@pytest.mark.usefixtures("group")
async def test_reclaim_with_max_stalled_zero_fails_at_the_first_stall(
    redis: Redis, keys: ChannelKeys, scripts: ChannelScripts
) -> None:
    await claim(redis, scripts, ["j1"], consumer="dead")
    await _stall(redis, keys, 50)

    reclaimed = await scripts.reclaim(
        "alive", min_idle_ms=50, count=10, max_stalled=0, now_ms=now_ms(), error=STALLED
    )

    assert (reclaimed.entries, reclaimed.failed) == ([], 1)
    info = await job_info(redis, keys, "j1")
    assert (info.state, info.error) == ("failed", STALLED)
    assert await members(redis, keys.failed) == ["j1"]


@pytest.mark.usefixtures("group")
async def test_reclaim_fails_a_stalled_message_without_a_job_id_under_a_poison_id(
    redis: Redis, keys: ChannelKeys, scripts: ChannelScripts
) -> None:
    sid = await add(redis, keys, b"not json")
    await read(redis, keys, "dead")
    await _stall(redis, keys, 50)

    reclaimed = await scripts.reclaim(
        "alive", min_idle_ms=50, count=10, max_stalled=0, now_ms=now_ms(), error=STALLED
    )

    assert reclaimed.failed == 1
    assert await members(redis, keys.failed) == [f"poison-{sid}"]
    info = await job_info(redis, keys, f"poison-{sid}")
    assert (info.state, info.error, info.payload) == ("failed", STALLED, "not json")


# finish.lua fencing: an outcome counts only while its run still holds the claim (the
# entry pending for the consumer that ran it, with the delivery count the run started
# under). The consumer below named "paused" missed its stalled interval.

OUTCOME_KINDS = ["done", "retry", "fail"]
STATE_OF_KIND = {"done": "completed", "retry": "delayed", "fail": "failed"}


def outcome_of(kind: str, entry: StreamEntry, delivery: int, job_id: str = "j1") -> Outcome:
    """An outcome of `kind` from the run that held `entry` under `delivery`."""
    if kind == "done":
        return Completed(entry.stream_id, delivery, job_id, f'"run {delivery}"')
    error = an_error(delivery, f"run {delivery} broke")
    if kind == "retry":
        return Retrying(entry.stream_id, delivery, job_id, error, now_ms() + 60_000, entry.message)
    return Failed(entry.stream_id, delivery, job_id, error, entry.message)


async def reclaim_all(scripts: ChannelScripts, consumer: str) -> list[StreamEntry]:
    """XAUTOCLAIM every pending entry for `consumer` (reclaim.lua, no idle minimum)."""
    reclaimed = await scripts.reclaim(
        consumer, min_idle_ms=0, count=100, max_stalled=10, now_ms=now_ms(), error=STALLED
    )
    assert reclaimed.failed == 0
    return reclaimed.entries


async def indexes_holding(redis: Redis, keys: ChannelKeys, job_id: str) -> set[str]:
    """Which of the completed, failed and delayed sets hold the job."""
    indexes = {"completed": keys.completed, "failed": keys.failed, "delayed": keys.delayed}
    return {name for name, key in indexes.items() if await redis.zscore(key, job_id) is not None}


@pytest.mark.usefixtures("group")
@pytest.mark.parametrize("kind", OUTCOME_KINDS)
@pytest.mark.parametrize("how", ["xautoclaim", "xclaim"])
async def test_finish_drops_the_outcome_of_a_consumer_whose_claim_was_taken_over(
    redis: Redis, keys: ChannelKeys, scripts: ChannelScripts, kind: str, how: str
) -> None:
    jobs = await claim(redis, scripts, ["j1"], consumer="paused")
    entry, _ = jobs["j1"]
    if how == "xautoclaim":
        assert [e.deliveries for e in await reclaim_all(scripts, "other")] == [2]
    else:
        await take_over(redis, keys, entry.stream_id, "other")
    before = await job_hash(redis, keys, "j1")

    stale = await scripts.finish("paused", [outcome_of(kind, entry, 1)], now_ms(), KEEP_ALL)

    assert [outcome.job_id for outcome in stale] == ["j1"]
    assert await job_hash(redis, keys, "j1") == before  # state active, no error, no result
    assert await claims(redis, keys) == {entry.stream_id: ("other", 2)}
    assert [e.stream_id for e in await stream(redis, keys)] == [entry.stream_id]
    assert await indexes_holding(redis, keys, "j1") == set()

    # the new owner's outcome is recorded as usual
    now = now_ms()
    assert await scripts.finish("other", [outcome_of(kind, entry, 2)], now, KEEP_ALL) == []

    info = await job_info(redis, keys, "j1")
    assert info.state == STATE_OF_KIND[kind]
    assert await indexes_holding(redis, keys, "j1") == {STATE_OF_KIND[kind]}
    if kind == "done":
        assert (info.result, info.failures, info.errors) == ("run 2", 0, [])
    else:
        assert info.failures == 1
        assert [error.message for error in info.errors] == ["run 2 broke"]
    assert await pending(redis, keys) == []
    assert await redis.xlen(keys.stream) == 0


@pytest.mark.usefixtures("group")
async def test_finish_records_the_outcomes_whose_claim_holds_and_drops_the_rest(
    redis: Redis, keys: ChannelKeys, scripts: ChannelScripts
) -> None:
    jobs = await claim(redis, scripts, ["kept", "lost"], consumer="paused")
    kept, lost = jobs["kept"][0], jobs["lost"][0]
    await take_over(redis, keys, lost.stream_id, "other")
    now = now_ms()

    stale = await scripts.finish(
        "paused",
        [outcome_of("fail", lost, 1, job_id="lost"), outcome_of("done", kept, 1, job_id="kept")],
        now,
        KEEP_ALL,
    )

    assert [outcome.job_id for outcome in stale] == ["lost"]
    assert await members(redis, keys.completed) == ["kept"]
    assert await redis.zcard(keys.failed) == 0
    assert (await job_hash(redis, keys, "lost"))["state"] == "active"
    assert await claims(redis, keys) == {lost.stream_id: ("other", 2)}
    assert [e.stream_id for e in await stream(redis, keys)] == [lost.stream_id]


@pytest.mark.usefixtures("group")
@pytest.mark.parametrize("kind", OUTCOME_KINDS)
async def test_finish_drops_the_outcome_of_an_older_delivery_to_the_same_consumer(
    redis: Redis, keys: ChannelKeys, scripts: ChannelScripts, kind: str
) -> None:
    jobs = await claim(redis, scripts, ["j1"], consumer="worker")
    entry, _ = jobs["j1"]
    # the same consumer name reclaims the entry: a second run, under delivery 2
    assert [e.deliveries for e in await reclaim_all(scripts, "worker")] == [2]
    before = await job_hash(redis, keys, "j1")

    stale = await scripts.finish("worker", [outcome_of(kind, entry, 1)], now_ms(), KEEP_ALL)
    assert [outcome.job_id for outcome in stale] == ["j1"]
    # a delivery count the entry never had is no claim either
    stale = await scripts.finish("worker", [outcome_of(kind, entry, 3)], now_ms(), KEEP_ALL)
    assert [outcome.job_id for outcome in stale] == ["j1"]

    assert await job_hash(redis, keys, "j1") == before
    assert await claims(redis, keys) == {entry.stream_id: ("worker", 2)}
    assert await indexes_holding(redis, keys, "j1") == set()

    assert await scripts.finish("worker", [outcome_of(kind, entry, 2)], now_ms(), KEEP_ALL) == []
    assert (await job_hash(redis, keys, "j1"))["state"] == STATE_OF_KIND[kind]
    assert await indexes_holding(redis, keys, "j1") == {STATE_OF_KIND[kind]}
    assert await pending(redis, keys) == []


@pytest.mark.usefixtures("group")
@pytest.mark.parametrize(
    ("owner_kind", "stale_kind"),
    [("done", "fail"), ("done", "retry"), ("fail", "done"), ("retry", "done"), ("done", "done")],
)
async def test_finish_drops_a_stale_outcome_of_a_job_its_new_owner_finished(
    redis: Redis, keys: ChannelKeys, scripts: ChannelScripts, owner_kind: str, stale_kind: str
) -> None:
    jobs = await claim(redis, scripts, ["j1"], consumer="paused")
    entry, _ = jobs["j1"]
    await reclaim_all(scripts, "other")
    now = now_ms()
    assert await scripts.finish("other", [outcome_of(owner_kind, entry, 2)], now, KEEP_ALL) == []
    assert await redis.xlen(keys.stream) == 0  # acked and deleted by its owner
    recorded = await job_hash(redis, keys, "j1")

    stale = await scripts.finish("paused", [outcome_of(stale_kind, entry, 1)], now + 5, KEEP_ALL)

    assert [outcome.job_id for outcome in stale] == ["j1"]
    assert await job_hash(redis, keys, "j1") == recorded
    assert recorded["state"] == STATE_OF_KIND[owner_kind]
    assert await indexes_holding(redis, keys, "j1") == {STATE_OF_KIND[owner_kind]}
    if owner_kind == "done":
        assert await redis.zscore(keys.failed, "j1") is None
        assert recorded["failures"] == "0"
        assert recorded["result"] == '"run 2"'
    assert await pending(redis, keys) == []
    assert await redis.xlen(keys.stream) == 0


# heartbeat.lua


@pytest.mark.usefixtures("group")
async def test_heartbeat_resets_the_idle_time_of_owned_entries(
    redis: Redis, keys: ChannelKeys, scripts: ChannelScripts
) -> None:
    await scripts.enqueue([NewJob("j1", message("j1"))], now_ms())
    [entry] = await read(redis, keys, "w")
    await _stall(redis, keys, 150)
    [before] = await pending(redis, keys)

    assert await scripts.heartbeat("w", [entry.stream_id]) == []

    [after] = await pending(redis, keys)
    assert after["time_since_delivered"] < before["time_since_delivered"]
    assert after["consumer"] == b"w"
    assert after["times_delivered"] == 1  # a heartbeat is not a delivery


@pytest.mark.usefixtures("group")
async def test_heartbeat_returns_the_entries_another_consumer_took(
    redis: Redis, keys: ChannelKeys, scripts: ChannelScripts
) -> None:
    await scripts.enqueue([NewJob(job_id, message(job_id)) for job_id in ("a", "b", "c")], now_ms())
    a, b, c = await read(redis, keys, "w")
    await redis.xclaim(keys.stream, CONSUMER_GROUP, "other", 0, [b.stream_id])
    await redis.xack(keys.stream, CONSUMER_GROUP, c.stream_id)  # finished meanwhile

    lost = await scripts.heartbeat("w", [a.stream_id, b.stream_id, c.stream_id])

    assert lost == [b.stream_id, c.stream_id]
    owners = {row["message_id"].decode(): row["consumer"] for row in await pending(redis, keys)}
    assert owners == {a.stream_id: b"w", b.stream_id: b"other"}


# take.lua


async def test_take_moves_due_delayed_jobs_to_the_waiting_set_first(
    redis: Redis, keys: ChannelKeys, scripts: ChannelScripts
) -> None:
    await create_group(redis, keys)
    now = now_ms()
    await scripts.enqueue(
        [NewJob("soon", message("soon"), 1000), NewJob("later", message("later"), 60_000)], now
    )

    before_due = await scripts.take("w", now + 999, 10, 100)
    assert (before_due.entries, before_due.next_due_ms, before_due.hold) == ([], now + 1000, 0)
    assert await members(redis, keys.delayed) == ["soon", "later"]

    # `most` 0: only the move, nothing taken
    moved = await scripts.take("w", now + 1000, 0, 100)
    assert (moved.entries, moved.next_due_ms) == ([], now + 60_000)
    assert await job_hash(redis, keys, "soon") == {
        "state": "waiting",
        "enqueued_at": str(now),
        "attempts": "0",
        "failures": "0",
        "priority": str(DEFAULT_PRIORITY),
        "data": message("soon").decode(),
    }
    assert await members(redis, keys.waiting) == ["soon"]
    assert await members(redis, keys.delayed) == ["later"]

    [soon] = (await scripts.take("w", now + 1000, 10, 100)).entries
    assert soon.message == message("soon")
    assert await claims(redis, keys) == {soon.stream_id: ("w", 1)}
    assert "data" not in await job_hash(redis, keys, "soon")  # the stream holds it now

    last = await scripts.take("w", now + 60_000, 10, 100)
    assert [job_id_in(entry.message) for entry in last.entries] == ["later"]
    assert last.next_due_ms is None
    assert await redis.zcard(keys.delayed) == 0


async def test_take_moves_at_most_the_given_number_of_due_jobs(
    redis: Redis, keys: ChannelKeys, scripts: ChannelScripts
) -> None:
    await create_group(redis, keys)
    now = now_ms()
    await scripts.enqueue([NewJob(f"j{n}", message(f"j{n}"), 10 + n) for n in range(3)], now)

    taken = await scripts.take("w", now + 100, 0, 2)

    assert taken.next_due_ms == now + 12
    assert await members(redis, keys.waiting) == ["j0", "j1"]
    assert await members(redis, keys.delayed) == ["j2"]


async def test_take_gives_the_highest_priority_first_and_fifo_within_one(
    redis: Redis, keys: ChannelKeys, scripts: ChannelScripts
) -> None:
    await create_group(redis, keys)
    jobs = [("low1", 9), ("mid1", 5), ("high1", 1), ("low2", 9), ("high2", 1), ("mid2", 5)]
    await scripts.enqueue(
        [NewJob(job_id, message(job_id), priority=priority) for job_id, priority in jobs],
        now_ms(),
    )

    first = await scripts.take("w", now_ms(), 3, 100)
    rest = await scripts.take("w", now_ms(), 10, 100)

    assert [job_id_in(entry.message) for entry in first.entries] == ["high1", "high2", "mid1"]
    assert [job_id_in(entry.message) for entry in rest.entries] == ["mid2", "low1", "low2"]
    # each taken entry is pending for the consumer, in start order on the stream
    taken = [entry.stream_id for entry in (*first.entries, *rest.entries)]
    assert [entry.stream_id for entry in await stream(redis, keys)] == taken
    assert set(await claims(redis, keys)) == set(taken)
    assert await redis.zcard(keys.waiting) == 0


async def test_take_gives_entries_a_taskiq_producer_wrote_to_the_stream_first(
    redis: Redis, keys: ChannelKeys, scripts: ChannelScripts
) -> None:
    await create_group(redis, keys)
    await scripts.enqueue([NewJob("ours", message("ours"), priority=1)], now_ms())
    foreign = await add(redis, keys, message("foreign"))

    taken = await scripts.take("w", now_ms(), 10, 100)

    assert [job_id_in(entry.message) for entry in taken.entries] == ["foreign", "ours"]
    assert taken.entries[0].stream_id == foreign
    assert len(await claims(redis, keys)) == 2


@pytest.mark.parametrize("kind", ["retry", "defer"])
async def test_take_brings_back_a_retry_of_a_job_a_taskiq_producer_wrote(
    redis: Redis, keys: ChannelKeys, scripts: ChannelScripts, kind: str
) -> None:
    """Such a job has a hash only from its first start on, without a priority: it waits
    at the default one when due, instead of leaving the delayed set for nowhere."""
    await create_group(redis, keys)
    await add(redis, keys, message("foreign"))
    [entry] = (await scripts.take("w", now_ms(), 10, 100)).entries
    await scripts.start("w", [claim_of(entry)], now_ms())
    now = now_ms()
    later: Outcome = (
        Retrying(entry.stream_id, 1, "foreign", an_error(), now + 10, entry.message)
        if kind == "retry"
        else Deferred(entry.stream_id, 1, "foreign", now + 10, entry.message)
    )
    assert await scripts.finish("w", [later], now, KEEP_ALL) == []
    assert "priority" not in await job_hash(redis, keys, "foreign")

    [again] = (await scripts.take("w", now + 10, 10, 100)).entries

    assert again.message == entry.message
    assert await redis.zcard(keys.delayed) == 0
    started = await scripts.start("w", [claim_of(again)], now_ms())
    assert started.runs == [RunNumbers(2, 1 if kind == "retry" else 0)]


async def test_take_leaves_the_marker_set_while_jobs_are_left(
    redis: Redis, keys: ChannelKeys, scripts: ChannelScripts
) -> None:
    await create_group(redis, keys)
    await scripts.enqueue([NewJob(f"j{n}", message(f"j{n}")) for n in range(3)], now_ms())
    await redis.delete(keys.marker)  # as a worker that popped it

    assert len((await scripts.take("w", now_ms(), 2, 100)).entries) == 2
    assert await markers(redis, keys) == {"0": 0}  # the next blocked worker wakes

    await redis.delete(keys.marker)
    assert len((await scripts.take("w", now_ms(), 2, 100)).entries) == 1
    assert await markers(redis, keys) == {}


async def test_take_takes_nothing_while_the_channel_is_paused(
    redis: Redis, keys: ChannelKeys, scripts: ChannelScripts, client: Client
) -> None:
    await create_group(redis, keys)
    now = now_ms()
    await scripts.enqueue(
        [NewJob("waiting", message("waiting")), NewJob("due", message("due"), 10)], now
    )
    await add(redis, keys, message("foreign"))
    await client.pause(keys.channel)

    taken = await scripts.take("w", now + 10, 10, 100)

    assert (taken.entries, taken.hold) == ([], PAUSED)
    # due jobs still join the waiting set, where they wait for the resume
    assert await members(redis, keys.waiting) == ["waiting", "due"]
    assert await claims(redis, keys) == {}

    await client.resume(keys.channel)
    resumed = await scripts.take("w", now + 10, 10, 100)
    assert [job_id_in(entry.message) for entry in resumed.entries] == ["foreign", "waiting", "due"]
    assert resumed.hold == 0


async def test_take_takes_nothing_while_a_retry_after_holds_the_channel_back(
    redis: Redis, keys: ChannelKeys, scripts: ChannelScripts
) -> None:
    await create_group(redis, keys)
    await scripts.enqueue([NewJob("j1", message("j1"))], now_ms())
    await redis.set(keys.backoff(), 1, px=60_000)

    held = await scripts.take("w", now_ms(), 10, 100)

    assert held.entries == []
    assert 0 < held.hold <= 60_000
    assert await members(redis, keys.waiting) == ["j1"]
    # a limiter group's back-off does not hold the whole channel
    await redis.delete(keys.backoff())
    await redis.set(keys.backoff("tenant-a"), 1, px=60_000)
    assert [job_id_in(e.message) for e in (await scripts.take("w", now_ms(), 10, 100)).entries] == [
        "j1"
    ]


# requeue.lua


@pytest.mark.usefixtures("group")
async def test_requeue_gives_taken_jobs_back_to_the_waiting_set_at_their_priority(
    redis: Redis, keys: ChannelKeys, scripts: ChannelScripts
) -> None:
    await scripts.enqueue(
        [NewJob("a", message("a"), priority=3), NewJob("b", message("b"), priority=3)], now_ms()
    )
    a, b = await read(redis, keys, "w")
    await scripts.enqueue([NewJob("low", message("low"), priority=8)], now_ms())

    assert await scripts.requeue("w", [held_of(a)]) == 1

    assert [entry.stream_id for entry in await stream(redis, keys)] == [b.stream_id]
    assert await claims(redis, keys) == {b.stream_id: ("w", 1)}
    assert await members(redis, keys.waiting) == ["a", "low"]  # ahead of a lower priority
    stored = await job_hash(redis, keys, "a")
    assert (stored["state"], stored["data"], stored["priority"]) == (
        "waiting",
        a.message.decode(),
        "3",
    )
    assert await markers(redis, keys) == {"0": 0}
    # waiting again: the next reader takes it, under a new stream id
    [again, _] = await read(redis, keys, "other")
    assert again.message == a.message
    assert again.stream_id not in (a.stream_id, b.stream_id)


# limit.lua and restamp.lua


async def test_limit_grants_over_two_windows(
    redis: Redis, keys: ChannelKeys, scripts: ChannelScripts
) -> None:
    window = 300

    granted, wait = await scripts.limit(RateLimit("k", window, 3, "t1"), 5)
    assert granted == 3
    assert 0 < wait <= window
    assert await members(redis, keys.limiter("k")) == ["t1:3"]
    assert await redis.get(keys.limiter_total("k")) == b"3"
    refused, refused_wait = await scripts.limit(RateLimit("k", window, 3, "t2"), 1)
    assert refused == 0
    assert 0 < refused_wait <= window
    # another group has a window of its own
    assert await scripts.limit(RateLimit("other", window, 3, "t3"), 1) == (1, 0)

    await asyncio.sleep(refused_wait / 1000 + 0.05)
    assert await scripts.limit(RateLimit("k", window, 3, "t4"), 2) == (2, 0)
    assert await members(redis, keys.limiter("k")) == ["t4:2"]
    assert await redis.get(keys.limiter_total("k")) == b"2"


async def test_restamp_dates_a_grant_to_now(
    redis: Redis, keys: ChannelKeys, scripts: ChannelScripts
) -> None:
    limit = RateLimit(None, 10_000, 5, "t1")
    assert await scripts.limit(limit, 3) == (3, 0)
    granted_at = await redis.zscore(keys.limiter(), "t1:3")
    assert granted_at is not None
    await asyncio.sleep(0.02)

    before = await _redis_ms(redis)
    await scripts.restamp(limit, 3)
    after = await _redis_ms(redis)

    restamped = await redis.zscore(keys.limiter(), "t1:3")
    assert restamped is not None
    assert granted_at < before <= restamped <= after
    # a grant that is not in the window is not brought back
    await scripts.restamp(RateLimit(None, 10_000, 5, "gone"), 2)
    assert await members(redis, keys.limiter()) == ["t1:3"]
    assert await redis.get(keys.limiter_total()) == b"3"


async def _redis_ms(redis: Redis) -> int:
    seconds, micros = await redis.time()
    return seconds * 1000 + micros // 1000


# retry_failed.lua


@pytest.mark.usefixtures("group")
async def test_retry_failed_puts_a_failed_job_back_in_the_waiting_set(
    redis: Redis, keys: ChannelKeys, scripts: ChannelScripts
) -> None:
    jobs = await claim(redis, scripts, ["j1"])
    entry, _ = jobs["j1"]
    await scripts.finish(
        "worker", [Failed(entry.stream_id, 1, "j1", an_error(), entry.message)], now_ms(), KEEP_ALL
    )
    await redis.delete(keys.marker)

    assert await scripts.retry_failed("j1") == Transition(True, "failed")

    stored = await job_hash(redis, keys, "j1")
    assert stored["state"] == "waiting"
    assert stored["failures"] == "0"
    assert stored["data"] == entry.message.decode()  # until a worker takes it
    assert "finished_at" not in stored
    assert await redis.zscore(keys.failed, "j1") is None
    assert await members(redis, keys.waiting) == ["j1"]
    assert await markers(redis, keys) == {"0": 0}
    assert await redis.xlen(keys.stream) == 0
    assert [e.message for e in await read(redis, keys, "w")] == [entry.message]


@pytest.mark.usefixtures("group")
async def test_retry_failed_runs_a_cancelled_job_again(
    redis: Redis, keys: ChannelKeys, scripts: ChannelScripts
) -> None:
    await scripts.enqueue([NewJob("j1", message("j1"), priority=2)], now_ms())
    assert (await scripts.cancel("j1", now_ms())).outcome == Cancellation.CANCELLED

    assert await scripts.retry_failed("j1") == Transition(True, "cancelled")

    assert await redis.zcard(keys.cancelled) == 0
    assert await members(redis, keys.waiting) == ["j1"]
    assert await redis.zscore(keys.waiting, "j1") == 2 * PRIORITY_SPAN + 2  # its priority
    [entry] = await read(redis, keys, "w")
    assert entry.message == message("j1")


@pytest.mark.usefixtures("group")
async def test_retry_failed_refuses_other_states_and_missing_jobs(
    redis: Redis, keys: ChannelKeys, scripts: ChannelScripts
) -> None:
    jobs = await claim(redis, scripts, ["done"])
    done = Completed(jobs["done"][0].stream_id, 1, "done", "")
    await scripts.finish("worker", [done], now_ms(), KEEP_ALL)
    before = await job_hash(redis, keys, "done")

    assert await scripts.retry_failed("done") == Transition(False, "completed")
    assert await scripts.retry_failed("missing") == Transition(False, "")

    assert await job_hash(redis, keys, "done") == before
    assert await redis.xlen(keys.stream) == 0
    assert await redis.exists(keys.job("missing")) == 0


# discard.lua


@pytest.mark.usefixtures("group")
async def test_discard_removes_finished_cancelled_and_delayed_jobs(
    redis: Redis, keys: ChannelKeys, scripts: ChannelScripts
) -> None:
    jobs = await claim(redis, scripts, ["failed", "completed"])
    failed, completed = jobs["failed"][0], jobs["completed"][0]
    await scripts.finish(
        "worker",
        [
            Failed(failed.stream_id, 1, "failed", an_error(), failed.message),
            Completed(completed.stream_id, 1, "completed", ""),
        ],
        now_ms(),
        KEEP_ALL,
    )
    await scripts.enqueue([NewJob("delayed", message("delayed"), 60_000)], now_ms())
    await scripts.enqueue([NewJob("cancelled", message("cancelled"))], now_ms())
    await scripts.cancel("cancelled", now_ms())

    for job_id in ("failed", "completed", "delayed", "cancelled"):
        assert await scripts.discard(job_id) == Transition(True, job_id)
        assert await redis.exists(keys.job(job_id)) == 0
    for index in (keys.failed, keys.completed, keys.delayed, keys.cancelled):
        assert await redis.zcard(index) == 0


@pytest.mark.usefixtures("group")
async def test_discard_refuses_waiting_and_active_jobs(
    redis: Redis, keys: ChannelKeys, scripts: ChannelScripts
) -> None:
    await claim(redis, scripts, ["active"])
    await scripts.enqueue([NewJob("waiting", message("waiting"))], now_ms())

    assert await scripts.discard("waiting") == Transition(False, "waiting")
    assert await scripts.discard("active") == Transition(False, "active")
    assert await scripts.discard("missing") == Transition(False, "")

    assert (await job_hash(redis, keys, "waiting"))["state"] == "waiting"
    assert (await job_hash(redis, keys, "active"))["state"] == "active"
    assert await members(redis, keys.waiting) == ["waiting"]
    assert await redis.xlen(keys.stream) == 1


# JobError: the one record, from the worker through Lua to every reader


@pytest.mark.usefixtures("group")
async def test_job_error_round_trip(
    redis: Redis, keys: ChannelKeys, scripts: ChannelScripts
) -> None:
    jobs = await claim(redis, scripts, ["j1"])
    entry, numbers = jobs["j1"]
    try:
        raise ValueError("the provider said no: ünïcode")
    except ValueError as error:
        record = JobError.from_exception(error, numbers.attempt)
    assert json.loads(record.to_json()) == {
        "type": "builtins.ValueError",
        "message": "the provider said no: ünïcode",
        "traceback": record.traceback,
        "attempt": 1,
        "at": record.at,
    }
    assert "ValueError: the provider said no" in record.traceback

    await scripts.finish(
        "worker", [Failed(entry.stream_id, 1, "j1", record, entry.message)], now_ms(), KEEP_ALL
    )

    info = JobInfo.from_hash(keys.channel, "j1", await raw_hash(redis, keys, "j1"))
    assert info.error == record
    assert info.errors == [record]
    assert info.payload == {"n": 0}  # the message is kept with the failure
