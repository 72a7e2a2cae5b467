"""Job control over GraphQL, from outside: the probe project served by `runtime serve` (its
own process, API keys on) and a real GraphQL client (gql over httpx, the schema fetched by
introspection first). Enqueue options (priority, delay, timeout) with the HTTP API's
bounds, cancel (waiting, delayed, running, finished), the bulk mutations, pause and
resume, and what Job and ChannelCounts expose of them."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from typing import Any

import pytest
from gql import Client as GraphQLClient
from gql import GraphQLRequest, gql
from gql.client import AsyncClientSession
from gql.transport.exceptions import TransportQueryError, TransportServerError
from gql.transport.httpx import HTTPXAsyncTransport
from pydantic import BaseModel

from runtime.engine.client import Client
from tests.runtime.conftest import ServeFactory, Server

pytestmark = pytest.mark.slow

API_KEY = "graphql-control-secret"

JOB = """
query($channel: ChannelName!, $id: ID!) {
  job(channel: $channel, id: $id) {
    id state priority progress cancelRequested attempts error { type }
  }
}
"""
COUNTS = """
query($channel: ChannelName!) {
  channelCounts(channel: $channel) {
    waiting active delayed completed failed cancelled paused heldBackMs
    waitingByPriority { priority waiting }
  }
}
"""
ENQUEUE_FAST = """
mutation($id: String!, $jobId: String, $priority: Int, $delayMs: Long, $timeoutMs: Long) {
  enqueueFast(payload: {id: $id}, jobId: $jobId, priority: $priority, delayMs: $delayMs,
              timeoutMs: $timeoutMs) { id channel }
}
"""


class _Unchecked(BaseModel):
    """A `fast`/`other` payload the channel's model rejects (`id` is empty): enqueued from
    Python, past GraphQL's validation, its job fails at once (payload_invalid)."""

    id: str


@pytest.fixture
async def server(serve: ServeFactory) -> Server:
    return await serve({"API_KEYS": API_KEY})


@pytest.fixture
async def session(server: Server) -> AsyncIterator[AsyncClientSession]:
    transport = HTTPXAsyncTransport(
        url=f"{server.http_url}/graphql",
        headers={"Authorization": f"Bearer {API_KEY}"},
        timeout=10,
    )
    async with GraphQLClient(transport=transport, fetch_schema_from_transport=True) as connected:
        yield connected


async def run(session: AsyncClientSession, document: str, **variables: Any) -> dict[str, Any]:
    return await session.execute(GraphQLRequest(gql(document), variable_values=variables))


async def error_of(session: AsyncClientSession, document: str, **variables: Any) -> Any:
    with pytest.raises(TransportQueryError) as raised:
        await run(session, document, **variables)
    [error] = raised.value.errors or []
    return error


async def job(session: AsyncClientSession, channel: str, job_id: str) -> dict[str, Any]:
    found: dict[str, Any] | None = (await run(session, JOB, channel=channel, id=job_id))["job"]
    assert found is not None, f"no job {job_id}"
    return found


async def until(
    session: AsyncClientSession, channel: str, job_id: str, state: str, within: float = 20.0
) -> dict[str, Any]:
    deadline = time.monotonic() + within
    while True:
        found = await job(session, channel, job_id)
        if found["state"] == state:
            return found
        if time.monotonic() > deadline:
            pytest.fail(f"job {job_id} is {found['state']}, not {state}, after {within} s")
        await asyncio.sleep(0.05)


async def counts(session: AsyncClientSession, channel: str) -> dict[str, Any]:
    found: dict[str, Any] = (await run(session, COUNTS, channel=channel))["channelCounts"]
    return found


