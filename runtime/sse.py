"""Job events as Server-Sent Events, for the HTTP API's `GET /channels/<name>/events`
and the dashboard's live pages (one module both use: neither imports the other).

Each event is one SSE message: `id` the event id (a reconnecting EventSource sends it
back as `Last-Event-ID` and resumes right after it), `event` its type, `data` the event
as JSON (runtime.engine.events.JobEvent). A `gap` event (no id) says how many events the
stream missed because the channel's cap trimmed them first. A comment line every
KEEP_ALIVE_S keeps proxies from closing an idle stream.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncGenerator, Sequence

from runtime.engine.client import Client
from runtime.engine.events import GAP, EventPosition, JobEvent

__all__ = ["KEEP_ALIVE_S", "RETRY_MS", "change_stream", "sse_stream", "start_position"]

KEEP_ALIVE_S = 15.0
RETRY_MS = 2_000  # how long a disconnected EventSource waits before it reconnects
_QUEUED = 1_000  # events between the subscription and the socket


async def start_position(
    client: Client, channel: str, after: str | None, last_event_id: str | None
) -> EventPosition:
    """Where a stream starts: after `Last-Event-ID` (a reconnect), else after `after`,
    else from now on. Reading "now" touches Redis, so an unavailable Redis is refused
    (503) before the stream starts instead of inside it."""
    return await client.event_hub.start(channel, last_event_id or after)


def encode(event: JobEvent) -> bytes:
    """`event` as one SSE message, encoded once however many streams send it."""
    found = event.encoded.get("sse")
    if found is None:
        if event.event == GAP:
            head = f"event: {event.event}\n"  # no id: a reconnect resumes before the gap
        else:
            head = f"id: {event.id}\nevent: {event.event}\n"
        found = event.encoded["sse"] = f"{head}data: {event.to_json()}\n\n".encode()
    return found


# The batch encoded last: the streams of one channel get the same batch object from the
# event hub, one after the other, so one entry serves all of them (held here, the batch
# cannot be collected and its id reused while it is compared).
_last_batch: tuple[list[JobEvent], bytes] | None = None


def encode_batch(batch: list[JobEvent]) -> bytes:
    """The SSE messages of a batch of events, encoded once for all the streams sending it."""
    global _last_batch
    if _last_batch is not None and _last_batch[0] is batch:
        return _last_batch[1]
    encoded = b"".join(encode(event) for event in batch)
    _last_batch = (batch, encoded)
    return encoded


async def sse_stream(
    client: Client, channel: str, job_id: str | None, position: EventPosition
) -> AsyncGenerator[bytes, None]:
    """The SSE body: events after `position`, keep-alive comments while idle. Events
    that arrive together leave in one write."""
    queue: asyncio.Queue[bytes] = asyncio.Queue(_QUEUED)

    async def pump() -> None:
        batches = client.event_hub.subscribe_batches(channel, job_id=job_id, after=position)
        async for batch in batches:
            await queue.put(encode_batch(batch))

    task = asyncio.create_task(pump(), name=f"channelkit-sse:{channel}")
    try:
        yield f"retry: {RETRY_MS}\n: events of {channel} after {position}\n\n".encode()
        while True:
            try:
                chunk = await asyncio.wait_for(queue.get(), KEEP_ALIVE_S)
            except TimeoutError:
                if task.done():
                    task.result()  # a failed subscription ends the stream with its error
                    return
                chunk = b": keep-alive\n\n"
            if not queue.empty():
                chunks = [chunk]
                while not queue.empty():
                    chunks.append(queue.get_nowait())
                chunk = b"".join(chunks)
            yield chunk
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await task


async def change_stream(client: Client, channels: Sequence[str]) -> AsyncGenerator[bytes, None]:
    """An SSE body that names the channels whose jobs changed (`event: change`, data
    the names, comma-separated), at most once a second however busy they are
    (runtime.engine.changes): a page refreshes its counts when something happened, not
    on a timer."""
    changes = client.changes.watch(channels)
    pending: asyncio.Future[frozenset[str]] | None = None
    try:
        yield f"retry: {RETRY_MS}\n: changes of {','.join(channels)}\n\n".encode()
        while True:
            if pending is None:
                pending = asyncio.ensure_future(anext(changes))
            done, _ = await asyncio.wait({pending}, timeout=KEEP_ALIVE_S)
            if not done:
                yield b": keep-alive\n\n"
                continue
            names, pending = ",".join(sorted(pending.result())), None
            yield f"event: change\ndata: {names}\n\n".encode()
    finally:
        if pending is not None:
            pending.cancel()
            await asyncio.gather(pending, return_exceptions=True)
        await changes.aclose()
