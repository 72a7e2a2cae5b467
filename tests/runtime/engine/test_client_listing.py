"""Client.jobs for the stream's states: waiting = entries after the group's last
delivered one, active = its pending entries; a listing reads at most STREAM_LIST_DEPTH
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
async def test_waiting_and_active_jobs_are_listed_in_stream_order(
    redis: Redis, keys: ChannelKeys, scripts: ChannelScripts, client: Client
) -> None:
    await claim(redis, scripts, ["a1", "a2"])  # read and started: active
    await scripts.enqueue([NewJob(f"w{n}", message(f"w{n}", n)) for n in range(5)], now_ms())

    waiting = await client.jobs(CHANNEL, "waiting")
    assert [job.id for job in waiting] == ["w0", "w1", "w2", "w3", "w4"]
    assert {job.state for job in waiting} == {"waiting"}
    page = await client.jobs(CHANNEL, "waiting", offset=1, limit=2)
    assert [job.id for job in page] == ["w1", "w2"]

    active = await client.jobs(CHANNEL, "active")
    assert [job.id for job in active] == ["a1", "a2"]
    assert [job.id for job in await client.jobs(CHANNEL, "active", offset=1, limit=5)] == ["a2"]


async def test_a_channel_never_consumed_lists_nothing(client: Client) -> None:
    assert await client.jobs(CHANNEL, "waiting") == []
    assert await client.jobs(CHANNEL, "active") == []


async def test_a_listing_deeper_than_the_bound_is_refused(client: Client) -> None:
    with pytest.raises(InvalidJobRequest, match="offset \\+ limit is at most"):
        await client.jobs(CHANNEL, "waiting", offset=STREAM_LIST_DEPTH, limit=1)
    # the sorted sets are read by rank, at any depth
    assert await client.jobs(CHANNEL, "failed", offset=STREAM_LIST_DEPTH, limit=1) == []