async def test_priority_delay_and_timeout_options_while_paused(
    session: AsyncClientSession,
) -> None:
    paused = await run(session, "mutation { pauseChannel(channel: FAST) { paused waiting } }")
    assert paused["pauseChannel"] == {"paused": True, "waiting": 0}
    for job_id, priority in (("p9", 9), ("p1", 1), ("p5", None)):
        enqueued = await run(session, ENQUEUE_FAST, id=job_id, jobId=job_id, priority=priority)
        assert enqueued["enqueueFast"] == {"id": job_id, "channel": "fast"}
    later = await run(session, ENQUEUE_FAST, id="later", jobId="later", delayMs=60_000)
    assert later["enqueueFast"]["id"] == "later"

    summary = await counts(session, "FAST")
    assert (summary["paused"], summary["waiting"], summary["delayed"]) == (True, 3, 1)
    assert summary["waitingByPriority"] == [
        {"priority": 1, "waiting": 1},
        {"priority": 5, "waiting": 1},
        {"priority": 9, "waiting": 1},
    ]
    waiting = await run(
        session, "{ jobs(channel: FAST, state: WAITING) { items { id priority } } }"
    )
    assert waiting["jobs"]["items"] == [
        {"id": "p1", "priority": 1},
        {"id": "p5", "priority": 5},
        {"id": "p9", "priority": 9},
    ]
    assert (await job(session, "FAST", "later"))["state"] == "DELAYED"

    resumed = await run(session, "mutation { resumeChannel(channel: FAST) { paused } }")
    assert resumed["resumeChannel"] == {"paused": False}
    for job_id in ("p1", "p5", "p9"):
        await until(session, "FAST", job_id, "COMPLETED")

    # a channel's declared default priority (probe's `other`: 3) applies without one
    plain = await run(session, 'mutation { enqueueOther(payload: {id: "o"}) { id } }')
    assert (await job(session, "OTHER", plain["enqueueOther"]["id"]))["priority"] == 3

    # a job's own timeout: the slow handler's 5 s run is cut at 200 ms (one attempt)
    slow = await run(
        session,
        'mutation { enqueueSlow(payload: {id: "cut", seconds: 5}, timeoutMs: 200) { id } }',
    )
    timed_out = await until(session, "SLOW", slow["enqueueSlow"]["id"], "FAILED", within=10)
    assert timed_out["error"]["type"] == "timeout"


async def test_options_out_of_bounds_name_each_argument_and_enqueue_nothing(
    session: AsyncClientSession,
) -> None:
    before = await counts(session, "FAST")
    error = await error_of(
        session,
        ENQUEUE_FAST,
        id="",
        jobId="",
        priority=11,
        delayMs=-1,
        timeoutMs=0,
    )
    assert error["extensions"]["code"] == "BAD_USER_INPUT"
    assert [field["path"] for field in error["extensions"]["fields"]] == [
        ["jobId"],
        ["delayMs"],
        ["priority"],
        ["timeoutMs"],
        ["payload", "id"],
    ]
    fields = {field["field"]: field["message"] for field in error["extensions"]["fields"]}
    assert fields["priority"] == "1 (starts first) to 10; got 11"
    assert fields["timeoutMs"] == "1 to 86400000 (a day); got 0"
    assert error["message"].startswith("invalid input: jobId: 1 to 200 characters; got 0;")

    # the bound the HTTP API has on delays: a year
    too_late = await error_of(session, ENQUEUE_FAST, id="x", delayMs=400 * 24 * 3600 * 1000)
    assert [field["path"] for field in too_late["extensions"]["fields"]] == [["delayMs"]]

    batch = await error_of(
        session,
        'mutation($p: Int) { enqueueFastBatch(payloads: [{id: "a"}, {id: "b"}], '
        "priority: $p) { ids } }",
        p=0,
    )
    assert batch["extensions"]["fields"] == [
        {"path": ["priority"], "field": "priority", "message": "1 (starts first) to 10; got 0"}
    ]
    after = await counts(session, "FAST")
    assert (after["waiting"], after["delayed"], after["completed"]) == (
        before["waiting"],
        before["delayed"],
        before["completed"],
    )

    # a batch with options: each job gets them
    done = await run(
        session,
        'mutation { enqueueFastBatch(payloads: [{id: "a"}, {id: "b"}], priority: 2, '
        "delayMs: 60000) { ids } }",
    )
    for job_id in done["enqueueFastBatch"]["ids"]:
        found = await job(session, "FAST", job_id)
        assert (found["state"], found["priority"]) == ("DELAYED", 2)


