"""What docs/delivery.md promises and no other test exercised: a job still running at the
shutdown deadline is left for another process and counted as a stall ("Shutdown, and what
a duplicate looks like"), and a pydantic ValidationError, raised by the handler or by the
check of its result against the channel's `result` schema, fails a job at once ("Permanent
errors"). Real `runtime serve` processes on one Redis (delivery_conftest.py)."""

from __future__ import annotations

import time
from typing import Any

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families
from redis.asyncio import Redis

from tests.runtime.conftest import Server
from tests.runtime.delivery_conftest import (
    STOP_WITHIN,
    Cluster,
    failed_jobs,
    job_status,
    select,
    wait_events,
    wait_state,
)

pytestmark = [pytest.mark.slow, pytest.mark.timeout(60)]


async def metric(server: Server, name: str, channel: str) -> float:
    """The value of sample `name` with label channel=`channel` on the server's /metrics
    (0 when the channel has no such sample yet)."""
    async with httpx.AsyncClient(base_url=server.http_url, timeout=10) as http:
        response = await http.get("/metrics")
    assert response.status_code == 200, response.text
    for family in text_string_to_metric_families(response.text):
        for sample in family.samples:
            if sample.name == name and sample.labels.get("channel") == channel:
                return float(sample.value)
    return 0.0


# -- shutdown deadline -------------------------------------------------------------------


async def test_a_job_running_at_the_shutdown_deadline_is_taken_over_as_a_stall(
    cluster: Cluster, redis: Redis
) -> None:
    """`stall` (stalled: {interval: 2s, max_count: 1}); process A has SHUTDOWN_TIMEOUT 1 s
    and runs a 3 s job when it gets SIGTERM. A exits 0 without finishing it (the handler
    is cancelled, nothing recorded), the job stays pending; process B, started after A is
    gone, takes it over once the interval has passed and completes it: attempts 2,
    failures 0, and B counts one stall."""
    (first,) = await cluster.start(1, channels="stall", env={"SHUTDOWN_TIMEOUT": "1"})
    probe = cluster.probe(redis)
    async with httpx.AsyncClient(base_url=first.http_url, timeout=10) as http:
        response = await http.post("/channels/stall/jobs", json={"id": "d1", "seconds": 3})
        assert response.status_code == 202, response.text
        job_id = response.json()["id"]
    events = await wait_events(probe, lambda seen: bool(select(seen, "start", "stall", "d1")))
    assert select(events, "start", "stall", "d1")[0].pid == first.pid

    began = time.monotonic()
    code = await first.stop(within=STOP_WITHIN)
    print(f"A exited {time.monotonic() - began:.2f} s after SIGTERM (SHUTDOWN_TIMEOUT 1 s)")
    assert code == 0, f"A exited with {code}:\n{cluster.output()}"
    job_key = probe.keys("stall").job(job_id)
    assert not select(await wait_events(probe, lambda seen: True), "end", "stall"), (
        "A's run was not cancelled at its deadline"
    )
    assert await probe.pending("stall") == 1, "the job was acknowledged at shutdown"
    assert await redis.hget(job_key, "state") == b"active"
    assert await redis.hget(job_key, "attempts") == b"1"

    (second,) = await cluster.start(1, channels="stall")
    events = await wait_events(
        probe, lambda seen: bool(select(seen, "end", "stall", "d1")), within=20
    )
    starts = select(events, "start", "stall", "d1")
    assert [(start.pid, start.attempt) for start in starts] == [(first.pid, 1), (second.pid, 2)]
    assert [end.pid for end in select(events, "end", "stall", "d1")] == [second.pid]
    async with httpx.AsyncClient(base_url=second.http_url, timeout=10) as http:
        status = await wait_state(http, "stall", job_id, "completed", within=10)
    assert status["attempts"] == 2
    assert status["failures"] == 0
    assert await probe.pending("stall") == 0
    assert await metric(second, "channelkit_jobs_stalled_total", "stall") == 1.0
    assert await metric(second, "channelkit_jobs_failed_total", "stall") == 0.0


# -- permanent errors --------------------------------------------------------------------


async def enqueue_strict(http: httpx.AsyncClient, payload_id: str, mode: str) -> str:
    response = await http.post("/channels/strict/jobs", json={"id": payload_id, "mode": mode})
    assert response.status_code == 202, response.text
    job_id: str = response.json()["id"]
    return job_id


async def assert_failed_at_once(
    cluster: Cluster, redis: Redis, http: httpx.AsyncClient, job_id: str, payload_id: str
) -> dict[str, Any]:
    """The job failed on its first run, in the failed set, no retry in the delayed set
    (`strict` has retry.attempts 3 and a one-minute backoff: a retry would wait there)."""
    status = await wait_state(http, "strict", job_id, "failed", within=10)
    keys = cluster.probe(redis).keys("strict")
    assert status["attempts"] == 1
    assert status["failures"] == 1
    assert status["error"]["type"].rsplit(".", 1)[-1] == "ValidationError", status["error"]
    assert status["error"]["attempt"] == 1
    assert [error["attempt"] for error in status["errors"]] == [1]
    assert job_id in await failed_jobs(http, "strict")
    assert await redis.zscore(keys.delayed, job_id) is None
    assert await redis.zcard(keys.delayed) == 0
    events = await wait_events(cluster.probe(redis), lambda seen: True)
    assert [start.attempt for start in select(events, "start", "strict", payload_id)] == [1]
    return status


async def test_a_validation_error_raised_by_the_handler_fails_the_job_at_once(
    cluster: Cluster, redis: Redis
) -> None:
    """The handler lets a pydantic ValidationError through (a reply it could not parse):
    failed on attempt 1 of 3, not retried."""
    (server,) = await cluster.start(1, channels="strict")
    async with httpx.AsyncClient(base_url=server.http_url, timeout=10) as http:
        job_id = await enqueue_strict(http, "v1", "invalid")
        status = await assert_failed_at_once(cluster, redis, http, job_id, "v1")
    assert "count" in status["error"]["message"]
    assert await metric(server, "channelkit_jobs_failed_total", "strict") == 1.0
    assert await metric(server, "channelkit_jobs_retried_total", "strict") == 0.0


async def test_a_result_its_schema_rejects_fails_the_job_at_once(
    cluster: Cluster, redis: Redis
) -> None:
    """The handler returns {count: "many"}; the channel's result schema wants an integer:
    failed on attempt 1 of 3, not retried. The same handler's valid result completes."""
    (server,) = await cluster.start(1, channels="strict")
    async with httpx.AsyncClient(base_url=server.http_url, timeout=10) as http:
        good = await enqueue_strict(http, "r0", "ok")
        completed = await wait_state(http, "strict", good, "completed", within=10)
        job_id = await enqueue_strict(http, "r1", "bad_result")
        status = await assert_failed_at_once(cluster, redis, http, job_id, "r1")
        assert (await job_status(http, "strict", job_id)).get("result") is None
    assert completed["result"] == {"count": 1}
    assert completed["attempts"] == 1
    assert "count" in status["error"]["message"]
    assert await metric(server, "channelkit_jobs_failed_total", "strict") == 1.0
    assert await metric(server, "channelkit_jobs_retried_total", "strict") == 0.0
