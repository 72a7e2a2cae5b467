"""Schedules on a real Redis: exactly one job per tick with several scheduler loops on
their own connections, no duplicate and no loss across a restart, catch-up once or
skip after downtime, a tick left by a process that died, and the runtime operations."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator

import pytest
from redis.asyncio import Redis

from runtime.engine.client import Client
from runtime.engine.clock import now_ms
from runtime.engine.metrics import Metrics
from runtime.engine.scheduler import LEASE_MS, Scheduler
from runtime.engine.schedules import Schedule, schedule_job_id
from runtime.errors import InvalidScheduleError, ScheduleConflict, ScheduleNotFound
from tests.runtime.engine.support import CHANNEL, Message, make_channel


@pytest.fixture
async def clients(redis_url: str, key_prefix: str) -> AsyncIterator[list[Client]]:
    """Three clients, each on its own connection pool: three processes' worth."""
    made = [Client(Redis.from_url(redis_url), prefix=key_prefix) for _ in range(3)]
    yield made
    for client in made:
        await client.close()


async def scheduled_job_ids(redis: Redis, prefix: str, name: str) -> list[str]:
    pattern = f"{prefix}:{{{CHANNEL}}}:job:schedule:{name}:*"
    keys = [key.decode() async for key in redis.scan_iter(match=pattern, count=1000)]
    return sorted(key.split(":job:", 1)[1] for key in keys)


def every_second(name: str = "tick", **changes: object) -> Schedule:
    return Schedule(name=name, payload={"n": 1}, every_ms=1000, **changes)  # type: ignore[arg-type]


