"""Client.jobs for the states that are not a plain sorted set by time: waiting = the
waiting set in start order (by priority, then FIFO), read by rank at any depth;
active = the group's pending entries, in stream order, read at most STREAM_LIST_DEPTH
deep into the stream."""

from __future__ import annotations

import pytest
from redis.asyncio import Redis

from runtime.engine.client import STREAM_LIST_DEPTH, Client
from runtime.engine.keys import ChannelKeys
from runtime.engine.scripts import ChannelScripts, NewJob
from runtime.errors import InvalidJobRequest
from tests.runtime.engine.support import CHANNEL, claim, message, now_ms


@pytest.mark.usefixtures("group")
async def test_waiting_jobs_are_listed_in_start_order_and_active_in_stream_order(
    redis: Redis, keys: ChannelKeys, scripts: ChannelScripts, client: Client
) -> None:
    await claim(redis, scripts, ["a1", "a2"])  # taken and started: active
    await scripts.enqueue(
        [
            NewJob("w0", message("w0", 0), priority=5),
            NewJob("w1", message("w1", 1), priority=9),
            NewJob("w2", message("w2", 2), priority=2),
            NewJob("w3", message("w3", 3), priority=5),
            NewJob("w4", message("w4", 4), priority=2),
        ],
        now_ms(),
    )

    waiting = await client.jobs(CHANNEL, "waiting")
    assert [job.id for job in waiting] == ["w2", "w4", "w0", "w3", "w1"]
    assert {job.state for job in waiting} == {"waiting"}
    assert [job.priority for job in waiting] == [2, 2, 5, 5, 9]
    page = await client.jobs(CHANNEL, "waiting", offset=1, limit=2)
    assert [job.id for job in page] == ["w4", "w0"]

    active = await client.jobs(CHANNEL, "active")
    assert [job.id for job in active] == ["a1", "a2"]
    assert [job.id for job in await client.jobs(CHANNEL, "active", offset=1, limit=5)] == ["a2"]


async def test_a_channel_never_consumed_lists_nothing(client: Client) -> None:
    assert await client.jobs(CHANNEL, "waiting") == []
    assert await client.jobs(CHANNEL, "active") == []


async def test_an_active_listing_deeper_than_the_bound_is_refused(client: Client) -> None:
    with pytest.raises(InvalidJobRequest, match="offset \\+ limit is at most"):
        await client.jobs(CHANNEL, "active", offset=STREAM_LIST_DEPTH, limit=1)
    # the sorted sets, the waiting set included, are read by rank at any depth
    assert await client.jobs(CHANNEL, "waiting", offset=STREAM_LIST_DEPTH, limit=1) == []
    assert await client.jobs(CHANNEL, "failed", offset=STREAM_LIST_DEPTH, limit=1) == []
