"""Client.jobs_page (cursor paging and filters), the bulk actions, and the process
registry (runtime.engine.browse, runtime.engine.processes), against Redis."""

from __future__ import annotations

import asyncio
import json

import pytest
from redis.asyncio import Redis

from runtime.engine.browse import JobFilter
from runtime.engine.client import Client
from runtime.engine.jobs import JobError
from runtime.engine.keys import ChannelKeys
from runtime.engine.processes import ProcessHeartbeat, ProcessKeys, live_processes
from runtime.engine.scripts import ChannelScripts, NewJob
from runtime.errors import InvalidJobRequest
from tests.runtime.engine.support import CHANNEL, claim, message, now_ms


async def fail(redis: Redis, keys: ChannelKeys, job_id: str, at: int, kind: str) -> None:
    """A failed job as finish.lua leaves one: hash with its message and error, in the set."""
    error = JobError(kind, f"{kind} happened", "Traceback ...", 1, at).to_json()
    await redis.hset(
        keys.job(job_id),
        mapping={
            "state": "failed",
            "attempts": 1,
            "failures": 1,
            "enqueued_at": at - 5,
            "finished_at": at,
            "error": error,
            "errors": json.dumps([json.loads(error)]),
            "data": message(job_id),
        },
    )
    await redis.zadd(keys.failed, {job_id: at})


async def test_pages_of_a_sorted_set_follow_the_cursor_through_equal_scores(
    redis: Redis, keys: ChannelKeys, client: Client
) -> None:
    # 7 jobs failed in the same millisecond (finish.lua stamps a batch with one time)
    for n in range(7):
        await fail(redis, keys, f"j{n}", 1000, "x.Boom")
    await fail(redis, keys, "newest", 2000, "x.Boom")

    seen: list[str] = []
    cursor = None
    while True:
        page = await client.jobs_page(CHANNEL, "failed", cursor=cursor, limit=3)
        assert len(page.jobs) <= 3
        seen += [job.id for job in page.jobs]
        if page.next_cursor is None:
            break
        cursor = page.next_cursor
    assert seen[0] == "newest"
    assert sorted(seen) == sorted(["newest", *(f"j{n}" for n in range(7))])
    assert len(seen) == len(set(seen))  # nothing twice
    row = (await client.jobs_page(CHANNEL, "failed", limit=1)).jobs[0]
    assert row.error is not None
    assert row.error.type == "x.Boom"
    assert row.payload is None
    assert row.errors == []


async def test_error_type_and_time_range_filters(
    redis: Redis, keys: ChannelKeys, client: Client
) -> None:
    for n in range(30):
        await fail(redis, keys, f"j{n:02}", 1000 + n, "app.Timeout" if n % 3 else "app.Refused")

    refused = await client.jobs_page(
        CHANNEL, "failed", limit=4, where=JobFilter(error_type="Refused")
    )
    assert [job.id for job in refused.jobs] == ["j27", "j24", "j21", "j18"]
    assert refused.next_cursor is not None
    rest = await client.jobs_page(
        CHANNEL,
        "failed",
        cursor=refused.next_cursor,
        limit=50,
        where=JobFilter(error_type="Refused"),
    )
    assert [job.id for job in rest.jobs] == ["j15", "j12", "j09", "j06", "j03", "j00"]
    assert rest.next_cursor is None

    window = await client.jobs_page(
        CHANNEL, "failed", limit=50, where=JobFilter(since_ms=1010, until_ms=1012)
    )
    assert [job.id for job in window.jobs] == ["j12", "j11", "j10"]
    both = await client.jobs_page(
        CHANNEL,
        "failed",
        limit=50,
        where=JobFilter(error_type="Refused", since_ms=1010, until_ms=1020),
    )
    assert [job.id for job in both.jobs] == ["j18", "j15", "j12"]


async def test_a_crafted_cursor_or_filter_is_refused_by_name(client: Client) -> None:
    for cursor in ("*", "12:", "abc:x", "1" * 30 + ":x"):
        with pytest.raises(InvalidJobRequest, match=r"^cursor: "):
            await client.jobs_page(CHANNEL, "failed", cursor=cursor)
    with pytest.raises(InvalidJobRequest, match=r"^cursor: "):
        await client.jobs_page(CHANNEL, "active", cursor="* 0")
    with pytest.raises(InvalidJobRequest, match=r"^error: "):
        await client.jobs_page(CHANNEL, "waiting", where=JobFilter(error_type="x"))


@pytest.mark.usefixtures("group")
async def test_stream_pages_follow_stream_ids(
    redis: Redis, scripts: ChannelScripts, client: Client
) -> None:
    await claim(redis, scripts, ["a1", "a2", "a3"])
    await scripts.enqueue([NewJob(f"w{n}", message(f"w{n}", n)) for n in range(5)], now_ms())

    first = await client.jobs_page(CHANNEL, "waiting", limit=2)
    assert [job.id for job in first.jobs] == ["w0", "w1"]
    second = await client.jobs_page(CHANNEL, "waiting", cursor=first.next_cursor, limit=2)
    assert [job.id for job in second.jobs] == ["w2", "w3"]
    last = await client.jobs_page(CHANNEL, "waiting", cursor=second.next_cursor, limit=2)
    assert [job.id for job in last.jobs] == ["w4"]
    assert last.next_cursor is None

    active = await client.jobs_page(CHANNEL, "active", limit=2)
    assert [job.id for job in active.jobs] == ["a1", "a2"]
    more = await client.jobs_page(CHANNEL, "active", cursor=active.next_cursor, limit=2)
    assert [job.id for job in more.jobs] == ["a3"]
    with pytest.raises(InvalidJobRequest, match=r"^since: "):
        await client.jobs_page(CHANNEL, "waiting", where=JobFilter(since_ms=now_ms()))


async def test_process_records_live_while_heartbeating_and_leave_on_stop(
    redis: Redis, key_prefix: str, client: Client
) -> None:
    beat = ProcessHeartbeat(
        redis,
        key_prefix,
        "host-1-abc",
        app="probe",
        worker_channels=["fast", "slow"],
        http="127.0.0.1:8000",
        running_jobs=lambda: 3,
        interval_ms=100,
    )
    beat.start()
    try:
        for _ in range(50):
            if await client.processes():
                break
            await asyncio.sleep(0.02)
        (found,) = await client.processes()
        assert found.id == "host-1-abc"
        assert found.worker_channels == ["fast", "slow"]
        assert found.http == "127.0.0.1:8000"
        assert found.running_jobs == 3
        assert found.heartbeat_at >= found.started_at
        assert found.version
    finally:
        await beat.stop()
    assert await client.processes() == []


async def test_a_process_that_stopped_heartbeating_is_not_listed(
    redis: Redis, key_prefix: str
) -> None:
    keys = ProcessKeys(key_prefix)
    dead = ProcessHeartbeat(redis, key_prefix, "dead-1", app="probe", interval_ms=50)
    await dead.beat()  # one beat, then the process "dies": its record expires in 150 ms
    assert [p.id for p in await live_processes(redis, key_prefix, ttl_ms=150)] == ["dead-1"]
    await asyncio.sleep(0.3)
    assert await live_processes(redis, key_prefix, ttl_ms=150) == []
    assert not await redis.exists(keys.process("dead-1"))
    alive = ProcessHeartbeat(redis, key_prefix, "alive-1", app="probe", interval_ms=50)
    await alive.beat()  # prunes the dead entry from the index
    assert await redis.zrange(keys.index, 0, -1) == [b"alive-1"]
    await alive.stop()
