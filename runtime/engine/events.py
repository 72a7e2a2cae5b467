"""Job events: what happened to a channel's jobs, in order, as the scripts recorded it.

Every script that changes a job's state appends one entry to the channel's capped event
stream in the same call (`lua/include/events.lua`). Entry ids are `<ms>-<seq>`, seq
counting the channel's events one by one, so a reader knows exactly how many it missed
when the cap trimmed entries it had not read yet: it gets a `gap` event saying so,
never a silent skip.

`EventReader` reads one channel's stream (catch-up with XRANGE, then XREAD BLOCK).
`EventHub` shares one blocking read per channel among every subscriber of a process
(SSE, gRPC and GraphQL streams, `Client.events`): a hundred browsers watching a channel
cost one Redis connection, not a hundred. A subscriber that cannot keep up is dropped
from the live feed and catches up from Redis on its own, told of any gap.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import re
from collections.abc import AsyncGenerator, Callable
from dataclasses import dataclass, field
from typing import Any, Final

from redis.asyncio import Redis
from redis.exceptions import RedisError

from runtime.engine.clock import text
from runtime.engine.connection import RedisClient, dedicated_client
from runtime.engine.keys import ChannelKeys
from runtime.engine.redis_errors import redis_errors
from runtime.errors import InvalidJobRequest, RedisUnavailable

__all__ = [
    "EVENT_TYPES",
    "GAP",
    "EventHub",
    "EventPosition",
    "EventReader",
    "JobEvent",
]

logger = logging.getLogger("channelkit.events")

# What the scripts append (lua/include/events.lua), and what a reader adds.
EVENT_TYPES: Final = (
    "waiting",  # enqueued to run now, or a delayed job came due (data: priority)
    "delayed",  # enqueued with a delay, or held back by a RetryAfter (data: due_at)
    "active",  # a run started (data: attempt)
    "progress",  # the handler reported progress (data: progress)
    "completed",
    "retrying",  # a run failed; another comes at due_at (data: error, due_at)
    "failed",  # the last run failed, or it stalled too often (data: error)
    "stalled",  # its process stopped heartbeating; another took it over (data: stalled)
    "cancelled",
    "retried",  # a failed or cancelled job was sent back to run by hand
    "discarded",  # removed by hand
    "paused",  # the channel (job: none)
    "resumed",  # the channel (job: none)
)
GAP: Final = "gap"  # not in Redis: the reader missed `data.missed` events (trimmed)

SHARED_READ_NAME = "channelkit-events"  # the shared read's connection, in CLIENT LIST
_POSITION = re.compile(r"^(\d{1,15})-(\d{1,15})$")
READ_COUNT = 2_000  # entries per read
# While events keep coming, the shared read runs at most this often: each read then
# carries a batch that every subscriber gets in one queue operation and one write,
# instead of a few events each (a sparse event still leaves at once).
FANOUT_INTERVAL_S = 0.02
BLOCK_MS = 2_000  # a blocked read returns this often (below the serve socket timeout, 5 s)
SUBSCRIBER_BUFFER = 10_000  # events queued for one live subscriber before it is dropped


@dataclass(frozen=True, slots=True, order=True)
class EventPosition:
    """Where a reader stands in a channel's events: after the entry `<ms>-<seq>`
    (`EventPosition.START`: before the first one ever appended)."""

    ms: int
    seq: int

    @classmethod
    def parse(cls, value: str) -> EventPosition:
        """An event id as a client sends it back (`Last-Event-ID`); `0` is the start."""
        if value.strip() == "0":
            return START
        found = _POSITION.match(value.strip())
        if found is None:
            raise InvalidJobRequest(
                f"event id {value!r} is not one this server gave (<ms>-<seq>, or 0 for the "
                "oldest event kept)"
            )
        return cls(int(found.group(1)), int(found.group(2)))

    def __str__(self) -> str:
        return f"{self.ms}-{self.seq}"


START: Final = EventPosition(0, 0)


@dataclass(frozen=True, slots=True)
class JobEvent:
    """One event of a channel: `id` resumes a stream after it, `event` is one of
    EVENT_TYPES (or GAP), `job_id` None for the channel's own events, `at_ms` when
    Redis recorded it, `data` what the event adds (see EVENT_TYPES)."""

    id: str
    channel: str
    event: str
    job_id: str | None
    at_ms: int
    data: dict[str, Any] = field(default_factory=dict)
    position: EventPosition = field(default=START, compare=False, repr=False)
    """Where a reader stands after it (of a gap: where the events resume)."""
    encoded: dict[str, bytes] = field(default_factory=dict, compare=False, repr=False)
    """This event as a transport sends it, by format ("sse", ...): one subscription
    delivers the same JobEvent to every subscriber, so each format is encoded once."""

    def to_json(self) -> str:
        return json.dumps(
            {
                "id": self.id,
                "channel": self.channel,
                "event": self.event,
                "job_id": self.job_id,
                "at_ms": self.at_ms,
                "data": self.data,
            },
            separators=(",", ":"),
        )


class EventReader:
    """Reads one channel's events from a position on, gaps reported."""

    def __init__(self, redis: RedisClient, keys: ChannelKeys) -> None:
        self._redis = redis
        self._keys = keys

    @property
    def key(self) -> str:
        """The channel's event stream."""
        return self._keys.events

    async def latest(self) -> EventPosition:
        """The position after the newest event (START when there is none)."""
        with redis_errors():
            last: Any = await self._redis.xrevrange(self._keys.events, count=1)
        return EventPosition.parse(text(last[0][0])) if last else START

    async def read(
        self, after: EventPosition, *, count: int = READ_COUNT, block_ms: int | None = None
    ) -> tuple[list[JobEvent], EventPosition]:
        """Events after `after` (at most `count`; waiting up to `block_ms` for one when
        none is there), a gap event first when some were trimmed before they were read;
        and the position after the last one."""
        rows: list[Any]
        with redis_errors():
            if block_ms is None:
                rows = list(
                    await self._redis.xrange(self._keys.events, min=f"({after}", count=count) or ()
                )
            else:
                found: Any = await self._redis.xread(
                    {self._keys.events: str(after)}, count=count, block=block_ms
                )
                rows = found[0][1] if found else []  # RESP2: [[stream, entries]]
        return self.parse(rows, after)

    def parse(self, rows: list[Any], after: EventPosition) -> tuple[list[JobEvent], EventPosition]:
        """Stream entries read after `after` as events (entries not after it left out),
        a gap event before any that came after others were trimmed; and the position
        after the last one."""
        events: list[JobEvent] = []
        position = after
        for entry_id, fields in rows:
            here = EventPosition.parse(text(entry_id))
            if here <= position:
                continue
            if here.seq != position.seq + 1 and (position != START or here.seq < 1):
                events.append(self._gap(position, here))
            events.append(self._event(here, fields))
            position = here
        return events, position

    async def history(self, job_id: str, *, chunk: int = 2_000) -> list[JobEvent]:
        """One job's events still kept, oldest first (a scan of the capped stream)."""
        found: list[JobEvent] = []
        position = START
        while True:
            events, reached = await self.read(position, count=chunk)
            found += [event for event in events if event.job_id == job_id]
            if reached == position or len(events) < chunk:
                return found
            position = reached

    def _gap(self, before: EventPosition, after: EventPosition) -> JobEvent:
        # seq going down: the stream was deleted and began again; how much was lost is
        # not known then
        missed = after.seq - before.seq - 1 if after.seq > before.seq else None
        return JobEvent(
            id=str(before),
            channel=self._keys.channel,
            event=GAP,
            job_id=None,
            at_ms=after.ms,
            data={"missed": missed, "after": str(before), "resumed_at": str(after)},
            position=after,
        )

    def _event(self, position: EventPosition, fields: dict[Any, Any]) -> JobEvent:
        data_text = text(fields.get(b"data") or fields.get("data") or "")
        job = text(fields.get(b"job") or fields.get("job") or "")
        return JobEvent(
            id=str(position),
            channel=self._keys.channel,
            event=text(fields.get(b"event") or fields.get("event") or ""),
            job_id=job or None,
            at_ms=position.ms,
            data=json.loads(data_text) if data_text else {},
            position=position,
        )