async def test_cancel_a_delayed_a_running_and_a_finished_job(
    session: AsyncClientSession,
) -> None:
    await run(session, ENQUEUE_FAST, id="d", jobId="delayed-1", delayMs=60_000)
    cancelled = await run(
        session,
        'mutation { cancelJob(channel: FAST, id: "delayed-1") { id channel cancelled state } }',
    )
    assert cancelled["cancelJob"] == {
        "id": "delayed-1",
        "channel": "fast",
        "cancelled": True,
        "state": "DELAYED",
    }
    assert (await job(session, "FAST", "delayed-1"))["state"] == "CANCELLED"

    await run(
        session,
        'mutation { enqueueSlow(payload: {id: "long", seconds: 20}, jobId: "long-1") { id } }',
    )
    running = await until(session, "SLOW", "long-1", "ACTIVE")
    deadline = time.monotonic() + 10
    while running["progress"] is None and time.monotonic() < deadline:
        await asyncio.sleep(0.05)
        running = await job(session, "SLOW", "long-1")
    assert running["progress"] == {"stage": "sleeping", "seconds": 20}
    asked = await run(
        session, 'mutation { cancelJob(channel: SLOW, id: "long-1") { cancelled state } }'
    )
    assert asked["cancelJob"] == {"cancelled": False, "state": "ACTIVE"}
    ended = await until(session, "SLOW", "long-1", "CANCELLED", within=10)
    assert ended["attempts"] == 1

    listed = await run(session, "{ jobs(channel: SLOW, state: CANCELLED) { items { id } total } }")
    assert listed["jobs"]["items"] == [{"id": "long-1"}]
    assert (await counts(session, "SLOW"))["cancelled"] == 1

    conflict = await error_of(session, 'mutation { cancelJob(channel: SLOW, id: "long-1") { id } }')
    assert conflict["extensions"] == {
        "code": "CONFLICT",
        "state": "CANCELLED",
        "allowed": ["WAITING", "DELAYED", "ACTIVE"],
    }
    assert (
        "is cancelled; only waiting, delayed or active jobs can be cancelled"
        in (conflict["message"])
    )
    missing = await error_of(session, 'mutation { cancelJob(channel: SLOW, id: "never") { id } }')
    assert missing["extensions"] == {"code": "NOT_FOUND"}


async def test_bulk_mutations_return_how_many(
    session: AsyncClientSession, server: Server, redis_url: str, key_prefix: str
) -> None:
    await run(session, "mutation { pauseChannel(channel: OTHER) { paused } }")
    batch = await run(
        session,
        'mutation { enqueueOtherBatch(payloads: [{id: "1"}, {id: "2"}, {id: "3"}]) { ids } }',
    )
    assert len(batch["enqueueOtherBatch"]["ids"]) == 3
    cancelled = await run(
        session, "mutation { cancelWaitingJobs(channel: OTHER) { channel count } }"
    )
    assert cancelled["cancelWaitingJobs"] == {"channel": "other", "count": 3}
    wrong = await error_of(
        session, "mutation { cancelWaitingJobs(channel: OTHER, state: FAILED) { count } }"
    )
    assert wrong["extensions"]["code"] == "BAD_USER_INPUT"
    assert wrong["extensions"]["fields"][0]["path"] == ["state"]
    assert "WAITING or DELAYED; got FAILED" in wrong["message"]

    async with Client.from_url(redis_url, prefix=key_prefix) as client:
        for job_id in ("bad-1", "bad-2"):
            await client.enqueue("other", _Unchecked(id=""), job_id=job_id)
    await run(session, "mutation { resumeChannel(channel: OTHER) { paused } }")
    for job_id in ("bad-1", "bad-2"):
        await until(session, "OTHER", job_id, "FAILED")

    retried = await run(session, "mutation { retryAllFailed(channel: OTHER) { count } }")
    assert retried["retryAllFailed"] == {"count": 2}
    for job_id in ("bad-1", "bad-2"):  # their payload is still invalid: failed again
        found = await until(session, "OTHER", job_id, "FAILED")
        assert found["error"]["type"] == "payload_invalid"
    discarded = await run(session, "mutation { discardAllFailed(channel: OTHER) { count } }")
    assert discarded["discardAllFailed"] == {"count": 2}
    summary = await counts(session, "OTHER")
    assert (summary["failed"], summary["cancelled"]) == (0, 3)


async def test_job_control_needs_the_api_key(server: Server) -> None:
    transport = HTTPXAsyncTransport(url=f"{server.http_url}/graphql", timeout=10)
    with pytest.raises(TransportServerError) as raised:
        async with GraphQLClient(transport=transport) as anonymous:
            await anonymous.execute(gql("mutation { pauseChannel(channel: FAST) { paused } }"))
    assert raised.value.code == 401
