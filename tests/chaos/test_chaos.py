"""Chaos: jobs keep flowing while `runtime serve` processes are SIGKILLed and Redis restarts.

A Redis of the test's own (embedded, AOF on, a free TCP port, a temp folder: it is
restarted, so never the machine's), the chaos project (tests/chaos/project: four channels
shaped like the notification service's, a handler that records every run), and three
`runtime serve` processes. CHAOS_JOBS jobs are enqueued over CHAOS_SECONDS while a random
process is SIGKILLed every few seconds and restarted, and Redis itself is stopped and
started again (same port, same folder) once, halfway.

At the end every job must be completed, with at least one recorded run: none lost. Jobs
that ran more than once are counted and bounded:

    extra runs  =  sum over jobs of (successful runs - 1)
                <= sum over kills of the victim's pending entries (XINFO CONSUMERS, read
                   right after it died: delivered to it and not acknowledged, running,
                   finished but not yet recorded, or held by the rate limiter)
                 + every pending entry of every channel when Redis stopped (read under
                   CLIENT PAUSE WRITE, so nothing moves meanwhile: after the outage their
                   idle time exceeds the stalled interval and any process may take one over
                   before its owner's heartbeat refreshes it).

A job runs again only when the process it was delivered to lost it before acknowledging
it, so nothing else may run twice. A job taken over and killed again is counted at each
kill, which only loosens the bound.

Short by default (part of `make test`); `make chaos` runs the long version:
CHAOS_JOBS=10000 CHAOS_SECONDS=60.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import os
import random
import signal
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest
from pydantic import BaseModel
from redis.asyncio import Redis
from redis.exceptions import RedisError

from runtime.engine.client import encode_job
from runtime.engine.keys import CONSUMER_GROUP, ChannelKeys
from runtime.engine.scripts import ChannelScripts, NewJob, ScriptSet
from runtime.serve.embedded_redis import EmbeddedRedis
from tests.runtime.conftest import (
    Server,
    _wait_ready,
    clean_env,
    free_port,
    generate_project,
    spawn_serve,
    text,
)

PROJECT = Path(__file__).resolve().parent / "project"
APP = "chaos_generated"
CHANNELS = ("email", "sms", "push", "whatsapp")
KEY_PREFIX = "chaos"
PROBE = "chaos:probe"  # where the handlers record (chaosprobe/handlers.py)
PROCESSES = 3

JOBS = int(os.environ.get("CHAOS_JOBS", "600"))
SECONDS = float(os.environ.get("CHAOS_SECONDS", "12"))
KILL_EVERY = (1.5, 3.5)  # seconds between kills, drawn uniformly
OUTAGE_SECONDS = 3.0  # Redis is down this long: more than every stalled interval (1-2 s)
RECOVERY_TIMEOUT = 30.0  # after Redis is back, every process must be ready and jobs flow
DRAIN_TIMEOUT = 60.0 + JOBS / 100  # after the last enqueue, every job must be completed
TICK = 0.1  # enqueue pacing

pytestmark = pytest.mark.timeout(int(SECONDS + DRAIN_TIMEOUT + 120))


class _Job(BaseModel):
    id: str
    n: int


@dataclass
class Kill:
    pid: int
    at: float
    pending: int  # the victim's unacknowledged deliveries, all channels
    running: int  # jobs its handler had entered and not left (the probe's view)


@dataclass
class Outage:
    at: float
    pending: int
    recovered_in: float = 0.0


@dataclass
class Chaos:
    """The Redis, the processes (every incarnation, for the teardown), what was done."""

    folder: Path
    project: Path
    port: int
    redis: EmbeddedRedis
    slots: list[Server | None] = field(default_factory=lambda: [None] * PROCESSES)
    started: list[Server] = field(default_factory=list)
    kills: list[Kill] = field(default_factory=list)
    outages: list[Outage] = field(default_factory=list)

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    async def start(self, slot: int) -> Server:
        http_port, grpc_port = free_port(), free_port()
        environ = clean_env() | {
            "CHANNELKIT_APP": APP,
            "REDIS_URL": self.url,
            "CHANNELKIT_KEY_PREFIX": KEY_PREFIX,
            "HTTP_PORT": str(http_port),
            "GRPC_PORT": str(grpc_port),
            "SHUTDOWN_TIMEOUT": "5",
            "LOG_LEVEL": "INFO",
            "CHAOS_REDIS_URL": self.url,
            "CHAOS_PREFIX": PROBE,
        }
        log = self.folder / f"serve-{slot}-{len(self.started)}.log"
        process = await spawn_serve(self.project, environ, log)
        server = Server(process, log, http_port, grpc_port)
        self.started.append(server)
        self.slots[slot] = server
        await _wait_ready(server, api=True)
        return server

    def live(self) -> list[Server]:
        return [server for server in self.slots if server is not None]

    def restart_redis(self, outage: float) -> None:
        """Stop Redis (SIGTERM: the AOF is flushed), wait, start it on the same port and
        folder. Blocking on purpose: the child must be forked by this (the main) thread,
        as EmbeddedRedis makes it die with the thread that started it."""
        self.redis.stop()
        time.sleep(outage)
        self.redis = EmbeddedRedis(self.folder / "redis", persist=True, port=self.port).start()

    async def close(self) -> None:
        for server in self.started:
            await server.stop(within=10.0)
        self.redis.stop()


def _generate(folder: Path) -> Path:
    return generate_project(PROJECT, folder / "project", APP)


@pytest.fixture
async def chaos(tmp_path: Path) -> AsyncIterator[Chaos]:
    project = _generate(tmp_path)
    port = free_port()
    redis = EmbeddedRedis(tmp_path / "redis", persist=True, port=port).start()
    state = Chaos(tmp_path, project, port, redis)
    try:
        yield state
    finally:
        await state.close()


def _job_id(channel: str, n: int) -> str:
    return f"{channel}-{n:06d}"


async def _enqueue_paced(admin: Redis, jobs: int, seconds: float) -> dict[str, list[str]]:
    """Enqueue `jobs` jobs round robin over the channels, evenly over `seconds`. A batch
    that fails (Redis is down) is sent again: enqueue is idempotent by job id."""
    script_set = ScriptSet(admin)
    scripts = {
        channel: ChannelScripts(script_set, ChannelKeys(KEY_PREFIX, channel))
        for channel in CHANNELS
    }
    ids: dict[str, list[str]] = {channel: [] for channel in CHANNELS}
    per_tick = max(1, math.ceil(jobs / max(1.0, seconds / TICK)))
    began = time.monotonic()
    n = 0
    tick = 0
    while n < jobs:
        batch: dict[str, list[NewJob]] = {channel: [] for channel in CHANNELS}
        for _ in range(min(per_tick, jobs - n)):
            channel = CHANNELS[n % len(CHANNELS)]
            job_id = _job_id(channel, n)
            batch[channel].append(NewJob(job_id, encode_job(channel, _Job(id=job_id, n=n), job_id)))
            ids[channel].append(job_id)
            n += 1
        for channel, entries in batch.items():
            while entries:
                try:
                    await scripts[channel].enqueue(entries, int(time.time() * 1000))
                    break
                except (RedisError, OSError):
                    await asyncio.sleep(0.2)
        tick += 1
        await asyncio.sleep(max(0.0, began + tick * TICK - time.monotonic()))
    return ids


async def _victim_pending(admin: Redis, pid: int) -> int:
    """Entries delivered to the consumers of process `pid` and not acknowledged."""
    total = 0
    for channel in CHANNELS:
        consumers = await admin.xinfo_consumers(
            ChannelKeys(KEY_PREFIX, channel).stream, CONSUMER_GROUP
        )
        for consumer in consumers:
            if f"-{pid}-" in text(consumer["name"]):
                total += int(consumer["pending"])
    return total


async def _completed(admin: Redis) -> int:
    async with admin.pipeline(transaction=False) as pipe:
        for channel in CHANNELS:
            pipe.zcard(ChannelKeys(KEY_PREFIX, channel).completed)
        counts = await pipe.execute()
    return sum(int(count) for count in counts)


async def _kill_one(chaos: Chaos, admin: Redis, rng: random.Random) -> None:
    slot = rng.randrange(PROCESSES)
    victim = chaos.slots[slot]
    assert victim is not None
    victim.process.send_signal(signal.SIGKILL)
    await victim.process.wait()
    chaos.slots[slot] = None
    # Read at once: a take-over needs the entries idle for a stalled interval (>= 1 s).
    pending = await _victim_pending(admin, victim.pid)
    running = int(await admin.scard(f"{PROBE}:running:{victim.pid}"))
    chaos.kills.append(Kill(victim.pid, time.monotonic(), pending, running))
    print(f"killed pid {victim.pid}: {pending} pending, {running} in its handler")
    await chaos.start(slot)


async def _restart_redis(chaos: Chaos, admin: Redis) -> None:
    # Freeze every write (scripts, XREADGROUP, the handlers' records) so that the count of
    # pending entries is the one Redis stops with.
    await admin.client_pause(60_000, all=False)
    pending = 0
    for channel in CHANNELS:
        for group in await admin.xinfo_groups(ChannelKeys(KEY_PREFIX, channel).stream):
            pending += int(group["pending"])
    began = time.monotonic()
    chaos.restart_redis(OUTAGE_SECONDS)
    outage = Outage(began, pending)
    chaos.outages.append(outage)
    print(f"Redis restarted after a {OUTAGE_SECONDS} s outage; {pending} pending at the stop")
    await _check_recovered(chaos, admin, outage)


async def _check_recovered(chaos: Chaos, admin: Redis, outage: Outage) -> None:
    """Every process is alive and ready again, and jobs complete again."""
    deadline = time.monotonic() + RECOVERY_TIMEOUT
    before = None
    async with httpx.AsyncClient(timeout=2.0) as http:
        while True:
            dead = [s for s in chaos.live() if s.process.returncode is not None]
            if dead:
                pytest.fail(
                    "runtime serve exited during the Redis outage:\n"
                    + "\n".join(
                        f"pid {s.pid} ({s.process.returncode}):\n{s.output()[-4000:]}" for s in dead
                    )
                )
            ready = True
            for server in chaos.live():
                try:
                    response = await http.get(f"{server.http_url}/health/ready")
                    ready = ready and response.status_code == 200
                except httpx.TransportError:
                    ready = False
            with contextlib.suppress(RedisError, OSError):
                count = await _completed(admin)
                if before is None:
                    before = count
                elif ready and count > before:
                    outage.recovered_in = time.monotonic() - outage.at
                    return
            if time.monotonic() > deadline:
                logs = "\n".join(f"pid {s.pid}:\n{s.output()[-4000:]}" for s in chaos.live())
                pytest.fail(
                    f"no recovery {RECOVERY_TIMEOUT} s after Redis came back "
                    f"(ready={ready}, completed {before} -> still):\n{logs}"
                )
            await asyncio.sleep(0.1)


async def _chaos_loop(chaos: Chaos, admin: Redis, enqueuing: asyncio.Task[object]) -> None:
    rng = random.Random(int(os.environ.get("CHAOS_SEED", "0")) or None)
    began = time.monotonic()
    restart_at = began + SECONDS / 2
    while not enqueuing.done():
        await asyncio.sleep(rng.uniform(*KILL_EVERY))
        if not chaos.outages and time.monotonic() >= restart_at:
            await _restart_redis(chaos, admin)
        elif not enqueuing.done():
            await _kill_one(chaos, admin, rng)
    if not chaos.outages:
        await _restart_redis(chaos, admin)


async def _wait_drained(admin: Redis, jobs: int) -> None:
    deadline = time.monotonic() + DRAIN_TIMEOUT
    while True:
        with contextlib.suppress(RedisError, OSError):
            if await _completed(admin) >= jobs:
                return
        if time.monotonic() > deadline:
            return  # the checks below say what is missing
        await asyncio.sleep(0.2)


async def test_jobs_survive_killed_processes_and_a_redis_restart(chaos: Chaos) -> None:
    began = time.monotonic()
    await asyncio.gather(*(chaos.start(slot) for slot in range(PROCESSES)))
    admin = Redis.from_url(chaos.url)
    try:
        enqueuing = asyncio.create_task(_enqueue_paced(admin, JOBS, SECONDS))
        await _chaos_loop(chaos, admin, enqueuing)
        ids = await enqueuing
        await _wait_drained(admin, JOBS)
        elapsed = time.monotonic() - began

        all_ids = [job_id for channel in CHANNELS for job_id in ids[channel]]
        runs = {text(k): int(v) for k, v in (await admin.hgetall(f"{PROBE}:runs")).items()}
        starts = {text(k): int(v) for k, v in (await admin.hgetall(f"{PROBE}:starts")).items()}
        async with admin.pipeline(transaction=False) as pipe:
            for channel in CHANNELS:
                for job_id in ids[channel]:
                    pipe.hget(ChannelKeys(KEY_PREFIX, channel).job(job_id), "state")
            states = [text(state) if state else None for state in await pipe.execute()]
        failed = 0
        for channel in CHANNELS:
            failed += int(await admin.zcard(ChannelKeys(KEY_PREFIX, channel).failed))
    finally:
        await admin.aclose()

    not_completed = [j for j, s in zip(all_ids, states, strict=True) if s != "completed"]
    never_ran = [j for j in all_ids if runs.get(j, 0) < 1]
    twice = sorted(j for j, count in runs.items() if count >= 2)
    extra = sum(count - 1 for count in runs.values() if count > 1)
    restarted = sum(count - 1 for count in starts.values() if count > 1)
    bound = sum(kill.pending for kill in chaos.kills) + sum(o.pending for o in chaos.outages)
    lost_heartbeats = sum(s.output().count("may run twice") for s in chaos.started)
    print(
        f"\nchaos: {len(all_ids)} jobs over {SECONDS:.0f} s, {len(chaos.kills)} kill(s), "
        f"{len(chaos.outages)} Redis restart(s) (recovered in "
        f"{', '.join(f'{o.recovered_in:.1f} s' for o in chaos.outages)}), {elapsed:.1f} s in all\n"
        f"  in flight at the kills (pending / in handler): "
        f"{[(k.pending, k.running) for k in chaos.kills]}; pending at the Redis stop: "
        f"{[o.pending for o in chaos.outages]}\n"
        f"  jobs run twice or more: {len(twice)} (extra runs {extra}, bound {bound}); "
        f"handler entries beyond the first: {restarted} (planned retries included)\n"
        f"  'may run twice' warnings (a live process lost a job): {lost_heartbeats}\n"
        f"  not completed: {len(not_completed)}, never ran: {len(never_ran)}, failed set: {failed}"
    )
    assert len(all_ids) == JOBS
    assert not not_completed, f"jobs not completed: {not_completed[:20]}"
    assert not never_ran, f"jobs with no recorded run: {never_ran[:20]}"
    assert set(runs) <= set(all_ids)
    assert failed == 0
    assert chaos.kills, "no process was killed: the run was too short"
    assert chaos.outages
    assert all(o.recovered_in > 0 for o in chaos.outages)
    assert extra <= bound, f"{extra} extra runs, more than the {bound} jobs in flight: {twice[:20]}"
