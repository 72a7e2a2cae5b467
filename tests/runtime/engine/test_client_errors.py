"""Client.retry/discard/cancel say why they could not act (JobNotFound, JobStateConflict), and
Redis being away reaches callers as RedisUnavailable (EnqueueError when enqueueing)."""

from __future__ import annotations

import socket
from collections.abc import AsyncIterator

import pytest
from redis.asyncio import Redis
from redis.exceptions import ConnectionError as RedisConnectionError

from runtime.engine.client import Client
from runtime.engine.keys import ChannelKeys
from runtime.engine.outcomes import Completed
from runtime.engine.scripts import ChannelScripts, Retention
from runtime.errors import (
    ChannelkitError,
    EnqueueError,
    InvalidJobRequest,
    JobNotFound,
    JobOperationError,
    JobStateConflict,
    RedisUnavailable,
)
from tests.runtime.engine.support import CHANNEL, Message, claim, job_hash, now_ms

KEEP_ALL = Retention(-1, 0, -1, 0)


async def test_retry_of_a_missing_job_raises_job_not_found(client: Client) -> None:
    with pytest.raises(JobNotFound) as raised:
        await client.retry(CHANNEL, "nope")

    error = raised.value
    assert (error.channel, error.job_id) == (CHANNEL, "nope")
    assert isinstance(error, JobOperationError)
    assert isinstance(error, LookupError)
    assert str(error) == "no job nope in channel 'jobs' (never enqueued, or removed by retention)"


async def test_discard_of_a_missing_job_raises_job_not_found(client: Client) -> None:
    with pytest.raises(JobNotFound) as raised:
        await client.discard(CHANNEL, "nope")
    assert (raised.value.channel, raised.value.job_id) == (CHANNEL, "nope")


@pytest.mark.usefixtures("group")
async def test_retry_of_a_completed_job_raises_job_state_conflict(
    redis: Redis, keys: ChannelKeys, scripts: ChannelScripts, client: Client
) -> None:
    jobs = await claim(redis, scripts, ["j1"])
    done = Completed(jobs["j1"][0].stream_id, 1, "j1", "")
    assert await scripts.finish("worker", [done], now_ms(), KEEP_ALL) == []

    with pytest.raises(JobStateConflict) as raised:
        await client.retry(CHANNEL, "j1")

    error = raised.value
    assert (error.channel, error.job_id) == (CHANNEL, "j1")
    assert (error.state, error.action) == ("completed", "retried")
    assert error.allowed == ("failed", "cancelled")
    assert str(error) == (
        "job j1 in 'jobs' is completed; only failed or cancelled jobs can be retried"
    )
    assert not isinstance(error, LookupError)
    assert (await job_hash(redis, keys, "j1"))["state"] == "completed"


async def test_discard_of_a_waiting_job_raises_job_state_conflict(
    redis: Redis, keys: ChannelKeys, client: Client
) -> None:
    job_id = await client.enqueue(CHANNEL, Message(n=1))

    with pytest.raises(JobStateConflict) as raised:
        await client.discard(CHANNEL, job_id)

    error = raised.value
    assert (error.state, error.action) == ("waiting", "discarded")
    assert error.allowed == ("failed", "completed", "cancelled", "delayed")
    assert str(error) == (
        f"job {job_id} in 'jobs' is waiting; only failed, completed, cancelled or delayed "
        "jobs can be discarded"
    )
    assert await redis.exists(keys.job(job_id)) == 1


# Redis away: a port on which nobody listens


@pytest.fixture
async def unreachable(key_prefix: str) -> AsyncIterator[Client]:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    client = Client.from_url(
        f"redis://127.0.0.1:{port}/0",
        prefix=key_prefix,
        socket_connect_timeout=0.5,
        socket_timeout=0.5,
    )
    yield client
    await client.close()


async def test_enqueue_without_redis_raises_enqueue_error(unreachable: Client) -> None:
    with pytest.raises(EnqueueError) as raised:
        await unreachable.enqueue(CHANNEL, Message(n=1), job_id="j1")

    error = raised.value
    assert isinstance(error, RedisUnavailable)
    assert isinstance(error, ConnectionError)
    assert isinstance(error, ChannelkitError)
    assert str(error).startswith("job j1 of 'jobs' was not enqueued: ")
    assert isinstance(error.__cause__, RedisConnectionError)
    # the enqueue batching does not stay stuck on the failed call
    with pytest.raises(EnqueueError):
        await unreachable.enqueue(CHANNEL, Message(n=2))


async def test_enqueue_many_without_redis_raises_enqueue_error(unreachable: Client) -> None:
    with pytest.raises(EnqueueError) as raised:
        await unreachable.enqueue_many(CHANNEL, [Message(n=1), Message(n=2)])

    error = raised.value
    assert isinstance(error, RedisUnavailable)
    assert isinstance(error, ConnectionError)
    assert str(error).startswith("2 job(s) of 'jobs' were not enqueued: ")


async def test_reads_without_redis_raise_redis_unavailable(unreachable: Client) -> None:
    with pytest.raises(RedisUnavailable, match=r"^Redis did not answer: ") as job:
        await unreachable.job(CHANNEL, "j1")
    with pytest.raises(RedisUnavailable, match=r"^Redis did not answer: ") as counts:
        await unreachable.counts(CHANNEL)
    with pytest.raises(RedisUnavailable, match=r"^Redis did not answer: "):
        await unreachable.jobs(CHANNEL, "failed")
    with pytest.raises(RedisUnavailable, match=r"^Redis did not answer: "):
        await unreachable.retry(CHANNEL, "j1")
    with pytest.raises(RedisUnavailable, match=r"^Redis did not answer: "):
        await unreachable.discard(CHANNEL, "j1")

    for raised in (job, counts):
        assert not isinstance(raised.value, EnqueueError)
        assert isinstance(raised.value, ConnectionError)
        assert isinstance(raised.value.__cause__, RedisConnectionError)


@pytest.mark.usefixtures("group")
async def test_cancel_of_a_completed_job_raises_job_state_conflict_naming_its_state(
    redis: Redis, keys: ChannelKeys, scripts: ChannelScripts, client: Client
) -> None:
    jobs = await claim(redis, scripts, ["j1"])
    done = Completed(jobs["j1"][0].stream_id, 1, "j1", "")
    assert await scripts.finish("worker", [done], now_ms(), KEEP_ALL) == []

    with pytest.raises(JobStateConflict) as raised:
        await client.cancel(CHANNEL, "j1")

    error = raised.value
    assert (error.state, error.action) == ("completed", "cancelled")
    assert error.allowed == ("waiting", "delayed", "active")
    assert str(error) == (
        "job j1 in 'jobs' is completed; only waiting, delayed or active jobs can be cancelled"
    )
    stored = await job_hash(redis, keys, "j1")
    assert stored["state"] == "completed"
    assert "cancel" not in stored


async def test_cancel_of_a_missing_job_raises_job_not_found(client: Client) -> None:
    with pytest.raises(JobNotFound) as raised:
        await client.cancel(CHANNEL, "nope")
    assert (raised.value.channel, raised.value.job_id) == (CHANNEL, "nope")


async def test_cancel_all_of_a_state_it_cannot_cancel_is_refused(client: Client) -> None:
    with pytest.raises(InvalidJobRequest, match=r"^state: 'waiting' or 'delayed'; got 'active'"):
        await client.cancel_all(CHANNEL, "active")