class _Subscriber:
    """One live subscription: the batches of events the tail read for it."""

    def __init__(self, job_id: str | None) -> None:
        self.job_id = job_id
        self.batches: asyncio.Queue[list[JobEvent]] = asyncio.Queue()
        self.pending = 0  # events queued
        self.dropped = False  # fell behind: the live feed stopped, catch up from Redis

    def wants(self, event: JobEvent) -> bool:
        return event.event == GAP or self.job_id is None or event.job_id == self.job_id

    def offer(self, events: list[JobEvent]) -> bool:
        """Queue what it wants of a batch; False when that would put it more than
        SUBSCRIBER_BUFFER events behind (it is dropped from the live feed then)."""
        wanted = events if self.job_id is None else [e for e in events if self.wants(e)]
        if not wanted:
            return True
        if self.pending + len(wanted) > SUBSCRIBER_BUFFER:
            self.dropped = True
            self.batches.put_nowait([])  # wakes it to notice
            return False
        self.pending += len(wanted)
        self.batches.put_nowait(wanted)
        return True


class _ChannelTail:
    """The one blocking read of a channel, fanned out to its subscribers a batch at a
    time (one queue operation per subscriber per read, not per event)."""

    def __init__(self, reader: EventReader, channel: str) -> None:
        self.reader = reader
        self.channel = channel
        self.subscribers: set[_Subscriber] = set()
        self.position: EventPosition | None = None
        self.ready = asyncio.Event()
        self.task: asyncio.Task[None] | None = None

    async def run(self) -> None:
        loop = asyncio.get_running_loop()
        began = 0.0
        while True:
            rest = FANOUT_INTERVAL_S - (loop.time() - began)
            if rest > 0:
                await asyncio.sleep(rest)
            began = loop.time()
            try:
                if self.position is None:
                    self.position = await self.reader.latest()
                    self.ready.set()
                events, self.position = await self.reader.read(self.position, block_ms=BLOCK_MS)
            except RedisUnavailable as error:  # the subscribers keep waiting meanwhile
                logger.warning("events of %s: %s; reading again in 1 s", self.channel, error)
                await asyncio.sleep(1.0)
                continue
            except Exception:  # a bug: say so, and keep the subscribers fed afterwards
                logger.exception("events of %s: reading failed; again in 1 s", self.channel)
                await asyncio.sleep(1.0)
                continue
            if not events:
                began = 0.0  # nothing came: the next event leaves as soon as it comes
            else:
                self.fan_out(events)

    def fan_out(self, events: list[JobEvent]) -> None:
        for subscriber in list(self.subscribers):
            if not subscriber.offer(events):
                self.subscribers.discard(subscriber)


