"""A process paused (SIGSTOP) past its stalled interval loses its job to another process;
when both runs end, only the new owner's outcome counts.

Three `runtime serve` processes on the session's Redis: two run the workers of `pause`
(stalled interval 2 s, three attempts; /metrics on a port of their own), one serves the
HTTP API only, to enqueue and look jobs up. The process that starts the job is paused
0.3 s into it, the other takes it over, the paused one is resumed (SIGCONT) and its run
ends too. The job must end in exactly one state, recorded once.
"""

from __future__ import annotations

import asyncio
import signal
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from redis.asyncio import Redis
from redis.exceptions import ResponseError

from runtime.engine.keys import CONSUMER_GROUP, ChannelKeys
from tests.runtime.conftest import Probe, Server
from tests.runtime.delivery_conftest import (
    Event,
    failed_jobs,
    job_status,
    select,
    wait_events,
    wait_state,
)
from tests.runtime.test_reliability_support import (
    NOT_RECORDED,
    TAKEN_OVER,
    TRACEBACK,
    Fleet,
    lines_with,
    metric,
    reliability_project,
    running_fleet,
    wait_log,
)

pytestmark = [pytest.mark.slow, pytest.mark.timeout(90)]

CHANNEL = "pause"
INTERVAL_S = 2.0  # the channel's stalled interval
HEARTBEAT_S = INTERVAL_S / 3


