"""What a handler's run may end in besides a result or an error, against a real Redis:
a timeout (the channel's, or the job's own), a RetryAfter (of the job, the channel or a
limiter key's group: back-pressure, not a failure) and progress reports.

Jobs are taken with take.lua and launched by the channel's Launcher, as the reader does.
Waits have generous deadlines; the assertions are about state, not speed."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from typing import Any, cast

import httpx
import pytest
from redis.asyncio import Redis

from runtime.engine.channel import Backoff, Limiter, Retry
from runtime.engine.client import Client
from runtime.engine.consumer import ChannelConsumer
from runtime.engine.context import MAX_PROGRESS_BYTES, JobContext
from runtime.engine.keys import ChannelKeys
from runtime.engine.metrics import Metrics
from runtime.engine.scripts import ChannelScripts
from runtime.errors import RetryAfter
from tests.runtime.engine.support import (
    CHANNEL,
    Message,
    Parts,
    PartsFor,
    claim,
    claim_of,
    counted,
    eventually,
    job_hash,
    job_info,
    keyed,
    make_channel,
    members,
    now_ms,
    state_of,
    take_over,
)

pytestmark = pytest.mark.usefixtures("group")


async def _is(redis: Redis, keys: ChannelKeys, job_id: str, state: str) -> bool:
    return await state_of(redis, keys, job_id) == state


async def launch_taken(scripts: ChannelScripts, parts: Parts, now: int | None = None) -> int:
    """Take what is waiting (and due at `now`) and launch it; returns how many."""
    taken = await scripts.take("worker", now_ms() if now is None else now, 100, 100)
    await parts.launcher.launch(taken.entries)
    return len(taken.entries)


def twice(delay_ms: int = 10) -> Retry:
    return Retry(attempts=2, backoff=Backoff(type="fixed", delay_ms=delay_ms))


# timeouts


async def test_a_run_over_the_channel_timeout_is_cancelled_and_retried_as_a_timeout(
    redis: Redis, keys: ChannelKeys, scripts: ChannelScripts, client: Client, parts_for: PartsFor
) -> None:
    cancelled: list[int] = []

    async def hang(payload: Message, context: JobContext) -> None:
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            cancelled.append(context.attempt)
            raise

    parts = parts_for(make_channel(hang, timeout_ms=100, retry=twice()))
    await client.enqueue(CHANNEL, Message(n=1), job_id="j1")

    assert await launch_taken(scripts, parts) == 1
    await eventually(lambda: _is(redis, keys, "j1", "delayed"), what="the retry recorded")
    first = await job_info(redis, keys, "j1")
    assert first.failures == 1
    assert first.error is not None
    assert (first.error.type, first.error.attempt) == ("timeout", 1)
    assert first.error.message == "the run took longer than its timeout of 100 ms"

    # the retry is due: its second run times out too, and the job fails for good
    assert await launch_taken(scripts, parts, now_ms() + 60_000) == 1
    await eventually(lambda: _is(redis, keys, "j1", "failed"), what="the failure recorded")

    final = await job_info(redis, keys, "j1")
    assert (final.attempts, final.failures) == (2, 2)
    assert [(error.type, error.attempt) for error in final.errors] == [
        ("timeout", 1),
        ("timeout", 2),
    ]
    assert cancelled == [1, 2]  # asyncio.CancelledError reached the handler each time
    assert counted(parts.metrics, "channelkit_jobs_timed_out_total") == 2
    assert counted(parts.metrics, "channelkit_jobs_retried_total") == 1
    assert counted(parts.metrics, "channelkit_jobs_failed_total") == 1


async def test_a_jobs_own_timeout_overrides_the_channels(
    redis: Redis, keys: ChannelKeys, scripts: ChannelScripts, client: Client, parts_for: PartsFor
) -> None:
    async def handler(payload: Message, context: JobContext) -> str:
        if payload.n == 0:
            await asyncio.Event().wait()  # never returns
        await asyncio.sleep(0.3)  # longer than the channel's timeout
        return "done"

    parts = parts_for(make_channel(handler, timeout_ms=100))
    await client.enqueue(CHANNEL, Message(n=1), job_id="longer", timeout_ms=10_000)
    await client.enqueue(CHANNEL, Message(n=0), job_id="shorter", timeout_ms=20)
    await client.enqueue(CHANNEL, Message(n=1), job_id="default")

    assert await launch_taken(scripts, parts) == 3
    await eventually(lambda: _is(redis, keys, "longer", "completed"), what="longer completed")
    await eventually(lambda: _is(redis, keys, "shorter", "failed"), what="shorter failed")
    await eventually(lambda: _is(redis, keys, "default", "failed"), what="default failed")

    assert (await job_info(redis, keys, "longer")).result == "done"
    for job_id, limit in (("shorter", 20), ("default", 100)):
        error = (await job_info(redis, keys, job_id)).error
        assert error is not None
        assert error.type == "timeout"
        assert error.message == f"the run took longer than its timeout of {limit} ms"


# RetryAfter


async def test_retry_after_of_the_job_delays_it_without_counting_a_failure(
    redis: Redis, keys: ChannelKeys, scripts: ChannelScripts, client: Client, parts_for: PartsFor
) -> None:
    async def busy_once(payload: Message, context: JobContext) -> str:
        if context.attempt == 1:
            raise RetryAfter(0.2)
        return "sent"

    # one attempt only: a failure would fail the job for good
    parts = parts_for(make_channel(busy_once, retry=Retry(1, Backoff("fixed", 10))))
    await client.enqueue(CHANNEL, Message(n=1), job_id="j1")
    before = now_ms()

    await launch_taken(scripts, parts)
    await eventually(lambda: _is(redis, keys, "j1", "delayed"), what="the job deferred")

    stored = await job_hash(redis, keys, "j1")
    assert (stored["failures"], stored["attempts"]) == ("0", "1")
    assert "error" not in stored
    assert before + 200 <= int(stored["due_at"]) <= now_ms() + 200
    assert await redis.exists(keys.backoff()) == 0  # nothing else waits
    assert counted(parts.metrics, "channelkit_jobs_deferred_total") == 1
    assert counted(parts.metrics, "channelkit_jobs_failed_total") == 0

    await launch_taken(scripts, parts, now_ms() + 60_000)
    await eventually(lambda: _is(redis, keys, "j1", "completed"), what="the job ran again")
    info = await job_info(redis, keys, "j1")
    assert (info.attempts, info.failures, info.result, info.errors) == (2, 0, "sent", [])


async def test_retry_after_of_the_channel_holds_every_job_of_it_back(
    redis: Redis, keys: ChannelKeys, scripts: ChannelScripts, client: Client, parts_for: PartsFor
) -> None:
    async def provider_busy(payload: Message, context: JobContext) -> None:
        raise RetryAfter(30, scope="channel")

    parts = parts_for(make_channel(provider_busy))
    await client.enqueue(CHANNEL, Message(n=1), job_id="j1")
    await launch_taken(scripts, parts)
    await eventually(lambda: _is(redis, keys, "j1", "delayed"), what="the job deferred")

    assert 25_000 < await redis.pttl(keys.backoff()) <= 30_000
    await client.enqueue(CHANNEL, Message(n=2), job_id="j2")
    held = await scripts.take("worker", now_ms(), 10, 100)
    assert held.entries == []
    assert 25_000 < held.hold <= 30_000
    assert await members(redis, keys.waiting) == ["j2"]
    counts = await client.counts(CHANNEL)
    assert 25_000 < counts.held_back_ms <= 30_000
    assert (counts.waiting, counts.delayed, counts.failed) == (1, 1, 0)


async def test_retry_after_of_a_key_holds_back_only_that_limiter_group(
    redis: Redis, keys: ChannelKeys, scripts: ChannelScripts, client: Client, parts_for: PartsFor
) -> None:
    ran: list[str] = []

    async def handler(payload: Message, context: JobContext) -> None:
        ran.append(context.job_id)
        if context.job_id == "a1":
            raise RetryAfter(30, scope="key")

    parts = parts_for(make_channel(handler, limiter=keyed("tenant", max_starts=100)))
    await client.enqueue(CHANNEL, Message(n=1, tenant="a"), job_id="a1")
    await launch_taken(scripts, parts)
    await eventually(lambda: _is(redis, keys, "a1", "delayed"), what="a1 deferred")

    assert 25_000 < await redis.pttl(keys.backoff("a")) <= 30_000
    assert await redis.exists(keys.backoff()) == 0  # the channel is not held back

    await client.enqueue(CHANNEL, Message(n=2, tenant="a"), job_id="a2")
    await client.enqueue(CHANNEL, Message(n=3, tenant="b"), job_id="b1")
    assert await launch_taken(scripts, parts) == 2
    await eventually(lambda: _is(redis, keys, "b1", "completed"), what="b1 ran")
    await eventually(lambda: _is(redis, keys, "a2", "delayed"), what="a2 deferred")

    assert ran == ["a1", "b1"]  # a2 never ran: its group is held back
    a2 = await job_hash(redis, keys, "a2")
    assert (a2["attempts"], a2["failures"]) == ("0", "0")
    assert int(a2["due_at"]) > now_ms() + 25_000


async def test_retry_after_of_a_key_without_a_keyed_limiter_holds_the_channel(
    redis: Redis, keys: ChannelKeys, scripts: ChannelScripts, client: Client, parts_for: PartsFor
) -> None:
    async def handler(payload: Message, context: JobContext) -> None:
        raise RetryAfter(5, scope="key")

    parts = parts_for(make_channel(handler, limiter=Limiter(max=10, duration_ms=1000)))
    await client.enqueue(CHANNEL, Message(n=1), job_id="j1")
    await launch_taken(scripts, parts)
    await eventually(lambda: _is(redis, keys, "j1", "delayed"), what="the job deferred")

    assert 0 < await redis.pttl(keys.backoff()) <= 5000


@pytest.fixture
async def busy_provider() -> AsyncIterator[str]:
    """A local HTTP server that answers every request with 429 and Retry-After: 30."""

    async def answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        writer.write(
            b"HTTP/1.1 429 Too Many Requests\r\nRetry-After: 30\r\n"
            b"Content-Length: 0\r\nConnection: close\r\n\r\n"
        )
        await writer.drain()
        writer.close()

    server = await asyncio.start_server(answer, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    async with server:
        yield f"http://127.0.0.1:{port}/send"


async def test_a_429_with_retry_after_from_a_real_server_holds_the_channel_back(
    redis: Redis,
    keys: ChannelKeys,
    scripts: ChannelScripts,
    client: Client,
    parts_for: PartsFor,
    busy_provider: str,
) -> None:
    async def send(payload: Message, context: JobContext) -> None:
        async with httpx.AsyncClient() as http:
            response = await http.post(busy_provider, json={"n": payload.n})
        if response.status_code == 429:
            raise RetryAfter(float(response.headers["retry-after"]), scope="channel")
        response.raise_for_status()

    parts = parts_for(make_channel(send, retry=Retry(1, Backoff("fixed", 10))))
    await client.enqueue(CHANNEL, Message(n=1), job_id="j1")
    await launch_taken(scripts, parts)
    await eventually(lambda: _is(redis, keys, "j1", "delayed"), what="the job deferred")

    info = await job_info(redis, keys, "j1")
    assert (info.failures, info.error) == (0, None)
    assert 25_000 < await redis.pttl(keys.backoff()) <= 30_000
    await client.enqueue(CHANNEL, Message(n=2), job_id="j2")
    assert (await scripts.take("worker", now_ms(), 10, 100)).entries == []


# progress


async def test_progress_is_stored_on_the_job_and_refused_values_raise(
    redis: Redis, keys: ChannelKeys, client: Client
) -> None:
    reported = asyncio.Event()
    release = asyncio.Event()
    refused: list[str] = []
    bad_values: list[Any] = [
        "half",
        True,
        None,
        [1, 2],
        float("nan"),
        {"blob": "x" * MAX_PROGRESS_BYTES},
    ]

    async def report(payload: Message, context: JobContext) -> None:
        assert await context.progress(10)
        for bad in bad_values:
            try:
                await context.progress(bad)
            except ValueError as error:
                refused.append(str(error))
        assert await context.progress({"sent": 3, "of": 10})
        reported.set()
        await release.wait()

    consumer = ChannelConsumer(
        make_channel(report), client, consumer="c1", metrics=Metrics().channel(CHANNEL)
    )
    await consumer.start()
    try:
        job_id = await client.enqueue(CHANNEL, Message(n=1))
        async with asyncio.timeout(10):
            await reported.wait()
        running = await client.job(CHANNEL, job_id)
        assert running is not None
        assert (running.state, running.progress) == ("active", {"sent": 3, "of": 10})
        release.set()
        await eventually(lambda: _is(redis, keys, job_id, "completed"), what="the job ran")
    finally:
        release.set()
        assert await consumer.stop(5) is True

    done = await client.job(CHANNEL, job_id)
    assert done is not None
    assert done.progress == {"sent": 3, "of": 10}  # the last value stays
    assert len(refused) == len(bad_values)
    assert all(message.startswith("progress: ") for message in refused)
    assert f"at most {MAX_PROGRESS_BYTES} bytes" in refused[-1]


async def test_progress_of_a_run_that_lost_its_claim_is_not_stored(
    redis: Redis, keys: ChannelKeys, scripts: ChannelScripts
) -> None:
    entry, _ = (await claim(redis, scripts, ["j1"], consumer="paused"))["j1"]
    await take_over(redis, keys, entry.stream_id, "other")
    lost = claim_of(entry)

    assert await scripts.progress("paused", lost, "50", now_ms()) is False
    assert "progress" not in await job_hash(redis, keys, "j1")

    lost.delivery = 2  # the new owner's claim
    assert await scripts.progress("other", lost, "75", now_ms()) is True
    assert (await job_info(redis, keys, "j1")).progress == 75


async def test_progress_outside_a_worker_is_not_stored() -> None:
    context: JobContext = JobContext(
        job_id="j1", channel=CHANNEL, attempt=1, logger=logging.getLogger("test")
    )
    assert await context.progress(50) is False
    with pytest.raises(ValueError, match=r"^progress: a number or a JSON object; got str$"):
        await context.progress(cast(Any, "half"))
