"""Delivery guarantees of live processes: rate limit, retries, the failed set, idempotent
and delayed enqueue, retention, poison messages. One cluster of three `runtime serve`
processes (delivery_conftest.py) serves the whole module; each test uses its own channel
or its own job ids."""

from __future__ import annotations

import asyncio
import bisect
import itertools
import json
import statistics
import time
import uuid
from collections import Counter
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import httpx
import pytest
import pytest_asyncio
from redis.asyncio import Redis

from runtime.engine.client import Client
from tests.conftest import connect_redis, new_prefix
from tests.runtime.conftest import Probe, Server, text
from tests.runtime.delivery_conftest import (
    Cluster,
    delete_prefix,
    failed_jobs,
    job_status,
    project_module,
    running_cluster,
    select,
    wait_events,
    wait_state,
)

pytestmark = [
    pytest.mark.slow,
    pytest.mark.timeout(60),
    pytest.mark.asyncio(loop_scope="module"),
]


@dataclass
class Shared:
    cluster: Cluster
    servers: list[Server]
    redis: Redis
    probe: Probe
    redis_url: str

    @property
    def key_prefix(self) -> str:
        return self.cluster.key_prefix

    def http(self, index: int = 0) -> httpx.AsyncClient:
        return httpx.AsyncClient(base_url=self.servers[index].http_url, timeout=30)


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def shared(
    dproject: Path, redis_url: str, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[Shared]:
    key_prefix = new_prefix("delivery-")
    redis = connect_redis(redis_url)
    logs = tmp_path_factory.mktemp("delivery-logs")
    try:
        async with running_cluster(dproject, redis_url, key_prefix, logs) as cluster:
            servers = await cluster.start(3)
            yield Shared(cluster, servers, redis, cluster.probe(redis), redis_url)
    finally:
        await delete_prefix(redis, key_prefix)
        await redis.aclose()


# -- 4. rate limiter ---------------------------------------------------------------------


async def test_the_limiter_holds_across_processes(shared: Shared) -> None:
    """limiter {max: 20, duration: 1s}, concurrency 50, 3 processes, 120 jobs (~5 s of
    starts): no 1 s window starting at any start holds more than 20 starts, and the
    processes shared them. How much of the rate is used is a speed figure: `make bench`
    (bench/delivery_timing.py) reports it."""
    total, limit = 120, 20
    async with shared.http() as http:
        response = await http.post(
            "/channels/limited/jobs/batch", json=[{"id": f"r{n}"} for n in range(total)]
        )
        assert response.status_code == 202, response.text
    events = await wait_events(
        shared.probe, lambda seen: len(select(seen, "run", "limited")) >= total, within=15
    )
    runs = select(events, "run", "limited")
    assert len(runs) == total, "a job started twice"
    times = sorted(event.t for event in runs)
    per_window = [bisect.bisect_left(times, t + 1.0) - i for i, t in enumerate(times)]
    span = times[-1] - times[0]
    rate = total / span
    # The first window's burst is free; what follows shows how much of the rate is used.
    sustained = (total - limit) / span
    pids = Counter(event.pid for event in runs)
    print(
        f"limiter: max {max(per_window)} starts in any 1 s window (limit {limit}); "
        f"{total} starts over {span:.2f} s: {rate:.1f}/s overall, {sustained:.1f}/s after "
        f"the first window ({sustained / limit:.0%} of {limit}/s); starts per pid {dict(pids)}"
    )
    assert max(per_window) <= limit
    assert len(pids) >= 2, "only one process ran the limited channel"


# -- 5. retries and permanent errors -----------------------------------------------------


async def test_a_flaky_job_retries_with_exponential_backoff_and_completes(
    shared: Shared,
) -> None:
    """attempts 3, exponential backoff from 200 ms: fails twice, completes on attempt 3."""
    async with shared.http() as http:
        response = await http.post(
            "/channels/flaky/jobs", json={"id": "f1", "mode": "flaky", "fails": 2}
        )
        assert response.status_code == 202, response.text
        job_id = response.json()["id"]
        await wait_events(shared.probe, lambda seen: bool(select(seen, "ok", "flaky", "f1")))
        status = await wait_state(http, "flaky", job_id, "completed", within=3)
    events = await wait_events(shared.probe, lambda seen: True)
    starts = select(events, "start", "flaky", "f1")
    assert [start.attempt for start in starts] == [1, 2, 3]
    gaps = [later.t - earlier.t for earlier, later in itertools.pairwise(starts)]
    print(f"gaps between attempts: {[round(gap, 3) for gap in gaps]} s (backoff 0.2, 0.4)")
    assert gaps[0] >= 0.2
    assert gaps[1] >= 0.4
    assert status["attempts"] == 3
    assert [error["attempt"] for error in status["errors"]] == [1, 2]
    assert status["errors"][0]["message"] == "flaky failure on attempt 1"


async def test_a_permanent_error_fails_at_once_and_retries_run_out(shared: Shared) -> None:
    async with shared.http() as http:
        response = await http.post("/channels/flaky/jobs", json={"id": "p1", "mode": "permanent"})
        assert response.status_code == 202, response.text
        permanent = response.json()["id"]
        response = await http.post("/channels/twice/jobs", json={"id": "a1", "mode": "always"})
        assert response.status_code == 202, response.text
        always = response.json()["id"]

        first = await wait_state(http, "flaky", permanent, "failed", within=5)
        second = await wait_state(http, "twice", always, "failed", within=5)
        await asyncio.sleep(0.5)  # time for a wrong retry to show
        failed_flaky = await failed_jobs(http, "flaky")
        failed_twice = await failed_jobs(http, "twice")
    events = await wait_events(shared.probe, lambda seen: True)

    assert len(select(events, "start", "flaky", "p1")) == 1
    assert first["attempts"] == 1
    assert [error["message"] for error in first["errors"]] == ["permanent failure of p1"]
    assert first["error"]["type"] == "runtime.errors.PermanentError"
    assert failed_flaky[permanent]["error"]["message"] == "permanent failure of p1"

    assert [start.attempt for start in select(events, "start", "twice", "a1")] == [1, 2]
    assert second["attempts"] == 2
    assert [error["message"] for error in second["errors"]] == [
        "always fails, attempt 1",
        "always fails, attempt 2",
    ]
    assert always in failed_twice


# -- 6. retry from the failed set --------------------------------------------------------


async def test_a_failed_job_retried_from_the_failed_set_completes(shared: Shared) -> None:
    flag = f"{shared.probe.prefix}:flag:g1"
    await shared.redis.set(flag, 1)
    async with shared.http() as http:
        response = await http.post("/channels/twice/jobs", json={"id": "g1", "mode": "flag"})
        assert response.status_code == 202, response.text
        job_id = response.json()["id"]
        await wait_state(http, "twice", job_id, "failed", within=5)
        assert job_id in await failed_jobs(http, "twice")
        await shared.redis.delete(flag)

        response = await http.post(f"/channels/twice/jobs/{job_id}/retry")
        assert response.status_code == 202, response.text
        status = await wait_state(http, "twice", job_id, "completed", within=5)
        assert job_id not in await failed_jobs(http, "twice")
        response = await http.post(f"/channels/twice/jobs/{job_id}/retry")
        assert response.status_code == 409, "a completed job is not in the failed set"
    events = await wait_events(shared.probe, lambda seen: True)
    assert len(select(events, "ok", "twice", "g1")) == 1
    assert [start.attempt for start in select(events, "start", "twice", "g1")] == [1, 2, 3]
    assert status["attempts"] == 3


# -- 7. idempotent enqueue ---------------------------------------------------------------


async def test_the_same_idempotency_key_enqueues_one_job(shared: Shared, dproject: Path) -> None:
    key = f"idem-{uuid.uuid4().hex}"
    headers = {"Idempotency-Key": key}
    clients = [shared.http(index) for index in range(3)]
    try:
        # At once, through the three processes: the enqueue script decides atomically.
        responses = await asyncio.gather(
            *(
                http.post("/channels/mark/jobs", json={"id": "i1"}, headers=headers)
                for http in clients
            )
        )
        assert [r.status_code for r in responses] == [202] * 3, [r.text for r in responses]
        await wait_events(shared.probe, lambda seen: bool(select(seen, "run", "mark", "i1")))
        await wait_state(clients[0], "mark", key, "completed", within=3)
        again = await clients[1].post("/channels/mark/jobs", json={"id": "i1"}, headers=headers)
        assert again.status_code == 202, again.text
    finally:
        for http in clients:
            await http.aclose()
    assert {r.json()["id"] for r in [*responses, again]} == {key}

    producer = project_module(dproject, "channels.mark")
    model = project_module(dproject, "models.mark").MarkPayload
    job_id = f"py-{uuid.uuid4().hex}"
    async with Client.from_url(shared.redis_url, prefix=shared.key_prefix) as client:
        ids = await asyncio.gather(
            *(producer.enqueue(client, model(id="i2"), job_id=job_id) for _ in range(3))
        )
        await wait_events(shared.probe, lambda seen: bool(select(seen, "run", "mark", "i2")))
        ids.append(await producer.enqueue(client, model(id="i2"), job_id=job_id))
    assert set(ids) == {job_id}

    await asyncio.sleep(0.5)  # time for a duplicate to run
    events = await wait_events(shared.probe, lambda seen: True)
    assert len(select(events, "run", "mark", "i1")) == 1
    assert len(select(events, "run", "mark", "i2")) == 1


# -- 8. delayed jobs ---------------------------------------------------------------------


async def test_delayed_jobs_start_when_due(shared: Shared, dproject: Path) -> None:
    """delay_ms=1000 by HTTP and by the producer, 10 each, enqueued 40 ms apart: no job
    starts before its due time (enqueued_at + delay), none more than 100 ms after."""
    count, delay = 10, 1000
    producer = project_module(dproject, "channels.mark")
    model = project_module(dproject, "models.mark").MarkPayload
    job_ids: dict[str, str] = {}
    async with (
        shared.http() as http,
        Client.from_url(shared.redis_url, prefix=shared.key_prefix) as client,
    ):
        for n in range(count):
            response = await http.post(
                "/channels/mark/jobs", json={"id": f"dh{n}"}, params={"delay_ms": delay}
            )
            assert response.status_code == 202, response.text
            job_ids[f"dh{n}"] = response.json()["id"]
            job_ids[f"dp{n}"] = await producer.enqueue(client, model(id=f"dp{n}"), delay_ms=delay)
            await asyncio.sleep(0.04)
        events = await wait_events(
            shared.probe,
            lambda seen: all(select(seen, "run", "mark", payload) for payload in job_ids),
            within=10,
        )
        statuses = await asyncio.gather(
            *(job_status(http, "mark", job_id) for job_id in job_ids.values())
        )
    lateness: dict[str, float] = {}
    for (payload, _), status in zip(job_ids.items(), statuses, strict=True):
        (run,) = select(events, "run", "mark", payload)
        due = datetime.fromisoformat(status["enqueued_at"]).timestamp() + delay / 1000
        lateness[payload] = run.t - due
    values = sorted(lateness.values())
    median, worst = statistics.median(values), max(values)
    print(
        f"delayed jobs: lateness median {median * 1000:.1f} ms, max {worst * 1000:.1f} ms, "
        f"min {values[0] * 1000:.1f} ms over {len(values)} jobs"
    )
    # Order, not speed: no job started before its due time (how late they start is a
    # figure of `make bench`, bench/delivery_timing.py).
    assert values[0] >= 0, f"started before due: {lateness}"


# -- 9. retention ------------------------------------------------------------------------


@pytest.mark.timeout(240)
async def test_retention_keeps_the_last_100_of_2000_jobs(shared: Shared) -> None:
    """keep: {completed: {count: 100}}; 2,000 no-op jobs through the batch route. (How
    fast 10,000 drain is a figure of `make bench`, bench/delivery_timing.py.)"""
    total, chunk = 2_000, 500
    keys = shared.probe.keys("bulk")
    clients = [shared.http(index) for index in range(3)]
    began = time.monotonic()
    try:
        responses = await asyncio.gather(
            *(
                clients[n % 3].post(
                    "/channels/bulk/jobs/batch",
                    json=[{"n": start + i} for i in range(chunk)],
                )
                for n, start in enumerate(range(0, total, chunk))
            )
        )
    finally:
        for http in clients:
            await http.aclose()
    enqueued = time.monotonic() - began
    assert [r.status_code for r in responses] == [202] * (total // chunk)
    deadline = time.monotonic() + 200  # a hang bound, not a speed goal
    while True:
        length = await shared.probe.queued("bulk")
        pending = await shared.probe.pending("bulk")
        delayed = await shared.redis.zcard(keys.delayed)
        if length == pending == delayed == 0:
            break
        assert time.monotonic() < deadline, f"not drained: {length} in stream, {pending} pending"
        await asyncio.sleep(0.05)
    drained = time.monotonic() - began
    print(
        f"retention: enqueued {total} jobs in {enqueued:.2f} s; drained in {drained:.2f} s "
        f"({total / drained:.0f} jobs/s, 3 processes)"
    )

    found = [text(key) async for key in shared.redis.scan_iter(match=f"{keys.base}*")]
    hashes = [key for key in found if key.startswith(keys.job_prefix)]
    others = sorted(key for key in found if not key.startswith(keys.job_prefix))
    completed = await shared.redis.zcard(keys.completed)
    failed = await shared.redis.zcard(keys.failed)
    length = await shared.redis.xlen(keys.stream)
    print(
        f"retention: {len(hashes)} job hashes, ZCARD completed {completed}, failed {failed}, "
        f"stream length {length}; other keys {others}"
    )
    assert failed == 0
    assert completed == 100
    assert len(hashes) <= 100 + failed
    assert length == 0
    members: list[bytes] = await shared.redis.zrange(keys.completed, 0, -1)  # type: ignore[assignment]
    kept = {text(member) for member in members}
    assert {key.removeprefix(keys.job_prefix) for key in hashes} == kept


# -- 10. poison messages -----------------------------------------------------------------


async def test_undecodable_messages_go_to_the_failed_set_and_the_worker_goes_on(
    shared: Shared,
) -> None:
    stream = shared.probe.keys("mark").stream
    garbage = text(await shared.redis.xadd(stream, {"data": "not json"}))
    bad_id = f"bad-{uuid.uuid4().hex}"
    envelope: dict[str, object] = {
        "task_id": bad_id,
        "task_name": "channelkit.mark",
        "labels": {},
        "labels_types": None,
        "args": [],
        "kwargs": {"payload": {"id": ""}},
    }
    await shared.redis.xadd(stream, {"data": json.dumps(envelope)})
    async with shared.http() as http:
        response = await http.post("/channels/mark/jobs", json={"id": "after-poison"})
        assert response.status_code == 202, response.text
        good = await wait_state(http, "mark", response.json()["id"], "completed", within=5)
        deadline = time.monotonic() + 5
        while True:
            failed = await failed_jobs(http, "mark")
            if {f"poison-{garbage}", bad_id} <= failed.keys():
                break
            assert time.monotonic() < deadline, f"not in the failed set: {failed}"
            await asyncio.sleep(0.05)
    assert good["attempts"] == 1
    assert failed[f"poison-{garbage}"]["error"]["type"] == "message_invalid"
    assert failed[f"poison-{garbage}"]["payload"] == "not json"
    assert failed[bad_id]["error"]["type"] == "payload_invalid"
    assert "id" in failed[bad_id]["error"]["message"]
    assert failed[bad_id]["payload"] == {"id": ""}
    assert await shared.probe.queued("mark") == 0
    assert await shared.probe.pending("mark") == 0
    events = await wait_events(shared.probe, lambda seen: True)
    assert len(select(events, "run", "mark", "after-poison")) == 1
    assert not select(events, "run", "mark", "")