@pytest.fixture(scope="session")
def rproject(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return reliability_project(tmp_path_factory)


@pytest.fixture
async def fleet(
    rproject: Path, redis_url: str, key_prefix: str, tmp_path: Path, redis: Redis
) -> AsyncIterator[Fleet]:
    """Stopped before `redis` removes the test's keys (it is set up first)."""
    async with running_fleet(rproject, redis_url, redis_url, key_prefix, tmp_path) as found:
        yield found


async def _workers_and_api(fleet: Fleet) -> tuple[list[Server], Server]:
    *workers, api = await asyncio.gather(
        fleet.start(api=False, workers=CHANNEL),
        fleet.start(api=False, workers=CHANNEL),
        fleet.start(api=True),
    )
    return workers, api


async def _pause_the_runner(
    fleet: Fleet, workers: list[Server], probe: Probe
) -> tuple[Server, Server, Event]:
    """SIGSTOP the worker that started the job 0.3 s in; returns it, the other one, and
    the other one's start of the job (it took the job over)."""
    events = await wait_events(probe, lambda seen: bool(select(seen, "start", CHANNEL)))
    first = select(events, "start", CHANNEL)[0]
    victim = fleet.by_pid(first.pid)
    (survivor,) = (server for server in workers if server is not victim)
    await asyncio.sleep(0.3)
    victim.process.send_signal(signal.SIGSTOP)
    events = await wait_events(
        probe, lambda seen: len(select(seen, "start", CHANNEL)) >= 2, within=INTERVAL_S + 10
    )
    second = select(events, "start", CHANNEL)[1]
    assert first.attempt == 1
    assert second.pid == survivor.pid, events
    assert second.attempt == 2, events
    return victim, survivor, second


async def _counts(http: httpx.AsyncClient) -> dict[str, Any]:
    response = await http.get(f"/channels/{CHANNEL}")
    assert response.status_code == 200, response.text
    counts: dict[str, Any] = response.json()
    return counts


async def _listed(http: httpx.AsyncClient, state: str) -> list[str]:
    response = await http.get(f"/channels/{CHANNEL}/jobs", params={"state": state})
    assert response.status_code == 200, response.text
    return [job["id"] for job in response.json()["jobs"]]


async def test_a_paused_process_loses_its_job_and_only_the_new_owner_records_it(
    fleet: Fleet, redis: Redis
) -> None:
    """The first run sleeps 8 s, a take-over 1 s: the new owner completes the job while the
    paused process is stopped; resumed, the paused one runs on for ~5 s (several
    heartbeats), then its run ends and its outcome is dropped."""
    workers, api = await _workers_and_api(fleet)
    probe = Probe(redis, fleet.probe_prefix, fleet.key_prefix)
    async with httpx.AsyncClient(base_url=api.http_url, timeout=10) as http:
        response = await http.post(
            f"/channels/{CHANNEL}/jobs", json={"id": "p1", "seconds": 8, "later": 1}
        )
        assert response.status_code == 202, response.text
        job_id = response.json()["id"]

        victim, survivor, _ = await _pause_the_runner(fleet, workers, probe)
        await wait_events(probe, lambda seen: bool(select(seen, "end", CHANNEL)), within=10)
        completed = await wait_state(http, CHANNEL, job_id, "completed", within=15)

        victim.process.send_signal(signal.SIGCONT)
        events = await wait_events(
            probe, lambda seen: len(select(seen, "end", CHANNEL)) == 2, within=15
        )
        await wait_log(victim, NOT_RECORDED, within=10)
        await asyncio.sleep(4 * HEARTBEAT_S)  # more heartbeats: a repeated report would show

        status = await job_status(http, CHANNEL, job_id)
        failed = await failed_jobs(http, CHANNEL)
        counts = await _counts(http)
        completed_ids = await _listed(http, "completed")
    events = await wait_events(probe, lambda seen: True)
    ends = select(events, "end", CHANNEL)
    print(f"runs: {[(e.kind, e.pid, e.attempt) for e in events]}")

    assert [e.pid for e in ends] == [survivor.pid, victim.pid], events
    assert len(select(events, "start", CHANNEL)) == 2, events
    assert status["state"] == "completed", status
    assert status["attempts"] == 2
    assert status["failures"] == 0
    assert status["error"] is None
    # The stale run recorded nothing: not a second completion, not a later finish time.
    assert status["finished_at"] == completed["finished_at"]
    assert job_id not in failed
    assert counts["failed"] == 0, counts
    assert counts["completed"] == 1, counts
    assert (counts["active"], counts["waiting"], counts["delayed"]) == (0, 0, 0), counts
    assert completed_ids == [job_id]
    recorded = [
        await metric(server, "channelkit_jobs_completed_total", CHANNEL) for server in workers
    ]
    assert sorted(recorded) == [0.0, 1.0], recorded
    assert await metric(survivor, "channelkit_jobs_completed_total", CHANNEL) == 1.0

    victim_log, survivor_log = victim.output(), survivor.output()
    assert len(lines_with(victim_log, TAKEN_OVER)) == 1, victim_log
    not_recorded = lines_with(victim_log, NOT_RECORDED)
    assert len(not_recorded) == 1, victim_log
    assert job_id in not_recorded[0]
    assert not lines_with(survivor_log, TAKEN_OVER), survivor_log
    assert not lines_with(survivor_log, NOT_RECORDED), survivor_log
    assert TRACEBACK not in fleet.output()
    assert all(server.process.returncode is None for server in fleet.servers)


async def test_a_stale_failure_schedules_no_retry_beside_the_new_owners_run(
    fleet: Fleet, redis: Redis
) -> None:
    """The first run sleeps 3 s and raises (a retryable error: three attempts); the
    take-over sleeps 5 s and succeeds. The paused process is resumed as soon as the job
    was taken over: its run raises while the new owner still runs the job. No retry may
    be scheduled, no failure counted, and the job runs exactly twice."""
    workers, api = await _workers_and_api(fleet)
    probe = Probe(redis, fleet.probe_prefix, fleet.key_prefix)
    async with httpx.AsyncClient(base_url=api.http_url, timeout=10) as http:
        response = await http.post(
            f"/channels/{CHANNEL}/jobs",
            json={"id": "p2", "seconds": 3, "later": 5, "fail_first": True},
        )
        assert response.status_code == 202, response.text
        job_id = response.json()["id"]

        victim, survivor, _ = await _pause_the_runner(fleet, workers, probe)
        victim.process.send_signal(signal.SIGCONT)
        await wait_events(probe, lambda seen: bool(select(seen, "raise", CHANNEL)), within=10)
        await wait_log(victim, NOT_RECORDED, within=10)

        # While the new owner runs the job: the stale failure changed nothing.
        during = await job_status(http, CHANNEL, job_id)
        delayed_during = await _listed(http, "delayed")
        events = await wait_events(probe, lambda seen: True)
        if select(events, "end", CHANNEL):
            pytest.fail(f"the new owner's 5 s run ended before the checks: {events}")

        await wait_events(probe, lambda seen: bool(select(seen, "end", CHANNEL)), within=10)
        status = await wait_state(http, CHANNEL, job_id, "completed", within=15)
        await asyncio.sleep(1.0)  # five backoffs: a scheduled retry would have started
        status = await job_status(http, CHANNEL, job_id)
        failed = await failed_jobs(http, CHANNEL)
        counts = await _counts(http)
    events = await wait_events(probe, lambda seen: True)
    print(f"runs: {[(e.kind, e.pid, e.attempt) for e in events]}")

    assert during["state"] == "active", during
    assert during["failures"] == 0, during
    assert during["error"] is None, during
    assert job_id not in delayed_during

    starts = select(events, "start", CHANNEL)
    assert [(e.pid, e.attempt) for e in starts] == [(victim.pid, 1), (survivor.pid, 2)], events
    assert [e.pid for e in select(events, "raise", CHANNEL)] == [victim.pid]
    assert [e.pid for e in select(events, "end", CHANNEL)] == [survivor.pid]
    assert status["state"] == "completed", status
    assert status["attempts"] == 2
    assert status["failures"] == 0
    assert status["error"] is None
    assert job_id not in failed
    assert (counts["failed"], counts["delayed"]) == (0, 0), counts
    assert counts["completed"] == 1, counts
    for server in workers:
        assert await metric(server, "channelkit_jobs_retried_total", CHANNEL) == 0.0
        assert await metric(server, "channelkit_jobs_failed_total", CHANNEL) == 0.0
    not_recorded = lines_with(victim.output(), NOT_RECORDED)
    assert len(not_recorded) == 1, victim.output()
    assert job_id in not_recorded[0]
    assert len(lines_with(victim.output(), TAKEN_OVER)) <= 1
    assert not lines_with(survivor.output(), NOT_RECORDED)
    assert all(server.process.returncode is None for server in fleet.servers)


async def _delivered_to(redis: Redis, fleet: Fleet, pid: int) -> int:
    """Entries of the channel pending for process `pid` (its consumer is named
    `<host>-<pid>-<random>`)."""
    stream = ChannelKeys(fleet.key_prefix, CHANNEL).stream
    try:
        consumers = await redis.xinfo_consumers(stream, CONSUMER_GROUP)
    except ResponseError:
        return 0
    return sum(int(c["pending"]) for c in consumers if f"-{pid}-" in c["name"].decode())


async def test_a_job_enqueued_while_the_waiting_worker_is_paused_is_taken_by_another(
    fleet: Fleet, redis: Redis
) -> None:
    """A worker is paused (SIGSTOP) while it waits on the channel's marker (BZPOPMIN): a
    job enqueued then may pop that marker into the frozen process, but the job itself is
    only taken by a running process (take.lua claims it in the taker's own call), so it
    never lands in the frozen one. A second worker takes it at once (no stalled interval
    to wait out) and completes it; when the paused worker resumes, the job's record stays
    as the new owner left it (completed, one attempt) and nothing is pending for it."""
    api = await fleet.start(api=True)
    paused = await fleet.start(api=False, workers=CHANNEL)
    probe = Probe(redis, fleet.probe_prefix, fleet.key_prefix)
    async with httpx.AsyncClient(base_url=api.http_url, timeout=10) as http:
        await asyncio.sleep(0.3)  # idle: blocked on the marker
        paused.process.send_signal(signal.SIGSTOP)
        response = await http.post(f"/channels/{CHANNEL}/jobs", json={"id": "d0", "seconds": 0.2})
        assert response.status_code == 202, f"enqueue refused: {response.text}"
        job_id = response.json()["id"]
        await asyncio.sleep(0.5)
        assert await _delivered_to(redis, fleet, paused.pid) == 0
        assert (await job_status(http, CHANNEL, job_id))["state"] == "waiting"

        owner = await fleet.start(api=False, workers=CHANNEL)
        completed = await wait_state(http, CHANNEL, job_id, "completed", within=10)
        events = await wait_events(probe, lambda seen: bool(select(seen, "end", CHANNEL)))
        assert [e.pid for e in select(events, "end", CHANNEL)] == [owner.pid]
        assert completed["attempts"] == 1  # taken once, not taken over
        paused.process.send_signal(signal.SIGCONT)
        await asyncio.sleep(3 * HEARTBEAT_S)  # it reads the marker, and whatever follows
        status = await job_status(http, CHANNEL, job_id)
        counts = await _counts(http)
    if paused.process.returncode is not None:
        pytest.fail(f"the paused worker exited: {paused.output()}")

    assert status["state"] == "completed", status
    assert status["attempts"] == 1, status
    assert status["finished_at"] == completed["finished_at"]
    assert await _delivered_to(redis, fleet, paused.pid) == 0
    assert (counts["active"], counts["failed"]) == (0, 0), counts