class _SharedRead:
    """One XREAD over the event streams of every watched channel, on a connection of its
    own (where one command may span channels: connection.dedicated_client), instead of
    a blocking read, and a pooled connection held, per channel. A channel that starts
    being watched during a blocked read interrupts it (CLIENT UNBLOCK) to join at once."""

    def __init__(self, control: RedisClient, blocking: Redis, tails: dict[str, _ChannelTail]):
        self._control = control
        self._blocking = blocking
        self._tails = tails
        self._reading: frozenset[str] = frozenset()
        self._client_id: int | None = None
        self.task: asyncio.Task[None] | None = None

    async def joined(self, tail: _ChannelTail) -> None:
        """`tail` was added to the watched channels: read it from now on."""
        if self.task is None or self.task.done():
            self.task = asyncio.create_task(self._run(), name="channelkit-events")
        elif tail.reader.key not in self._reading:
            await self._interrupt()

    async def left(self) -> None:
        """A channel is no longer watched: with none left, end the read (and free its
        connection) now rather than when the blocked read times out."""
        if not self._tails:
            await self._interrupt()

    async def _interrupt(self) -> None:
        if self._client_id is not None:
            with contextlib.suppress(RedisError, OSError):
                await self._control.client_unblock(self._client_id)

    async def _run(self) -> None:
        while True:
            try:
                await self._read()
            finally:
                # nobody watches: no connection kept open meanwhile (the next read opens one)
                await self._blocking.connection_pool.disconnect(inuse_connections=True)
            # a channel that joined while this read was ending found it still running (it
            # did not start another): read again for it. No await from here to the end, so
            # none can join unseen.
            if not self._tails:
                return

    async def _read(self) -> None:
        loop = asyncio.get_running_loop()
        began = 0.0
        while self._tails:
            rest = FANOUT_INTERVAL_S - (loop.time() - began)
            if rest > 0:
                await asyncio.sleep(rest)
            began = loop.time()
            tails = list(self._tails.values())
            if not tails:
                break  # the last one left while this read waited
            found: Any = None
            try:
                for tail in tails:
                    if tail.position is None:
                        tail.position = await tail.reader.latest()
                        tail.ready.set()
                streams: dict[Any, Any] = {tail.reader.key: str(tail.position) for tail in tails}
                with redis_errors():
                    self._client_id = int(await self._blocking.client_id())
                    self._reading = frozenset(streams)
                    found = await self._blocking.xread(streams, count=READ_COUNT, block=BLOCK_MS)
            except RedisUnavailable as error:  # the subscribers keep waiting meanwhile
                logger.warning("events: %s; reading again in 1 s", error)
                await asyncio.sleep(1.0)
                continue
            except Exception:  # a bug: say so, and keep the subscribers fed afterwards
                logger.exception("events: reading failed; again in 1 s")
                await asyncio.sleep(1.0)
                continue
            finally:
                self._reading, self._client_id = frozenset(), None
            if not found:
                began = 0.0  # nothing came: the next event leaves as soon as it comes
                continue
            by_key = {tail.reader.key: tail for tail in self._tails.values()}
            for stream, rows in found:  # RESP2: [[stream, entries], ...]
                watched = by_key.get(text(stream))
                if watched is None or watched.position is None:
                    continue
                events, watched.position = watched.reader.parse(rows, watched.position)
                if events:
                    watched.fan_out(events)

    async def close(self) -> None:
        if self.task is not None:
            self.task.cancel()
            await self._blocking.connection_pool.disconnect(inuse_connections=True)
            with contextlib.suppress(asyncio.CancelledError):
                await self.task
        await self._blocking.aclose()


