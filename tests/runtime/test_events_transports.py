"""Job events over the wire, on a served process: Server-Sent Events (live, one job's,
resumed with Last-Event-ID), with the same events the Python iterator gives."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest

from tests.runtime.conftest import ServeFactory

pytestmark = pytest.mark.slow


async def sse_messages(response: httpx.Response) -> AsyncIterator[dict[str, str]]:
    """The SSE messages of a streamed response, one dict of fields each."""
    message: dict[str, str] = {}
    async for line in response.aiter_lines():
        if line == "":
            if message:
                yield message
            message = {}
        elif not line.startswith(":"):
            name, _, value = line.partition(":")
            message[name] = value.removeprefix(" ")


async def collect(
    http: httpx.AsyncClient,
    path: str,
    until: str,
    headers: dict[str, str] | None = None,
    started: asyncio.Event | None = None,
    until_job: str = "one",
) -> list[dict[str, Any]]:
    """Events of an SSE stream until one of type `until` for job `until_job`."""
    found: list[dict[str, Any]] = []
    async with asyncio.timeout(20), http.stream("GET", path, headers=headers) as response:
        assert response.status_code == 200, await response.aread()
        assert response.headers["content-type"].startswith("text/event-stream")
        if started is not None:
            started.set()
        async for message in sse_messages(response):
            if "event" not in message:
                continue
            event = json.loads(message["data"])
            assert message["event"] == event["event"]
            assert message.get("id") == event["id"]
            found.append(event)
            if event["event"] == until and event["job_id"] == until_job:
                return found
    raise AssertionError("the stream ended")


async def test_sse_follows_a_job_live_and_resumes_after_the_last_event_id(
    serve: ServeFactory,
) -> None:
    server = await serve()
    async with httpx.AsyncClient(base_url=server.http_url, timeout=20) as http:
        started = asyncio.Event()
        watching = asyncio.ensure_future(
            collect(http, "/channels/fast/events?job=one", "completed", started=started)
        )
        await started.wait()
        await http.post(
            "/channels/fast/jobs", headers={"Idempotency-Key": "other"}, json={"id": "o"}
        )
        accepted = await http.post(
            "/channels/fast/jobs", headers={"Idempotency-Key": "one"}, json={"id": "1"}
        )
        assert accepted.status_code == 202, accepted.text
        events = await watching
        assert [e["event"] for e in events] == ["waiting", "active", "completed"]
        assert {e["job_id"] for e in events} == {"one"}
        assert events[1]["data"] == {"attempt": 1}

        # a reconnect sends the last id it had: the stream goes on right after it
        resumed = await collect(
            http,
            "/channels/fast/events?job=one",
            "completed",
            headers={"Last-Event-ID": events[0]["id"]},
        )
        assert resumed == events[1:]
        # from the oldest kept: the whole channel, in order
        everything = await collect(http, "/channels/fast/events?after=0", "completed")
        assert everything[0]["job_id"] == "other"  # enqueued first
        assert [e for e in everything if e["job_id"] == "one"] == events
        assert [e["id"] for e in everything] == sorted(
            (e["id"] for e in everything), key=lambda i: int(i.split("-")[1])
        )

        refused = await http.get("/channels/fast/events", params={"after": "yesterday"})
        assert refused.status_code == 400, refused.text
        assert "not one this server gave" in refused.text
        assert refused.headers["content-type"].startswith("application/json")
        bad_job = await http.get("/channels/fast/events", params={"job": "a\nb"})
        assert bad_job.status_code == 400
