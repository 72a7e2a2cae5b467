"""Job events against a real Redis: each state change appends its event in the script
that makes it, the stream keeps the channel's cap, a reader that falls behind the cap is
told exactly how many events it missed, and one process's subscribers share one read
per channel and resume where they left off."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest
from redis.asyncio import Redis

from runtime.engine import events as events_module
from runtime.engine.channel import Backoff, Retry
from runtime.engine.client import Client
from runtime.engine.context import JobContext
from runtime.engine.events import GAP, START, EventPosition, EventReader, JobEvent
from runtime.engine.keys import ChannelKeys
from runtime.engine.scripts import ChannelScripts
from runtime.errors import InvalidJobRequest
from tests.runtime.engine.support import (
    CHANNEL,
    Message,
    PartsFor,
    claim_of,
    eventually,
    make_channel,
    now_ms,
)


async def everything(redis: Redis, keys: ChannelKeys) -> list[JobEvent]:
    found, _ = await EventReader(redis, keys).read(START, count=100_000)
    return found


def kinds(events: list[JobEvent], job_id: str | None = None) -> list[str]:
    return [event.event for event in events if job_id is None or event.job_id == job_id]


@pytest.mark.usefixtures("group")
async def test_a_jobs_life_is_told_event_by_event_in_order(
    redis: Redis, keys: ChannelKeys, scripts: ChannelScripts, client: Client, parts_for: PartsFor
) -> None:
    runs: list[int] = []

    async def fails_once(payload: Message, context: JobContext) -> None:
        runs.append(context.attempt)
        if context.attempt == 1:
            raise ValueError("provider said no")

    retry = Retry(attempts=2, backoff=Backoff(type="fixed", delay_ms=1))
    parts = parts_for(make_channel(fails_once, retry=retry))
    await client.enqueue(CHANNEL, Message(n=1), job_id="j1", priority=2)
    await client.enqueue(CHANNEL, Message(n=2), job_id="later", delay_ms=60_000)

    async def run_due() -> None:
        taken = await scripts.take("worker", now_ms(), 10, 10)
        await parts.launcher.launch(taken.entries)

    await run_due()
    await eventually(lambda: _state(client, "j1", "delayed"), what="j1 waits for its retry")
    await asyncio.sleep(0.01)
    await run_due()
    await eventually(lambda: _state(client, "j1", "completed"), what="j1 completed")
    await client.cancel(CHANNEL, "later")
    await client.pause(CHANNEL)
    await client.pause(CHANNEL)  # already paused: no second event
    await client.resume(CHANNEL)

    found = await everything(redis, keys)
    assert kinds(found, "j1") == ["waiting", "active", "retrying", "waiting", "active", "completed"]
    assert kinds(found, "later") == ["delayed", "cancelled"]
    assert [(e.event, e.job_id) for e in found if e.job_id is None] == [
        ("paused", None),
        ("resumed", None),
    ]
    first = next(e for e in found if e.job_id == "j1")
    assert first.data == {"priority": 2}
    retrying = next(e for e in found if e.event == "retrying")
    assert retrying.data["error"] == {"type": "builtins.ValueError", "message": "provider said no"}
    assert retrying.data["due_at"] > retrying.at_ms - 1000
    assert [e.data.get("attempt") for e in found if e.event == "active"] == [1, 2]
    # ids are <ms>-<seq> with seq counting every event of the channel, in order
    assert [EventPosition.parse(e.id).seq for e in found] == list(range(1, len(found) + 1))
    assert found == sorted(found, key=lambda e: EventPosition.parse(e.id))
    assert await client.job_events(CHANNEL, "later") == [e for e in found if e.job_id == "later"]


async def _state(client: Client, job_id: str, state: str) -> bool:
    job = await client.job(CHANNEL, job_id)
    return job is not None and job.state == state


@pytest.mark.usefixtures("group")
async def test_failures_progress_discards_and_hand_retries_have_their_events(
    redis: Redis, keys: ChannelKeys, scripts: ChannelScripts, client: Client, parts_for: PartsFor
) -> None:
    async def broken(payload: Message, context: JobContext) -> None:
        raise RuntimeError("down")

    parts = parts_for(make_channel(broken))
    for n in range(3):
        await client.enqueue(CHANNEL, Message(n=n), job_id=f"f{n}")
    taken = await scripts.take("worker", now_ms(), 10, 10)
    await parts.launcher.launch(taken.entries)
    for n in range(3):
        await eventually(lambda n=n: _state(client, f"f{n}", "failed"), what="failed")  # type: ignore[misc]
    await client.retry(CHANNEL, "f0")
    await client.discard(CHANNEL, "f1")
    assert await client.discard_all_failed(CHANNEL) == 1  # f2
    await client.enqueue(CHANNEL, Message(n=9), job_id="p", priority=1)  # before f0
    (entry,) = (await scripts.take("worker", now_ms(), 1, 0)).entries
    entry_claim = claim_of(entry)
    await scripts.start("worker", [entry_claim], now_ms())
    assert await scripts.progress("worker", entry_claim, '{"sent":3}', now_ms())

    found = await everything(redis, keys)
    assert kinds(found, "f0")[-3:] == ["active", "failed", "retried"]
    assert next(e for e in found if e.event == "failed").data == {
        "error": {"type": "builtins.RuntimeError", "message": "down"}
    }
    assert kinds(found, "f1")[-1] == "discarded"
    assert kinds(found, "f2")[-1] == "discarded"
    assert kinds(found, "p")[-1] == "progress"
    assert found[-1].data == {"progress": {"sent": 3}}


@pytest.mark.usefixtures("group")
async def test_a_reader_behind_the_cap_is_told_how_many_it_missed(
    redis: Redis, keys: ChannelKeys, client: Client
) -> None:
    await redis.hset(keys.meta, "events_max", 100)
    await client.enqueue(CHANNEL, Message(n=0), job_id="first")
    reader = EventReader(redis, keys)
    (seen,), after = await reader.read(START)
    await client.enqueue_many(CHANNEL, [Message(n=n) for n in range(1, 1000)])
    kept = await redis.xlen(keys.events)
    assert 100 <= kept < 1000  # trimmed in whole nodes: at least the cap stays

    found, _ = await reader.read(after, count=10)
    gap, next_one = found[0], found[1]
    assert gap.event == GAP
    assert gap.data["missed"] == 1000 - kept - 1 == EventPosition.parse(next_one.id).seq - 2
    assert gap.data["after"] == seen.id
    assert gap.data["resumed_at"] == next_one.id
    # a reader that asks for everything kept ("0") gets no gap: it missed nothing it had
    assert GAP not in kinds((await reader.read(START, count=10))[0])


@pytest.mark.usefixtures("group")
async def test_a_cap_of_zero_writes_no_events(
    redis: Redis, keys: ChannelKeys, client: Client
) -> None:
    await redis.hset(keys.meta, "events_max", 0)
    await client.enqueue(CHANNEL, Message(n=1))
    assert await redis.exists(keys.events) == 0


@pytest.mark.usefixtures("group")
async def test_event_ids_from_clients_are_checked(client: Client) -> None:
    with pytest.raises(InvalidJobRequest, match="not one this server gave"):
        client.events(CHANNEL, after="1'; DROP")
    assert EventPosition.parse("0") == START
    assert str(EventPosition.parse("17-4")) == "17-4"


async def _take(events: AsyncIterator[JobEvent], count: int) -> list[JobEvent]:
    found: list[JobEvent] = []
    async with asyncio.timeout(10):
        async for event in events:
            found.append(event)
            if len(found) == count:
                return found
    raise AssertionError("the stream ended")


@pytest.mark.usefixtures("group")
async def test_subscribers_share_one_read_follow_live_and_resume_after_an_id(
    client: Client,
) -> None:
    everyone = client.events(CHANNEL)
    one_job = client.events(CHANNEL, job_id="b")
    first = asyncio.ensure_future(_take(everyone, 3))
    only_b = asyncio.ensure_future(_take(one_job, 1))
    await asyncio.sleep(0.2)  # both subscribed (from now on)
    for name in ("a", "b", "c"):
        await client.enqueue(CHANNEL, Message(n=1), job_id=name)
    live = await first
    assert [(e.event, e.job_id) for e in live] == [("waiting", n) for n in "abc"]
    assert [e.job_id for e in await only_b] == ["b"]
    assert len(client.event_hub._tails) <= 1  # one read for the channel
    await everyone.aclose()
    await one_job.aclose()

    # resume after the first: the two after it, then the live ones
    resumed = client.events(CHANNEL, after=live[0].id)
    replay = asyncio.ensure_future(_take(resumed, 3))
    await asyncio.sleep(0.2)
    await client.enqueue(CHANNEL, Message(n=1), job_id="d")
    assert [e.job_id for e in await replay] == ["b", "c", "d"]
    await resumed.aclose()
    await eventually(lambda: _no_tails(client), what="the read stops with its last subscriber")


async def _no_tails(client: Client) -> bool:
    return not client.event_hub._tails


@pytest.mark.usefixtures("group")
async def test_a_subscriber_too_slow_for_the_live_feed_catches_up_without_a_loss(
    client: Client, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(events_module, "SUBSCRIBER_BUFFER", 5)
    slow = client.events(CHANNEL)
    got = [await _first_after(slow, client)]
    await client.enqueue_many(CHANNEL, [Message(n=n) for n in range(200)])
    got += await _take(slow, 199)
    await slow.aclose()
    seqs = [EventPosition.parse(e.id).seq for e in got]
    assert GAP not in kinds(got)
    assert seqs == list(range(seqs[0], seqs[0] + 200))  # dropped from live, caught up


async def _first_after(events: AsyncIterator[JobEvent], client: Client) -> JobEvent:
    waiting = asyncio.ensure_future(_take(events, 1))
    await asyncio.sleep(0.2)
    await client.enqueue(CHANNEL, Message(n=-1), job_id="opener")
    (event,) = await waiting
    return event


@pytest.mark.usefixtures("group")
async def test_watched_channels_share_one_blocking_read(
    redis: Redis, client: Client, monkeypatch: pytest.MonkeyPatch
) -> None:
    if client.event_hub._shared is None:
        pytest.skip("one read spans channels only on one Redis (a cluster reads per channel)")
    # Blocked reads last up to 60 s here: a channel that joins during one sees its
    # events within the test's bounds only because the read is interrupted for it.
    monkeypatch.setattr(events_module, "BLOCK_MS", 60_000)
    names = [f"{CHANNEL}-{n}" for n in range(20)]
    streams = [client.events(name) for name in names]
    firsts = [asyncio.ensure_future(_take(stream, 1)) for stream in streams]
    await asyncio.sleep(0.5)
    ours = [c for c in await redis.client_list() if c.get("name") == events_module.SHARED_READ_NAME]
    assert len(ours) == 1  # one connection reads the twenty streams
    await client.enqueue(names[13], Message(n=13), job_id="thirteen")
    (event,) = await firsts[13]
    assert (event.channel, event.job_id) == (names[13], "thirteen")
    late = client.events(f"{CHANNEL}-late")
    got = asyncio.ensure_future(_take(late, 1))
    await asyncio.sleep(0.3)
    await client.enqueue(f"{CHANNEL}-late", Message(n=1), job_id="late")
    assert [e.job_id for e in await got] == ["late"]
    for first in firsts:
        first.cancel()
    for stream in [*streams, late]:
        await stream.aclose()
