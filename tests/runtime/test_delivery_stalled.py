"""Delivery guarantees when a process dies mid-job: real `runtime serve` processes on one
Redis, one of them SIGKILLed while it runs a job (see delivery_conftest.py)."""

from __future__ import annotations

import asyncio
import time

import httpx
import pytest
from redis.asyncio import Redis

from tests.runtime.delivery_conftest import (
    Cluster,
    failed_jobs,
    job_status,
    select,
    wait_events,
    wait_state,
)

pytestmark = [pytest.mark.slow, pytest.mark.timeout(60)]


async def test_a_job_killed_mid_run_runs_again_elsewhere_and_completes_once(
    cluster: Cluster, redis: Redis
) -> None:
    """stalled: {interval: 2s, max_count: 1}; the job sleeps 3 s; its process is killed 0.5 s
    in. The live process takes it over within the interval (+2 s slack) and it ends once."""
    servers = await cluster.start(2, channels="stall")
    probe = cluster.probe(redis)
    async with httpx.AsyncClient(base_url=servers[0].http_url, timeout=10) as http:
        response = await http.post("/channels/stall/jobs", json={"id": "k1", "seconds": 3})
        assert response.status_code == 202, response.text
        job_id = response.json()["id"]
    events = await wait_events(probe, lambda seen: bool(select(seen, "start", "stall")))
    victim = cluster.by_pid(select(events, "start", "stall")[0].pid)
    (survivor,) = (server for server in servers if server is not victim)
    await asyncio.sleep(0.5)
    killed_at = await cluster.kill(victim)

    events = await wait_events(probe, lambda seen: len(select(seen, "start", "stall")) == 2, 8)
    restart = select(events, "start", "stall")[1]
    delay = restart.t - killed_at
    print(f"stalled job restarted {delay:.3f} s after SIGKILL (stalled interval 2 s)")
    assert restart.pid == survivor.pid
    assert restart.attempt == 2
    assert delay <= 2.0 + 2.0, f"took over {delay:.2f} s after the kill"

    events = await wait_events(probe, lambda seen: bool(select(seen, "end", "stall")), 6)
    async with httpx.AsyncClient(base_url=survivor.http_url, timeout=10) as http:
        status = await wait_state(http, "stall", job_id, "completed", within=3)
        await asyncio.sleep(0.5)  # time for a duplicate run to show
        status = await job_status(http, "stall", job_id)
    events = await wait_events(probe, lambda seen: True)
    assert len(select(events, "end", "stall")) == 1, events
    assert len(select(events, "start", "stall")) == 2, events
    assert status["state"] == "completed"
    assert status["attempts"] == 2


async def test_a_job_longer_than_the_stalled_interval_is_not_taken_over(
    cluster: Cluster, redis: Redis
) -> None:
    """stalled interval 1 s, a 3 s job, a second idle process: the heartbeat keeps it."""
    servers = await cluster.start(2, channels="long")
    probe = cluster.probe(redis)
    async with httpx.AsyncClient(base_url=servers[0].http_url, timeout=10) as http:
        response = await http.post("/channels/long/jobs", json={"id": "l1", "seconds": 3})
        assert response.status_code == 202, response.text
        job_id = response.json()["id"]
        await wait_events(probe, lambda seen: bool(select(seen, "end", "long")), within=8)
        await asyncio.sleep(1.2)  # longer than the interval: a late take-over would show
        status = await job_status(http, "long", job_id)
    events = await wait_events(probe, lambda seen: True)
    starts, ends = select(events, "start", "long"), select(events, "end", "long")
    assert len(starts) == 1, events
    assert len(ends) == 1, events
    assert starts[0].pid == ends[0].pid
    assert ends[0].t - starts[0].t >= 3.0
    assert status["state"] == "completed"
    assert status["attempts"] == 1
    assert all(server.process.returncode is None for server in servers)


async def test_a_job_stalling_more_than_max_count_fails_as_stalled(
    cluster: Cluster, redis: Redis
) -> None:
    """stalled: {interval: 1s, max_count: 0}: the first take-over fails the job instead."""
    servers = await cluster.start(2, channels="hang")
    probe = cluster.probe(redis)
    async with httpx.AsyncClient(base_url=servers[0].http_url, timeout=10) as http:
        response = await http.post("/channels/hang/jobs", json={"id": "h1", "seconds": 60})
        assert response.status_code == 202, response.text
        job_id = response.json()["id"]
    events = await wait_events(probe, lambda seen: bool(select(seen, "start", "hang")))
    victim = cluster.by_pid(select(events, "start", "hang")[0].pid)
    (survivor,) = (server for server in servers if server is not victim)
    await asyncio.sleep(0.3)
    killed_at = await cluster.kill(victim)

    async with httpx.AsyncClient(base_url=survivor.http_url, timeout=10) as http:
        status = await wait_state(http, "hang", job_id, "failed", within=1.0 + 3.0)
        failed_after = time.time() - killed_at
        failed = await failed_jobs(http, "hang")
    print(f"job failed as stalled {failed_after:.3f} s after SIGKILL (stalled interval 1 s)")
    assert job_id in failed
    assert failed[job_id]["error"]["type"] == "stalled"
    assert status["error"]["type"] == "stalled"
    assert status["attempts"] == 1
    events = await wait_events(probe, lambda seen: True)
    assert len(select(events, "start", "hang")) == 1, events
