"""Job events as Server-Sent Events: `GET /channels/<name>/events`.

Each event is one SSE message: `id` the event id (a reconnecting EventSource sends it
back as `Last-Event-ID` and resumes right after it), `event` its type, `data` the event
as JSON (runtime.engine.events.JobEvent). A `gap` event (no id) says how many events the
stream missed because the channel's cap trimmed them first. A comment line every
KEEP_ALIVE_S keeps proxies from closing an idle stream.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncGenerator

from runtime.engine.client import Client
from runtime.engine.events import GAP, EventPosition, JobEvent

__all__ = ["KEEP_ALIVE_S", "RETRY_MS", "sse_stream", "start_position"]

KEEP_ALIVE_S = 15.0
RETRY_MS = 2_000  # how long a disconnected EventSource waits before it reconnects
_QUEUED = 1_000  # events between the subscription and the socket


async def start_position(
    client: Client, channel: str, after: str | None, last_event_id: str | None
) -> EventPosition:
    """Where a stream starts: after `Last-Event-ID` (a reconnect), else after `after`,
    else from now on. Reading "now" touches Redis, so an unavailable Redis is refused
    (503) before the stream starts instead of inside it."""
    wanted = last_event_id or after
    if wanted is not None:
        return EventPosition.parse(wanted)
    return await client.event_hub.reader(channel).latest()


def encode(event: JobEvent) -> bytes:
    head = (
        f"event: {event.event}\n"
        if event.event == GAP
        else f"id: {event.id}\nevent: {event.event}\n"
    )
    return f"{head}data: {event.to_json()}\n\n".encode()


async def sse_stream(
    client: Client, channel: str, job_id: str | None, position: EventPosition
) -> AsyncGenerator[bytes, None]:
    """The SSE body: events after `position`, keep-alive comments while idle."""
    queue: asyncio.Queue[bytes] = asyncio.Queue(_QUEUED)

    async def pump() -> None:
        async for event in client.event_hub.subscribe(channel, job_id=job_id, after=position):
            await queue.put(encode(event))

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
            yield chunk
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await task