async def test_three_racing_loops_enqueue_exactly_one_job_per_tick(
    clients: list[Client], redis: Redis, key_prefix: str
) -> None:
    channel = make_channel()
    await clients[0].schedules.upsert(CHANNEL, every_second())
    metrics = [Metrics() for _ in clients]
    loops = [Scheduler([channel], c, metrics=m) for c, m in zip(clients, metrics, strict=True)]
    started = now_ms()
    for loop in loops:
        loop.start()
    await asyncio.sleep(3.6)
    for loop in loops:
        await loop.stop()
    ended = now_ms()
    ids = await scheduled_job_ids(redis, key_prefix, "tick")
    ticks = [int(job_id.rsplit(":", 1)[1]) for job_id in ids]
    expected = list(range((started // 1000 + 1) * 1000, ended // 1000 * 1000 + 1, 1000))
    # Every tick in the window once; a tick at the very end may have been taken or not.
    assert ticks[: len(expected) - 1] == expected[:-1]
    assert len(ticks) in (len(expected), len(expected) - 1)
    info = await clients[0].schedules.get(CHANNEL, "tick")
    assert info.enqueued == len(ticks)
    assert info.last_job_id == schedule_job_id("tick", ticks[-1])
    counted = sum(
        m.registry.get_sample_value(
            "channelkit_schedule_jobs_enqueued_total", {"channel": CHANNEL, "schedule": "tick"}
        )
        or 0
        for m in metrics
    )
    assert counted == len(ticks)
    assert metrics[0].registry.get_sample_value("channelkit_schedules", {"channel": CHANNEL}) == 1


async def test_a_restart_neither_duplicates_nor_loses_a_tick(
    clients: list[Client], redis: Redis, key_prefix: str
) -> None:
    channel = make_channel()
    await clients[0].schedules.upsert(CHANNEL, every_second())
    first = Scheduler([channel], clients[0])
    first.start()
    await asyncio.sleep(1.5)
    await first.stop()
    before = await scheduled_job_ids(redis, key_prefix, "tick")
    await asyncio.sleep(1.2)  # down over a tick
    second = Scheduler([channel], clients[1])  # the redeployed process
    restart = now_ms()
    second.start()
    await asyncio.sleep(1.5)
    await second.stop()
    ticks = [int(i.rsplit(":", 1)[1]) for i in await scheduled_job_ids(redis, key_prefix, "tick")]
    assert before, "the first process enqueued nothing"
    assert len(ticks) == len(set(ticks))
    # The ticks that fell while down became one job, for the latest (catch_up: once);
    # every tick after it, once.
    latest_missed = restart // 1000 * 1000
    assert latest_missed in ticks
    after = [tick for tick in ticks if tick >= latest_missed]
    assert after == list(range(latest_missed, ticks[-1] + 1, 1000))


@pytest.mark.parametrize(("catch_up", "expected"), [("once", 1), ("skip", 0)])
async def test_ticks_missed_while_down(
    clients: list[Client], redis: Redis, key_prefix: str, catch_up: str, expected: int
) -> None:
    client = clients[0]
    daily = Schedule(name="digest", payload={"n": 2}, cron="0 8 * * *", catch_up=catch_up)  # type: ignore[arg-type]
    await client.schedules.upsert(CHANNEL, daily)
    store = client.schedules.store
    # Down for three days: the cursor (last tick taken) is three days old.
    three_days_ago = now_ms() - 3 * 86_400_000
    await redis.hset(store.hash_key(CHANNEL, "digest"), "after", three_days_ago)
    await redis.zadd(store.index_key(CHANNEL), {"digest": three_days_ago})
    scheduler = Scheduler([make_channel()], client)
    now = now_ms()
    await scheduler.run_due(now)
    await scheduler.run_due(now_ms())  # nothing more is due
    ids = await scheduled_job_ids(redis, key_prefix, "digest")
    assert len(ids) == expected
    info = await client.schedules.get(CHANNEL, "digest")
    latest_8am = daily.cadence().latest_at_or_before(now, three_days_ago)
    assert info.after_ms == latest_8am
    assert info.next_run_ms is not None
    assert info.next_run_ms > now
    if expected:
        assert ids == [schedule_job_id("digest", latest_8am)]
        job = await client.job(CHANNEL, ids[0])
        assert job is not None
        assert job.state == "waiting"


async def test_a_tick_left_by_a_process_that_died_is_enqueued_once(
    clients: list[Client], redis: Redis, key_prefix: str
) -> None:
    client = clients[0]
    await client.schedules.upsert(CHANNEL, every_second())
    store = client.schedules.store
    now = now_ms() + 1500  # a tick is due
    info = await client.schedules.get(CHANNEL, "tick")
    tick = info.schedule.cadence().latest_at_or_before(now, info.after_ms + 1)
    # A process took the tick and died before enqueueing it.
    assert await store.advance(
        info, new_after=tick, next_tick=tick + 1000, enqueue_tick=tick, now=now, lease_ms=LEASE_MS
    )
    scheduler = Scheduler([make_channel()], clients[1])
    await scheduler.run_due(now)  # the lease holds: nothing happens
    assert await scheduled_job_ids(redis, key_prefix, "tick") == []
    await scheduler.run_due(now + LEASE_MS)  # the lease ended: taken over
    await scheduler.run_due(now + LEASE_MS)
    ids = await scheduled_job_ids(redis, key_prefix, "tick")
    assert schedule_job_id("tick", tick) in ids
    assert len(ids) == len(set(ids))
    assert (await client.schedules.get(CHANNEL, "tick")).pending_tick_ms is None


async def test_runtime_operations(clients: list[Client], redis: Redis, key_prefix: str) -> None:
    schedules = clients[0].schedules
    created = await schedules.upsert(CHANNEL, every_second("a"))
    assert created.source == "api"
    assert not created.paused
    assert created.next_run_ms
    assert [info.name for info in await schedules.list(CHANNEL)] == ["a"]
    paused = await schedules.pause(CHANNEL, "a")
    assert paused.paused
    assert paused.next_run_ms is None
    scheduler = Scheduler([make_channel()], clients[1])
    await scheduler.run_due(now_ms() + 5000)
    assert await scheduled_job_ids(redis, key_prefix, "a") == []
    resumed = await schedules.resume(CHANNEL, "a")
    assert not resumed.paused
    assert (resumed.next_run_ms or 0) > now_ms() - 1000
    # The same definition again keeps the pause state and history; a new one replaces it.
    await schedules.pause(CHANNEL, "a")
    assert (await schedules.upsert(CHANNEL, every_second("a"))).paused
    changed = await schedules.upsert(CHANNEL, every_second("a", timezone="Europe/Berlin"))
    assert changed.schedule.timezone == "Europe/Berlin"
    assert not changed.paused
    await schedules.remove(CHANNEL, "a")
    with pytest.raises(ScheduleNotFound, match="no schedule 'a' in channel 'jobs'"):
        await schedules.get(CHANNEL, "a")
    with pytest.raises(ScheduleNotFound):
        await schedules.remove(CHANNEL, "a")
    with pytest.raises(InvalidScheduleError, match=r"^name: "):
        every_second("bad name")
    with pytest.raises(InvalidScheduleError, match=r"^cron: bad cron expression"):
        Schedule(name="x", payload={}, cron="every day")


async def test_channels_yaml_schedules_are_synced_and_protected(
    clients: list[Client], redis: Redis
) -> None:
    schedules = clients[0].schedules
    await schedules.upsert(CHANNEL, every_second("made-at-runtime"))
    changed, removed = await schedules.sync_declared(
        CHANNEL, [every_second("declared"), every_second("dropped")]
    )
    assert (sorted(changed), removed) == (["declared", "dropped"], [])
    with pytest.raises(ScheduleConflict, match=r"declared in channels\.yaml"):
        await schedules.upsert(CHANNEL, every_second("declared", timezone="Asia/Tokyo"))
    with pytest.raises(ScheduleConflict):
        await schedules.remove(CHANNEL, "declared")
    assert (await schedules.pause(CHANNEL, "declared")).paused  # pause works on it
    # Next start: "dropped" left channels.yaml; the unchanged one keeps its pause.
    changed, removed = await schedules.sync_declared(CHANNEL, [every_second("declared")])
    assert (changed, removed) == ([], ["dropped"])
    names = {info.name: info for info in await schedules.list(CHANNEL)}
    assert sorted(names) == ["declared", "made-at-runtime"]
    assert names["declared"].paused
    assert names["declared"].source == "config"


def test_payload_is_kept_as_the_model_serialises_it() -> None:
    schedule = Schedule.with_payload("m", Message(n=3), every_ms=60_000)
    assert dict(schedule.payload) == {"n": 3}
    assert time.time() > 0
