"""`runtime serve` while its Redis freezes, dies, restarts empty or runs out of memory.

Each test starts a redis-server of its own (test_reliability_support.PrivateRedis: a free
loopback port, stopped by pid) and `runtime serve` processes of the reliability project
against it; the handlers record their runs in the session's Redis, which none of this
touches. Nothing here is timed: outages last longer than the runtime's bounds (5 s Redis
socket timeouts, 1 s retries), and each check polls with a generous deadline.
"""

from __future__ import annotations

import asyncio
import json
import signal
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from pydantic import BaseModel
from redis.asyncio import Redis

from runtime.engine.client import encode_job
from runtime.engine.keys import CONSUMER_GROUP, ChannelKeys
from runtime.engine.scripts import ChannelScripts, NewJob, ScriptSet
from tests.runtime.conftest import PROJECT as PROBE_PROJECT
from tests.runtime.conftest import Probe, Server, clean_env, text
from tests.runtime.delivery_conftest import select, wait_events
from tests.runtime.test_reliability_support import (
    RAPP,
    TRACEBACK,
    Fleet,
    PrivateRedis,
    lines_with,
    private_redis,
    reliability_project,
    running_fleet,
    wait_until,
)

pytestmark = [pytest.mark.slow, pytest.mark.timeout(120)]

NOGROUP = "the consumer group is gone"
OUTAGE_LOGGED = "answering 503 while Redis is unavailable"


