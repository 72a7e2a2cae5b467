"""Job control end to end, on served processes: priorities, pause and resume, cancel,
timeouts, progress, bulk operations and batch items with options of their own over HTTP
and gRPC, and RetryAfter back-pressure against a real local provider answering 429."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.runtime.conftest import Probe, ServeFactory, events_of, grpc_calls

pytestmark = pytest.mark.slow


async def job(http: httpx.AsyncClient, channel: str, job_id: str) -> dict[str, Any]:
    response = await http.get(f"/channels/{channel}/jobs/{job_id}")
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


async def until_state(
    http: httpx.AsyncClient, channel: str, job_id: str, state: str, within: float = 15.0
) -> dict[str, Any]:
    deadline = time.monotonic() + within
    while True:
        found = await job(http, channel, job_id)
        if found["state"] == state:
            return found
        if time.monotonic() > deadline:
            pytest.fail(f"job {job_id} is {found['state']}, not {state}, after {within} s")
        await asyncio.sleep(0.05)


async def test_priorities_and_pause_over_http(serve: ServeFactory, probe: Probe) -> None:
    server = await serve()
    async with httpx.AsyncClient(base_url=server.http_url) as http:
        assert (await http.post("/channels/fast/pause")).status_code == 204
        for n, priority in enumerate((9, 5, 1, 5)):
            response = await http.post(
                "/channels/fast/jobs", params={"priority": priority}, json={"id": f"j{n}"}
            )
            assert response.status_code == 202, response.text
        default = await http.post("/channels/fast/jobs", json={"id": "plain"})
        assert (await job(http, "fast", default.json()["id"]))["priority"] == 5

        summary = (await http.get("/channels/fast")).json()
        assert summary["paused"] is True
        assert summary["waiting"] == 5
        assert summary["waiting_by_priority"] == {"1": 1, "5": 3, "9": 1}
        waiting = (await http.get("/channels/fast/jobs", params={"state": "waiting"})).json()
        # start order: priority first, FIFO within one
        assert [(j["priority"], j["payload"]["id"]) for j in waiting["jobs"]] == [
            (1, "j2"),
            (5, "j1"),
            (5, "j3"),
            (5, "plain"),
            (9, "j0"),
        ]
        metrics = (await http.get("/metrics")).text
        assert 'channelkit_channel_paused{channel="fast"} 1.0' in metrics
        assert 'channelkit_queue_waiting_jobs{channel="fast",priority="5"} 3.0' in metrics

        await asyncio.sleep(1.0)  # paused: a worker that is idle takes nothing
        assert events_of(await probe.events(), "fast") == []

        assert (await http.post("/channels/fast/resume")).status_code == 204
        await probe.wait_for(lambda events: len(events_of(events, "fast")) == 5)
        assert (await http.get("/channels/fast")).json()["paused"] is False

        refused = await http.post("/channels/fast/jobs", params={"priority": 11}, json={"id": "x"})
        assert refused.status_code == 422, refused.text
        assert [error["field"] for error in refused.json()["errors"]] == ["priority"]


async def test_cancel_a_running_job_over_http(serve: ServeFactory, probe: Probe) -> None:
    server = await serve()
    async with httpx.AsyncClient(base_url=server.http_url) as http:
        enqueued = await http.post("/channels/slow/jobs", json={"id": "long", "seconds": 20})
        job_id = enqueued.json()["id"]
        await probe.wait_for(lambda events: ("long", server.pid) in events_of(events, "start"))
        running = await until_state(http, "slow", job_id, "active")
        assert running["progress"] == {"stage": "sleeping", "seconds": 20}

        cancel = await http.post(f"/channels/slow/jobs/{job_id}/cancel")
        assert cancel.status_code == 200, cancel.text
        assert cancel.json() == {"id": job_id, "cancelled": False, "state": "active"}
        ended = await until_state(http, "slow", job_id, "cancelled")
        assert ended["attempts"] == 1  # not retried
        # CancelledError reached the handler: its finally block ran
        assert ("long", server.pid) in events_of(await probe.events(), "end")
        assert (await http.get("/channels/slow")).json()["cancelled"] == 1

        again = await http.post(f"/channels/slow/jobs/{job_id}/cancel")
        assert again.status_code == 409
        assert "is cancelled" in again.json()["detail"]
        missing = await http.post("/channels/slow/jobs/nope/cancel")
        assert missing.status_code == 404


async def test_a_handler_over_its_timeout_fails_with_type_timeout(serve: ServeFactory) -> None:
    server = await serve()
    async with httpx.AsyncClient(base_url=server.http_url) as http:
        enqueued = await http.post(
            "/channels/slow/jobs", params={"timeout_ms": 300}, json={"id": "t", "seconds": 10}
        )
        assert enqueued.status_code == 202, enqueued.text
        failed = await until_state(http, "slow", enqueued.json()["id"], "failed")
        assert failed["error"]["type"] == "timeout"
        assert failed["attempts"] == 1  # retry.attempts 1 in the probe project's defaults


async def test_bulk_operations_and_batch_items_over_http(serve: ServeFactory) -> None:
    server = await serve()
    async with httpx.AsyncClient(base_url=server.http_url) as http:
        assert (await http.post("/channels/slow/pause")).status_code == 204
        items = [
            {"payload": {"id": f"b{n}", "seconds": 0}, "job_id": f"item-{n}", "priority": 1 + n}
            for n in range(5)
        ]
        items[4]["delay_ms"] = 60_000
        batch = await http.post("/channels/slow/jobs/batch", json={"jobs": items})
        assert batch.status_code == 202, batch.text
        assert batch.json()["ids"] == [f"item-{n}" for n in range(5)]
        again = await http.post("/channels/slow/jobs/batch", json={"jobs": items[:1]})
        assert again.json()["ids"] == ["item-0"]  # idempotent per item
        assert (await job(http, "slow", "item-3"))["priority"] == 4
        assert (await job(http, "slow", "item-4"))["state"] == "delayed"

        bad = await http.post(
            "/channels/slow/jobs/batch",
            json={"jobs": [items[0], {"payload": {"id": "x"}, "priority": 0}]},
        )
        assert bad.status_code == 422, bad.text
        fields = {problem["field"] for problem in bad.json()["errors"]}
        assert fields == {"jobs.1.priority", "jobs.1.payload.seconds"}

        cancelled = await http.post("/channels/slow/jobs/cancel")
        assert cancelled.json() == {"channel": "slow", "count": 4}
        delayed = await http.post("/channels/slow/jobs/cancel", params={"state": "delayed"})
        assert delayed.json() == {"channel": "slow", "count": 1}
        summary = (await http.get("/channels/slow")).json()
        assert (summary["waiting"], summary["delayed"], summary["cancelled"]) == (0, 0, 5)
        retried = await http.post("/channels/slow/jobs/item-2/retry")
        assert retried.status_code == 202  # a cancelled job can run again
        assert (await job(http, "slow", "item-2"))["state"] == "waiting"
        assert (await http.post("/channels/slow/resume")).status_code == 204
        await until_state(http, "slow", "item-2", "completed")


async def test_job_control_over_grpc(serve: ServeFactory, probe_project: Path) -> None:
    server = await serve()
    results = await grpc_calls(
        probe_project,
        server,
        [
            {"service": "JobsService", "method": "PauseChannel", "request": {"channel": "fast"}},
            {
                "method": "EnqueueFast",
                "request": {"payload": {"id": "g1"}, "job_id": "g1", "priority": 2},
            },
            {
                "method": "EnqueueFastBatch",
                "request": {
                    "jobs": [
                        {"payload": {"id": "g2"}, "job_id": "g2", "priority": 7},
                        {"payload": {"id": "g3"}, "job_id": "g3", "delay_ms": 60000},
                    ]
                },
            },
            {
                "service": "JobsService",
                "method": "GetJob",
                "request": {"channel": "fast", "job_id": "g1"},
            },
            {
                "service": "JobsService",
                "method": "CancelJob",
                "request": {"channel": "fast", "job_id": "g1"},
            },
            {
                "service": "JobsService",
                "method": "CancelJob",
                "request": {"channel": "fast", "job_id": "g1"},
            },
            {"method": "EnqueueFast", "request": {"payload": {"id": "bad"}, "priority": 11}},
            {
                "service": "JobsService",
                "method": "CancelJobs",
                "request": {"channel": "fast", "state": "JOB_STATE_DELAYED"},
            },
            {"service": "JobsService", "method": "ResumeChannel", "request": {"channel": "fast"}},
        ],
    )
    pause, single, batch, found, cancel, again, bad, bulk, resume = results
    assert pause["code"] == "OK"
    assert pause["reply"]["counts"]["paused"] is True
    assert single["reply"] == {"job_id": "g1"}
    assert batch["reply"] == {"job_ids": ["g2", "g3"]}
    assert found["reply"]["job"]["priority"] == 2
    assert cancel["reply"] == {"cancelled": True, "state": "JOB_STATE_WAITING"}
    assert again["code"] == "FAILED_PRECONDITION"
    assert "is cancelled" in again["details"]
    assert bad["code"] == "INVALID_ARGUMENT"
    assert "priority" in bad["details"]
    assert bulk["reply"] == {"count": "1"}  # uint64 in proto JSON is a string
    counts = resume["reply"]["counts"]
    assert counts.get("paused", False) is False
    assert counts["cancelled"] == "2"


@dataclass
class Provider:
    """A provider that answers 429 with Retry-After to the first call of each id listed
    in `refuse`, and 200 otherwise; it logs (id, monotonic time, status) of every call."""

    refuse: dict[str, float]
    calls: list[tuple[str, float, int]] = field(default_factory=list)
    url: str = ""

    def called(self, job: str) -> list[tuple[float, int]]:
        return [(at, status) for name, at, status in self.calls if name == job]


@pytest.fixture
def provider() -> Iterator[Provider]:
    import json

    state = Provider(refuse={})
    lock = threading.Lock()

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
            with lock:
                retry_after = state.refuse.pop(body["id"], None)
                status = 429 if retry_after is not None else 200
                state.calls.append((body["id"], time.monotonic(), status))
            self.send_response(status)
            if retry_after is not None:
                self.send_header("Retry-After", str(retry_after))
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, format: str, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    state.url = f"http://127.0.0.1:{server.server_address[1]}/send"
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield state
    finally:
        server.shutdown()
        server.server_close()


async def test_retry_after_with_channel_scope_holds_the_channel(
    serve: ServeFactory, provider: Provider
) -> None:
    """A 429 with Retry-After: 1.5 and scope channel: the job waits without a failure
    counted, and no process starts another job of the channel until the time has passed."""
    server = await serve()
    provider.refuse["first"] = 1.5
    async with httpx.AsyncClient(base_url=server.http_url) as http:
        body = {"id": "first", "url": provider.url, "scope": "channel", "tenant": "t1"}
        await http.post("/channels/provider/jobs", json=body, headers={"Idempotency-Key": "first"})
        held = await until_state(http, "provider", "first", "delayed")
        assert held["failures"] == 0
        assert (await http.get("/channels/provider")).json()["held_back_ms"] > 0
        other = {"id": "second", "url": provider.url, "scope": "channel", "tenant": "t2"}
        await http.post(
            "/channels/provider/jobs", json=other, headers={"Idempotency-Key": "second"}
        )
        done = await until_state(http, "provider", "first", "completed")
        await until_state(http, "provider", "second", "completed")
    refused_at = provider.called("first")[0][0]
    assert provider.called("first")[0][1] == 429
    assert provider.called("first")[1][0] >= refused_at + 1.5 - 0.05
    # the other job of the channel did not reach the provider during the hold
    assert provider.called("second")[0][0] >= refused_at + 1.5 - 0.05
    assert (done["attempts"], done["failures"]) == (2, 0)


async def test_retry_after_with_key_scope_holds_only_that_limiter_group(
    serve: ServeFactory, provider: Provider
) -> None:
    server = await serve()
    provider.refuse["k1"] = 2
    async with httpx.AsyncClient(base_url=server.http_url) as http:
        first = {"id": "k1", "url": provider.url, "scope": "key", "tenant": "busy"}
        await http.post("/channels/provider/jobs", json=first, headers={"Idempotency-Key": "k1"})
        await until_state(http, "provider", "k1", "delayed")
        for name, tenant in (("k2", "busy"), ("k3", "calm")):
            body = {"id": name, "url": provider.url, "scope": "key", "tenant": tenant}
            await http.post("/channels/provider/jobs", json=body, headers={"Idempotency-Key": name})
        calm = await until_state(http, "provider", "k3", "completed")
        for name in ("k1", "k2"):
            await until_state(http, "provider", name, "completed")
    refused_at = provider.called("k1")[0][0]
    # another group is not held: k3, enqueued after k2, reaches the provider first
    assert provider.called("k3")[0][0] < provider.called("k2")[0][0]
    assert provider.called("k2")[0][0] >= refused_at + 2 - 0.05  # the same group: held
    assert calm["failures"] == 0