class EventHub:
    """Every event subscription of one process, one blocking read per watched channel."""

    def __init__(self, redis: RedisClient, keys_of: Callable[[str], ChannelKeys]) -> None:
        self._redis = redis
        self._keys_of = keys_of
        self._tails: dict[str, _ChannelTail] = {}
        blocking = dedicated_client(redis, SHARED_READ_NAME)
        self._shared = None if blocking is None else _SharedRead(redis, blocking, self._tails)

    def reader(self, channel: str) -> EventReader:
        return EventReader(self._redis, self._keys_of(channel))

    async def start(self, channel: str, after: str | None) -> EventPosition:
        """Where a stream of the channel's events starts: after the event id `after` (a
        client's; `0`: the oldest kept), else from now on. Reading "now" touches Redis,
        so a transport calling this before its stream starts answers an outage (503,
        UNAVAILABLE) instead of failing inside the stream."""
        if after is not None:
            return EventPosition.parse(after)
        return await self.reader(channel).latest()

    async def subscribe(
        self,
        channel: str,
        *,
        job_id: str | None = None,
        after: EventPosition | None = None,
    ) -> AsyncGenerator[JobEvent, None]:
        """The channel's events (one job's, with `job_id`) after `after`, from now on
        when None; gaps reported. Ends only when the caller stops iterating. Redis
        trouble at the start raises RedisUnavailable; later the stream waits it out."""
        batches = self.subscribe_batches(channel, job_id=job_id, after=after)
        try:
            async for batch in batches:
                for event in batch:
                    yield event
        finally:
            await batches.aclose()

    async def subscribe_batches(
        self,
        channel: str,
        *,
        job_id: str | None = None,
        after: EventPosition | None = None,
    ) -> AsyncGenerator[list[JobEvent], None]:
        """`subscribe`, a batch of events at a time (as Redis gave them): for a transport
        that writes a batch in one go."""
        reader = self.reader(channel)
        position = after if after is not None else await reader.latest()
        tail = self._tails.get(channel)
        if tail is None:
            tail = self._tails[channel] = _ChannelTail(reader, channel)
            if self._shared is not None:
                await self._shared.joined(tail)
            else:
                tail.task = asyncio.create_task(tail.run(), name=f"channelkit-events:{channel}")
        subscriber: _Subscriber | None = None
        try:
            await tail.ready.wait()
            while True:
                subscriber = _Subscriber(job_id)
                tail.subscribers.add(subscriber)
                live_from = tail.position
                assert live_from is not None  # set before `ready`
                # catch up from Redis to where the live feed began, then follow it
                while position < live_from:
                    events, reached = await reader.read(position)
                    wanted = [event for event in events if subscriber.wants(event)]
                    if wanted:
                        yield wanted
                    if reached == position:
                        break
                    position = reached
                while not (subscriber.dropped and subscriber.batches.empty()):
                    batch = await subscriber.batches.get()
                    subscriber.pending -= len(batch)
                    if batch and not _seen(batch[0], position):
                        fresh = batch  # the common case, and the same list every subscriber got
                    else:
                        fresh = [event for event in batch if not _seen(event, position)]
                    if not fresh:
                        continue
                    last = next((e for e in reversed(fresh) if e.event != GAP), None)
                    if last is not None:
                        position = last.position
                    yield fresh
                # fell behind the live feed: catch up from Redis again
        finally:
            if subscriber is not None:
                tail.subscribers.discard(subscriber)
            if not tail.subscribers and self._tails.get(channel) is tail:
                del self._tails[channel]  # the shared read leaves it out from now on
                if tail.task is not None and not tail.task.done():
                    tail.task.cancel()
                if self._shared is not None:
                    await self._shared.left()

    async def close(self) -> None:
        tails = list(self._tails.values())
        self._tails.clear()
        if self._shared is not None:
            await self._shared.close()
        for tail in tails:
            if tail.task is not None:
                tail.task.cancel()
        for tail in tails:
            if tail.task is not None:
                with contextlib.suppress(asyncio.CancelledError):
                    await tail.task


def _seen(event: JobEvent, position: EventPosition) -> bool:
    """Whether a live event is one the subscriber has had already (read while catching
    up): a gap counts as seen when the reader is past where it ended."""
    return event.position <= position
