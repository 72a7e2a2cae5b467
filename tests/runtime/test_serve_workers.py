"""`runtime serve`'s workers as processes: per-channel concurrency, several processes on
one Redis, and the switches that choose what a process consumes."""

from __future__ import annotations

import asyncio
import re
import time
from collections import Counter
from pathlib import Path

import httpx
import pytest

from runtime.engine.client import Client
from tests.runtime.conftest import APP, Probe, ServeFactory, events_of, import_from_project

pytestmark = pytest.mark.timeout(60)

# Long enough for a job to be consumed if anything were consuming it.
QUIET_SECONDS = 1.5


async def _producer_enqueue(
    project: Path, redis_url: str, key_prefix: str, channel: str, payloads: list[dict[str, object]]
) -> None:
    producer = import_from_project(project, f"{APP}.channels.{channel}")
    models = import_from_project(project, f"{APP}.models.{channel}")
    model = getattr(models, f"{channel.capitalize()}Payload")
    async with Client.from_url(redis_url, prefix=key_prefix) as client:
        await producer.enqueue_many(client, [model(**payload) for payload in payloads])


@pytest.mark.slow
async def test_concurrency_bounds_a_channel_without_starving_the_others(
    serve: ServeFactory, probe: Probe
) -> None:
    server = await serve()
    slow_ids = [f"s{n}" for n in range(12)]
    slow = [{"id": job, "seconds": 0.5} for job in slow_ids]
    async with httpx.AsyncClient(base_url=server.http_url, timeout=10) as http:
        response = await http.post("/channels/slow/jobs/batch", json=slow)
        assert response.status_code == 202, response.text
        await probe.wait_for(lambda seen: bool(events_of(seen, "start")))
        fast_sent = time.monotonic()
        for n in range(5):
            response = await http.post("/channels/fast/jobs", json={"id": f"f{n}"})
            assert response.status_code == 202, response.text
    await probe.wait_for(lambda seen: len(events_of(seen, "fast")) == 5, within=5)
    fast_seconds = time.monotonic() - fast_sent

    events = await probe.wait_for(lambda seen: len(events_of(seen, "end")) == 12, within=20)
    assert await probe.max_running() == 3
    # Replay the events: never more than 3 slow jobs between their start and end.
    running = peak = 0
    for event in events:
        running += {"start": 1, "end": -1}.get(event.split(":")[0], 0)
        peak = max(peak, running)
    assert peak == 3
    # The fast jobs ran while the slow backlog (2 s at 3 at a time) was still going.
    last_fast = max(i for i, event in enumerate(events) if event.startswith("fast:"))
    last_end = max(i for i, event in enumerate(events) if event.startswith("end:"))
    assert last_fast < last_end, events
    print(f"fast jobs ran {fast_seconds:.2f} s after they were sent, behind the slow ones")
    assert sorted(job for job, _ in events_of(events, "end")) == sorted(slow_ids)


@pytest.mark.slow
async def test_two_processes_split_one_channel(
    serve: ServeFactory, probe: Probe, probe_project: Path, redis_url: str, key_prefix: str
) -> None:
    first, second = await asyncio.gather(serve(), serve())
    jobs = [{"id": f"j{n}", "seconds": 0.3} for n in range(12)]
    await _producer_enqueue(probe_project, redis_url, key_prefix, "slow", jobs)

    events = await probe.wait_for(lambda seen: len(events_of(seen, "end")) == 12, within=20)
    starts = events_of(events, "start")
    assert Counter(job for job, _ in starts) == Counter(job["id"] for job in jobs)
    assert Counter(job for job, _ in events_of(events, "end")) == Counter(j["id"] for j in jobs)
    assert {pid for _, pid in starts} == {first.pid, second.pid}
    assert await probe.max_running() <= 6
    await _until_acknowledged(probe, "slow")


async def test_worker_channels_limits_what_a_process_consumes(
    serve: ServeFactory, probe: Probe
) -> None:
    server = await serve({"WORKER_CHANNELS": "fast"})
    async with httpx.AsyncClient(base_url=server.http_url, timeout=10) as http:
        response = await http.post("/channels/slow/jobs", json={"id": "s", "seconds": 0.0})
        assert response.status_code == 202, response.text
        response = await http.post("/channels/other/jobs", json={"id": "o"})
        assert response.status_code == 202, response.text
        response = await http.post("/channels/fast/jobs", json={"id": "f"})
        assert response.status_code == 202, response.text

    await probe.wait_for(lambda seen: bool(events_of(seen, "fast")))
    await asyncio.sleep(QUIET_SECONDS)
    events = await probe.events()
    assert events_of(events, "fast") == [("f", server.pid)]
    assert not events_of(events, "start")
    assert not events_of(events, "other")
    assert await probe.queued("slow") == 1
    assert await probe.queued("other") == 1
    assert re.search(r"ready: .* workers=fast$", server.output(), re.MULTILINE)


async def test_workers_disabled_accepts_but_consumes_nothing(
    serve: ServeFactory, probe: Probe
) -> None:
    server = await serve({"ENABLE_WORKERS": "false"})
    async with httpx.AsyncClient(base_url=server.http_url, timeout=10) as http:
        response = await http.post("/channels/fast/jobs", json={"id": "f"})
        assert response.status_code == 202, response.text
        response = await http.post("/channels/slow/jobs", json={"id": "s", "seconds": 0.0})
        assert response.status_code == 202, response.text
    await asyncio.sleep(QUIET_SECONDS)
    assert await probe.events() == []
    assert await probe.queued("fast") == 1
    assert await probe.queued("slow") == 1


async def test_workers_only_process_opens_no_port_and_consumes(
    serve: ServeFactory, probe: Probe, probe_project: Path, redis_url: str, key_prefix: str
) -> None:
    server = await serve({"ENABLE_API": "false", "ENABLE_GRPC": "false"})
    assert re.search(
        r"ready: http=off grpc=off workers=fast,other,provider,slow$", server.output(), re.M
    )
    async with httpx.AsyncClient(timeout=2) as http:
        with pytest.raises(httpx.ConnectError):
            await http.get(f"{server.http_url}/health/live")
    with pytest.raises(ConnectionRefusedError):
        await asyncio.open_connection("127.0.0.1", server.grpc_port)

    await _producer_enqueue(probe_project, redis_url, key_prefix, "fast", [{"id": "p"}])
    events = await probe.wait_for(lambda seen: bool(events_of(seen, "fast")))
    assert events_of(events, "fast") == [("p", server.pid)]


async def _until_acknowledged(probe: Probe, channel: str, within: float = 5.0) -> None:
    """The handler's last event comes just before the ack: wait for the ack, briefly."""
    deadline = time.monotonic() + within
    while (await probe.pending(channel), await probe.queued(channel)) != (0, 0):
        if time.monotonic() > deadline:
            pending = await probe.pending(channel)
            length = await probe.queued(channel)
            pytest.fail(f"{channel}: {pending} pending, {length} in the stream after {within} s")
        await asyncio.sleep(0.02)