@pytest.fixture(scope="session")
def rproject(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return reliability_project(tmp_path_factory)


@pytest.fixture
def private(tmp_path: Path) -> Iterator[PrivateRedis]:
    """A Redis of this test's own, nothing persisted: a restart starts it empty."""
    with private_redis(tmp_path / "redis") as server:
        yield server


@pytest.fixture
def persistent(tmp_path: Path) -> Iterator[PrivateRedis]:
    """A Redis of this test's own with an append-only file fsynced on every write."""
    with private_redis(tmp_path / "redis", persist=True) as server:
        yield server


def _fleet(
    rproject: Path, server: PrivateRedis, redis_url: str, key_prefix: str, tmp_path: Path
) -> Any:
    return running_fleet(rproject, server.url, redis_url, key_prefix, tmp_path)


@pytest.fixture
async def fleet(
    rproject: Path,
    private: PrivateRedis,
    redis_url: str,
    key_prefix: str,
    tmp_path: Path,
    redis: Redis,
) -> AsyncIterator[Fleet]:
    """Processes on the private Redis; stopped before it (and before `redis` cleans up)."""
    async with _fleet(rproject, private, redis_url, key_prefix, tmp_path) as found:
        yield found


@pytest.fixture
async def admin(private: PrivateRedis) -> AsyncIterator[Redis]:
    client = Redis.from_url(private.url, socket_timeout=5)
    try:
        yield client
    finally:
        await client.aclose()


def _probe(fleet: Fleet, redis: Redis) -> Probe:
    return Probe(redis, fleet.probe_prefix, fleet.key_prefix)


async def _job(admin: Redis, key_prefix: str, channel: str, job_id: str) -> dict[str, str]:
    raw = await admin.hgetall(ChannelKeys(key_prefix, channel).job(job_id))
    return {text(k): text(v) for k, v in raw.items()}


async def _ready(server: Server) -> tuple[int, str]:
    async with httpx.AsyncClient(base_url=server.http_url, timeout=10) as http:
        response = await http.get("/health/ready")
    return response.status_code, response.json().get("reason", "")


@dataclass
class Answer:
    key: str
    phase: str
    status: int  # 0: no HTTP answer at all
    retry_after: str | None
    detail: str


async def _enqueue(http: httpx.AsyncClient, channel: str, key: str, phase: str) -> Answer:
    try:
        response = await http.post(
            f"/channels/{channel}/jobs",
            json={"id": key, "seconds": 0},
            headers={"Idempotency-Key": key},
        )
    except httpx.TransportError as error:
        return Answer(key, phase, 0, None, repr(error))
    detail = response.json().get("detail", "") if response.status_code != 202 else ""
    return Answer(key, phase, response.status_code, response.headers.get("retry-after"), detail)


async def test_enqueue_while_redis_freezes_and_dies_answers_202_or_503_and_loses_nothing(
    rproject: Path,
    persistent: PrivateRedis,
    redis_url: str,
    key_prefix: str,
    tmp_path: Path,
    redis: Redis,
) -> None:
    """Four clients enqueue without pause over HTTP while Redis is frozen for 7 s (SIGSTOP,
    longer than the 5 s socket timeout), then SIGKILLed and restarted on the same port
    (its append-only file is fsynced on every write: a 202 is on disk). Every answer is
    202 or 503; every 503 says why and carries Retry-After; the outage is logged, not a
    traceback per request; every job answered 202 completes."""
    async with _fleet(rproject, persistent, redis_url, key_prefix, tmp_path) as fleet:
        serve = await fleet.start(api=True, workers="steady")
        answers: list[Answer] = []
        phase = "before"
        stop = asyncio.Event()

        async def client(worker: int) -> None:
            async with httpx.AsyncClient(base_url=serve.http_url, timeout=30) as http:
                n = 0
                while not stop.is_set():
                    n += 1
                    answers.append(await _enqueue(http, "steady", f"c{worker}-{n}", phase))
                    await asyncio.sleep(0.02)

        mark = 0

        async def accepted_since_mark() -> bool:
            return any(a.status == 202 for a in answers[mark:])

        clients = [asyncio.create_task(client(worker)) for worker in range(4)]
        try:
            await asyncio.sleep(1.0)
            phase = "frozen"
            persistent.freeze()
            await asyncio.sleep(7.0)
            persistent.thaw()
            phase = "thawed"
            mark = len(answers)
            await wait_until(accepted_since_mark, "a 202 after the thaw", 20)
            await asyncio.sleep(0.5)
            phase = "down"
            persistent.stop(signal.SIGKILL)
            await asyncio.sleep(2.0)
            persistent.start()
            phase = "restarted"
            mark = len(answers)
            await wait_until(accepted_since_mark, "a 202 after the restart", 20)
            await asyncio.sleep(0.5)
        finally:
            stop.set()
            await asyncio.gather(*clients)

        by_phase: dict[str, dict[int, int]] = {}
        for answer in answers:
            seen = by_phase.setdefault(answer.phase, {})
            seen[answer.status] = seen.get(answer.status, 0) + 1
        print(f"\nanswers by phase (status: count): {by_phase}")
        unavailable = [a for a in answers if a.status == 503]
        print(f"503 details: {sorted({a.detail for a in unavailable})[:6]}")

        assert {a.status for a in answers} <= {202, 503}, [
            a for a in answers if a.status not in (202, 503)
        ][:5]
        # A request in flight when Redis froze answers 503 after the 5 s socket timeout
        # (it is counted in the phase it started in); one sent later may outlast the freeze.
        assert by_phase["before"].get(503) or by_phase["frozen"].get(503), by_phase
        assert by_phase["down"].get(503), by_phase
        for answer in unavailable:
            assert answer.retry_after == "1", answer
            assert "was not enqueued" in answer.detail, answer
            reason = answer.detail.split("was not enqueued", 1)[1]
            assert len(reason.strip(" :")) > 10, answer

        accepted = [a.key for a in answers if a.status == 202]
        probe = _probe(fleet, redis)
        admin = Redis.from_url(persistent.url, socket_timeout=5)
        try:

            async def all_completed() -> bool:
                states = [
                    (await _job(admin, key_prefix, "steady", key)).get("state") for key in accepted
                ]
                return all(state == "completed" for state in states)

            await wait_until(all_completed, "every job answered 202 completed", 30, 0.2)
            states = {key: await _job(admin, key_prefix, "steady", key) for key in accepted}
        finally:
            await admin.aclose()
        events = await wait_events(probe, lambda seen: True)
        ended = {e.id for e in select(events, "end", "steady")}
        output = serve.output()

    print(f"{len(accepted)} job(s) accepted, all completed; {len(unavailable)} answered 503")
    assert all(state["state"] == "completed" for state in states.values())
    assert set(accepted) <= ended, sorted(set(accepted) - ended)[:10]
    assert serve.process.returncode is not None  # stopped by the fleet, not before
    assert TRACEBACK not in output, output[-6000:]
    assert 1 <= len(lines_with(output, OUTAGE_LOGGED)) <= 2, lines_with(output, OUTAGE_LOGGED)
    assert len(unavailable) > len(lines_with(output, OUTAGE_LOGGED))


async def test_a_redis_restarted_empty_gets_its_consumer_group_back(
    fleet: Fleet, private: PrivateRedis, admin: Redis, redis: Redis
) -> None:
    """Redis restarts with nothing (no persistence) under a running serve: the worker
    recreates its consumer group once (no endless NOGROUP), a job enqueued afterwards
    completes, and /health/ready is 200 again."""
    serve = await fleet.start(api=True, workers="steady")
    probe = _probe(fleet, redis)
    async with httpx.AsyncClient(base_url=serve.http_url, timeout=10) as http:
        before = (await http.post("/channels/steady/jobs", json={"id": "r1", "seconds": 0})).json()
        await wait_events(probe, lambda seen: bool(select(seen, "end", "steady", "r1")))

        private.stop(signal.SIGTERM)
        code, reason = await wait_until(
            lambda: _status_if(serve, 503), "readiness 503 while Redis is down", 15
        )
        print(f"while Redis is down: /health/ready {code} {reason!r}")
        assert "Redis unreachable" in reason
        private.start()

        seen: set[tuple[int, str]] = set()

        async def enqueued() -> str | None:
            seen.add(await _ready(serve))
            response = await http.post("/channels/steady/jobs", json={"id": "r2", "seconds": 0})
            return str(response.json()["id"]) if response.status_code == 202 else None

        after = await wait_until(enqueued, "an enqueue accepted after the restart", 20)
        await wait_events(probe, lambda seen: bool(select(seen, "end", "steady", "r2")), 20)
        await wait_until(lambda: _job_state(http, after, "completed"), "r2 completed", 15)
        await wait_until(lambda: _status_if(serve, 200), "ready again", 15)
        recreated = len(lines_with(serve.output(), NOGROUP))
        await asyncio.sleep(2.0)  # two reader retries: an endless NOGROUP would show
        assert (await _ready(serve))[0] == 200

    print(f"readiness seen after the restart: {sorted(seen)}")
    output = serve.output()
    assert not await admin.exists(_steady(fleet).job(before["id"])), "Redis was not empty"
    assert 1 <= recreated <= 2, lines_with(output, NOGROUP)
    assert len(lines_with(output, NOGROUP)) == recreated, "NOGROUP again and again"
    assert TRACEBACK not in output, output[-6000:]


def _steady(fleet: Fleet) -> ChannelKeys:
    return ChannelKeys(fleet.key_prefix, "steady")


async def _status_if(server: Server, wanted: int) -> tuple[int, str] | None:
    code, reason = await _ready(server)
    return (code, reason) if code == wanted else None


async def _job_state(http: httpx.AsyncClient, job_id: str, state: str) -> bool:
    response = await http.get(f"/channels/steady/jobs/{job_id}")
    return response.status_code == 200 and response.json()["state"] == state


async def _wait_ended(probe: Probe, channel: str, ids: list[str], within: float = 20.0) -> None:
    await wait_events(
        probe,
        lambda seen: set(ids) <= {e.id for e in select(seen, "end", channel)},
        within=within,
    )


async def test_a_full_redis_refuses_enqueues_and_the_worker_strands_nothing(
    fleet: Fleet, private: PrivateRedis, admin: Redis, redis: Redis, key_prefix: str
) -> None:
    """Channel `strict` (stalled interval 1 s, max_count 0: any take-over fails the job as
    `stalled`). Four jobs fill its slots, two more wait in the stream; then Redis is full
    (maxmemory just above what it uses, noeviction). Enqueue is 503 naming memory,
    readiness 503 naming memory; the waiting jobs, read while Redis refuses their start,
    are held (several stalled intervals pass) and none fails as stalled; once memory is
    freed every job runs and completes with attempts 1."""
    serve = await fleet.start(api=True, workers="strict")
    probe = _probe(fleet, redis)
    busy = [f"busy-{n}" for n in range(4)]
    waiting = [f"wait-{n}" for n in range(2)]
    async with httpx.AsyncClient(base_url=serve.http_url, timeout=10) as http:
        for job in busy:
            response = await http.post(
                "/channels/strict/jobs",
                json={"id": job, "seconds": 2.5},
                headers={"Idempotency-Key": job},
            )
            assert response.status_code == 202, response.text
        await wait_events(probe, lambda seen: len(select(seen, "start", "strict")) == 4)
        for job in waiting:
            response = await http.post(
                "/channels/strict/jobs",
                json={"id": job, "seconds": 0.2},
                headers={"Idempotency-Key": job},
            )
            assert response.status_code == 202, response.text

        limit = private.fill()
        refused = await http.post("/channels/strict/jobs", json={"id": "x", "seconds": 0})
        code, reason = await wait_until(
            lambda: _status_if(serve, 503), "readiness 503 while Redis is full", 10
        )
        print(f"\nfull at maxmemory {limit}: enqueue {refused.status_code} {refused.text}")
        print(f"readiness: {code} {reason}")
        assert refused.status_code == 503, refused.text
        assert "memory" in refused.json()["detail"].lower()
        assert refused.headers["retry-after"] == "1"
        assert "out of memory" in reason

        await _wait_ended(probe, "strict", busy, within=15)
        await asyncio.sleep(3.5)  # several stalled intervals while the waiting jobs are held
        held = {job: await _job(admin, key_prefix, "strict", job) for job in waiting}
        claims = await admin.xpending_range(
            _keys(key_prefix).stream, CONSUMER_GROUP, min="-", max="+", count=100
        )
        failed_while_full = _names(await admin.zrange(_keys(key_prefix).failed, 0, -1))
        started = {
            e.id for e in select(await wait_events(probe, lambda s: True), "start", "strict")
        }

        private.free()
        await _wait_ended(probe, "strict", waiting, within=20)
        await wait_until(lambda: _status_if(serve, 200), "ready once memory is freed", 15)
        response = await http.post("/channels/strict/jobs", json={"id": "after", "seconds": 0})
        assert response.status_code == 202, response.text
        after = str(response.json()["id"])
        await wait_until(lambda: _job_completed(http, "strict", after), "a new job completed", 15)
        for job in busy + waiting:
            await wait_until(
                lambda job=job: _job_completed(http, "strict", job), f"{job} completed", 15
            )
        final = {job: await _job(admin, key_prefix, "strict", job) for job in busy + waiting}
        failed = _names(await admin.zrange(_keys(key_prefix).failed, 0, -1))
    events = await wait_events(probe, lambda seen: True)
    output = serve.output()

    print(f"while full: waiting jobs {held}; failed set {failed_while_full}")
    assert not failed_while_full, failed_while_full
    assert not started & set(waiting), "a waiting job started while Redis refused writes"
    # Read from the stream (Redis serves reads when full), refused a start, and kept:
    # claimed by the serve, heartbeated (idle less than the 1 s stalled interval).
    assert 1 <= len(claims) <= len(waiting), claims  # read as slots freed, then held
    assert all(int(claim["times_delivered"]) == 1 for claim in claims), claims
    assert all(int(claim["time_since_delivered"]) < 1000 for claim in claims), claims
    for job in waiting:
        assert held[job].get("state") == "waiting", held
        assert held[job].get("attempts", "0") == "0", held
    assert not failed, failed
    for job, state in final.items():
        assert state["state"] == "completed", (job, state)
        assert state["attempts"] == "1", (job, state)
        assert "stalled" not in state.get("errors", ""), (job, state)
    for job in busy + waiting:
        assert len(select(events, "start", "strict", job)) == 1, events
    assert "stalled more than" not in output
    assert serve.process.returncode is None


def _names(members: Any) -> list[str]:
    return [text(member) for member in members]


def _keys(key_prefix: str) -> ChannelKeys:
    return ChannelKeys(key_prefix, "strict")


async def _job_completed(http: httpx.AsyncClient, channel: str, job_id: str) -> bool:
    response = await http.get(f"/channels/{channel}/jobs/{job_id}")
    return response.status_code == 200 and response.json()["state"] == "completed"


class _Sleep(BaseModel):
    id: str
    seconds: float


async def test_a_serve_started_while_redis_is_full_waits_and_then_works(
    fleet: Fleet, private: PrivateRedis, admin: Redis, redis: Redis, key_prefix: str
) -> None:
    """Three jobs are in the stream (no consumer group yet: no worker ever ran) and Redis
    is full before `runtime serve` starts. It does not crash: it stays up, its readiness
    says Redis is out of memory; once memory is freed it creates the group and runs them."""
    scripts = ChannelScripts(ScriptSet(admin), ChannelKeys(key_prefix, "steady"))
    early = [f"early-{n}" for n in range(3)]
    await scripts.enqueue(
        [NewJob(job, encode_job("steady", _Sleep(id=job, seconds=0), job)) for job in early],
        int(time.time() * 1000),
    )
    private.fill()

    serve = await fleet.start(api=True, workers="steady", wait=False)
    code, reason = await wait_until(lambda: _status_if(serve, 503), "readiness answering 503", 30)
    print(f"\nstarted while full: /health/ready {code} {reason!r}")
    assert "out of memory" in reason
    await asyncio.sleep(3.0)  # the worker retries meanwhile; it must not give up
    assert serve.process.returncode is None, serve.output()
    assert (await _ready(serve))[0] == 503
    probe = _probe(fleet, redis)
    assert not select(await wait_events(probe, lambda seen: True), "start", "steady")

    private.free()
    await wait_until(lambda: _status_if(serve, 200), "ready once memory is freed", 20)
    await _wait_ended(probe, "steady", early, within=20)
    async with httpx.AsyncClient(base_url=serve.http_url, timeout=10) as http:
        for job in early:
            await wait_until(lambda job=job: _job_completed(http, "steady", job), job, 15)
        response = await http.post("/channels/steady/jobs", json={"id": "late", "seconds": 0})
        assert response.status_code == 202, response.text
        late = str(response.json()["id"])
        await wait_until(lambda: _job_completed(http, "steady", late), "a new job", 15)
    states = [await _job(admin, key_prefix, "steady", job) for job in early]
    assert [state["attempts"] for state in states] == ["1", "1", "1"], states
    assert serve.process.returncode is None
    assert TRACEBACK not in serve.output(), serve.output()[-6000:]


def _grpc_enqueue(project: Path, server: Server, job: str) -> dict[str, Any]:
    """One EnqueueSteady call through the generated stubs, in a process of its own
    (tests/runtime/project/probe/grpc_call.py)."""
    call = {"method": "EnqueueSteady", "request": {"payload": {"id": job, "seconds": 0}}}
    result = subprocess.run(
        [sys.executable, "-m", "probe.grpc_call", RAPP, server.grpc_target, json.dumps([call])],
        cwd=project,
        env=clean_env() | {"PYTHONPATH": str(PROBE_PROJECT)},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, f"gRPC client failed:\n{result.stderr}"
    (answer,) = json.loads(result.stdout)
    found: dict[str, Any] = answer
    return found


async def test_grpc_enqueue_is_unavailable_with_the_reason_while_redis_is_down(
    rproject: Path, fleet: Fleet, private: PrivateRedis
) -> None:
    """EnqueueSteady over gRPC: UNAVAILABLE with the reason while Redis is stopped and
    while it is frozen (after the 5 s socket timeout), OK again once it is back."""
    serve = await fleet.start(api=True, grpc=True, workers="steady")
    ok = await asyncio.to_thread(_grpc_enqueue, rproject, serve, "g1")
    assert ok["code"] == "OK", ok

    private.stop(signal.SIGTERM)
    down = await asyncio.to_thread(_grpc_enqueue, rproject, serve, "g2")
    private.start()
    private.freeze()
    try:
        frozen = await asyncio.to_thread(_grpc_enqueue, rproject, serve, "g3")
    finally:
        private.thaw()

    async def accepted() -> dict[str, Any] | None:
        answer = await asyncio.to_thread(_grpc_enqueue, rproject, serve, "g4")
        return answer if answer["code"] == "OK" else None

    await wait_until(accepted, "a gRPC enqueue accepted once Redis is back", 20)
    print(f"\nstopped: {down}\nfrozen: {frozen}")
    for answer in (down, frozen):
        assert answer["code"] == "UNAVAILABLE", answer
        assert "was not enqueued" in answer["details"], answer
        assert len(answer["details"].split("was not enqueued", 1)[1].strip(" :")) > 10
    assert TRACEBACK not in serve.output(), serve.output()[-6000:]
