"""Chaos: jobs keep flowing while `runtime serve` processes are SIGKILLed or paused and
Redis restarts.

Two runs, each with a Redis of the test's own (a free TCP port and a temp folder: it is
restarted, so never the machine's), the chaos project (tests/chaos/project: four channels
shaped like the notification service's, a handler that records every run) and three
`runtime serve` processes. CHAOS_JOBS jobs are enqueued over CHAOS_SECONDS while, every
few seconds, a random process is either SIGKILLed (and started again) or paused with
SIGSTOP for PAUSE_SECONDS, longer than every stalled interval (1-2 s), so that the others
take its jobs over, and then resumed with SIGCONT; halfway, Redis itself is stopped and
started again on the same port.

**test_jobs_survive_killed_and_paused_processes_and_a_redis_restart**: Redis keeps its
data (embedded, append-only file, stopped with SIGTERM, which flushes it). At the end every
job must be completed, with at least one recorded run: none lost. None may be in two
final states (completed and failed, or completed and waiting for a retry). Jobs that ran
more than once are counted and bounded:

    extra runs  =  sum over jobs of (successful runs - 1)
                <= sum over kills of the victim's pending entries (XINFO CONSUMERS, read
                   right after it died: delivered to it and not acknowledged, running,
                   finished but not yet recorded, or held by the rate limiter)
                 + sum over pauses of the entries the paused process held (read at once
                   and again 0.55 s later, when a read it had sent before the pause has
                   returned, and before anything of it can be idle for a stalled interval;
                   their union)
                 + every pending entry of every channel when Redis stopped (read under
                   CLIENT PAUSE WRITE, so nothing moves meanwhile: after the outage their
                   idle time exceeds the stalled interval and any process may take one over
                   before its owner's heartbeat refreshes it).

A job runs again only when the process it was delivered to lost it before acknowledging
it, so nothing else may run twice. A paused process runs on what it held once resumed, but
its outcomes are dropped (the claim moved on), so a job is never recorded twice.

A resumed process does not start again what it no longer holds either (start.lua checks
the claim), so no job is marked active after its owner completed it.

**test_jobs_after_an_empty_redis_restart_all_complete**: Redis keeps nothing (no
persistence) and restarts empty: every job it held is gone, and with it the consumer
groups. The handlers record their runs in the session's Redis instead, which survives.
The invariant is weaker, and split at the restart:

- jobs acknowledged (enqueue returned) after Redis came back: every one completes, none
  lost, none in two states, duplicates bounded as above by the kills and pauses;
- jobs acknowledged before the stop: the ones that had not run yet are lost with Redis's
  memory. That is what an empty restart does, not a bug: they are counted and reported,
  not asserted. Those running at the stop still finish; their outcome is dropped (their
  stream is gone) and, as a handler recorded each run, they are not counted as lost;
- every process recreates its consumer groups (a bounded number of NOGROUP reports, not
  one per second) and is ready again.

Both print their numbers with `pytest -s`: jobs lost, duplicated (ran more than once) and
in two states. Short by default (part of `make test`); `make chaos` runs the long
version: CHAOS_JOBS=10000 CHAOS_SECONDS=60.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import os
import random
import signal
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest
from pydantic import BaseModel
from redis import Redis as SyncRedis
from redis.asyncio import Redis
from redis.exceptions import RedisError, ResponseError

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
from tests.runtime.test_reliability_support import PrivateRedis

PROJECT = Path(__file__).resolve().parent / "project"
APP = "chaos_generated"
CHANNELS = ("email", "sms", "push", "whatsapp")
KEY_PREFIX = "chaos"
PROBE = "chaos:probe"  # where the handlers record (chaosprobe/handlers.py)
PROCESSES = 3

JOBS = int(os.environ.get("CHAOS_JOBS", "600"))
SECONDS = float(os.environ.get("CHAOS_SECONDS", "12"))
ACT_EVERY = (1.5, 3.5)  # seconds between kills or pauses, drawn uniformly
PAUSE_SECONDS = 3.0  # a SIGSTOP lasts this long: more than every stalled interval (1-2 s)
PAUSE_SETTLE_S = 0.55  # a blocked read (500 ms) sent before a pause has returned by then
OUTAGE_SECONDS = 3.0  # Redis is down this long: more than every stalled interval (1-2 s)
RECOVERY_TIMEOUT = 30.0  # after Redis is back, every process must be ready and jobs flow
DRAIN_TIMEOUT = 60.0 + JOBS / 100  # after the last enqueue, every job must be completed
TICK = 0.1  # enqueue pacing
NOGROUP = "the consumer group is gone"

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
class Pause:
    pid: int
    at: float
    held: int  # entries delivered to it and not acknowledged during the pause (see above)
    running: int


@dataclass
class Outage:
    at: float
    pending: int
    target: float  # jobs this Redis completes in all: reached, nothing more can complete
    recovered_in: float = 0.0
    ended_at: float = 0.0


@dataclass
class Chaos:
    """The Redis, the processes (every incarnation, for the teardown), what was done.

    `probe_url` and `probe` say where the handlers record their runs."""

    folder: Path
    project: Path
    port: int
    redis: EmbeddedRedis | PrivateRedis
    probe_url: str
    probe: str = PROBE
    slots: list[Server | None] = field(default_factory=lambda: [None] * PROCESSES)
    started: list[Server] = field(default_factory=list)
    kills: list[Kill] = field(default_factory=list)
    pauses: list[Pause] = field(default_factory=list)
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
            "CHAOS_REDIS_URL": self.probe_url,
            "CHAOS_PREFIX": self.probe,
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
        """Stop Redis (SIGTERM: an append-only file is flushed), wait, start it on the same
        port and folder. Blocking on purpose: the child must be forked by this (the main)
        thread, as the server dies with the thread that started it."""
        if isinstance(self.redis, PrivateRedis):
            self.redis.stop(signal.SIGTERM)
            time.sleep(outage)
            self.redis.start()
            return
        self.redis.stop()
        time.sleep(outage)
        self.redis = EmbeddedRedis(self.folder / "redis", persist=True, port=self.port).start()

    async def close(self) -> None:
        for server in self.started:
            if server.process.returncode is None:
                with contextlib.suppress(ProcessLookupError):
                    server.process.send_signal(signal.SIGCONT)
            await server.stop(within=10.0)
        if isinstance(self.redis, PrivateRedis):
            self.redis.stop(signal.SIGKILL)
        else:
            self.redis.stop()


def _generate(folder: Path) -> Path:
    return generate_project(PROJECT, folder / "project", APP)


@pytest.fixture
async def chaos(tmp_path: Path) -> AsyncIterator[Chaos]:
    project = _generate(tmp_path)
    port = free_port()
    redis = EmbeddedRedis(tmp_path / "redis", persist=True, port=port).start()
    state = Chaos(tmp_path, project, port, redis, probe_url=f"redis://127.0.0.1:{port}/0")
    try:
        yield state
    finally:
        await state.close()


@pytest.fixture
def probe_prefix(redis_url: str) -> Iterator[str]:
    """A prefix of the session's Redis for the handlers' records; removed afterwards."""
    prefix = f"chaos-{uuid.uuid4().hex[:12]}:probe"
    yield prefix
    with SyncRedis.from_url(redis_url) as client:
        keys = list(client.scan_iter(match=f"{prefix}:*", count=1000))
        if keys:
            client.delete(*keys)


@pytest.fixture
async def empty_chaos(tmp_path: Path, redis_url: str, probe_prefix: str) -> AsyncIterator[Chaos]:
    """Chaos on a Redis that persists nothing; the handlers record in the session's."""
    project = _generate(tmp_path)
    redis = PrivateRedis(tmp_path / "redis", persist=False).start()
    state = Chaos(tmp_path, project, redis.port, redis, probe_url=redis_url, probe=probe_prefix)
    try:
        yield state
    finally:
        await state.close()


def _job_id(channel: str, n: int) -> str:
    return f"{channel}-{n:06d}"


async def _enqueue_paced(
    admin: Redis, jobs: int, seconds: float, acked: dict[str, float] | None = None
) -> dict[str, list[str]]:
    """Enqueue `jobs` jobs round robin over the channels, evenly over `seconds`. A batch
    that fails (Redis is down) is sent again: enqueue is idempotent by job id. `acked`
    gets each job's time (monotonic) of the enqueue call that stored it."""
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
                except (RedisError, OSError):
                    await asyncio.sleep(0.2)
                    continue
                if acked is not None:
                    now = time.monotonic()
                    acked.update((entry.job_id, now) for entry in entries)
                break
        tick += 1
        await asyncio.sleep(max(0.0, began + tick * TICK - time.monotonic()))
    return ids


def _str(value: object) -> str:
    """A Redis reply field as text (redis-py types them loosely)."""
    return value.decode() if isinstance(value, bytes) else str(value)


def _pid_of(consumer: object) -> int:
    """The pid in a consumer name `<host>-<pid>-<random>` (runtime.engine.workers)."""
    return int(_str(consumer).rsplit("-", 2)[1])


async def _consumers(admin: Redis, channel: str) -> list[dict[str, object]]:
    """The channel's consumers; none while its stream or group does not exist (yet)."""
    try:
        found: list[dict[str, object]] = await admin.xinfo_consumers(
            ChannelKeys(KEY_PREFIX, channel).stream, CONSUMER_GROUP
        )
    except ResponseError:
        return []
    return found


async def _victim_pending(admin: Redis, pid: int) -> int:
    """Entries delivered to the consumers of process `pid` and not acknowledged."""
    total = 0
    for channel in CHANNELS:
        for consumer in await _consumers(admin, channel):
            if _pid_of(consumer["name"]) == pid:
                total += int(_str(consumer["pending"]))
    return total


async def _held_ids(admin: Redis, pid: int) -> set[str]:
    """Stream ids (with their channel) delivered to process `pid`, not acknowledged."""
    held: set[str] = set()
    for channel in CHANNELS:
        stream = ChannelKeys(KEY_PREFIX, channel).stream
        for consumer in await _consumers(admin, channel):
            if _pid_of(consumer["name"]) != pid:
                continue
            entries = await admin.xpending_range(
                stream,
                CONSUMER_GROUP,
                min="-",
                max="+",
                count=10_000,
                consumername=_str(consumer["name"]),
            )
            held.update(f"{channel}:{_str(entry['message_id'])}" for entry in entries)
    return held


async def _completed(admin: Redis) -> int:
    async with admin.pipeline(transaction=False) as pipe:
        for channel in CHANNELS:
            pipe.zcard(ChannelKeys(KEY_PREFIX, channel).completed)
        counts = await pipe.execute()
    return sum(int(count) for count in counts)


async def _kill_one(chaos: Chaos, admin: Redis, probe: Redis, rng: random.Random) -> None:
    slot = rng.randrange(PROCESSES)
    victim = chaos.slots[slot]
    assert victim is not None
    victim.process.send_signal(signal.SIGKILL)
    await victim.process.wait()
    chaos.slots[slot] = None
    # Read at once: a take-over needs the entries idle for a stalled interval (>= 1 s).
    pending = await _victim_pending(admin, victim.pid)
    running = int(await probe.scard(f"{chaos.probe}:running:{victim.pid}"))
    chaos.kills.append(Kill(victim.pid, time.monotonic(), pending, running))
    print(f"killed pid {victim.pid}: {pending} pending, {running} in its handler")
    await chaos.start(slot)


async def _pause_one(chaos: Chaos, admin: Redis, probe: Redis, rng: random.Random) -> None:
    """SIGSTOP a process for PAUSE_SECONDS: its jobs are taken over meanwhile; then
    SIGCONT, and it runs on."""
    victim = chaos.slots[rng.randrange(PROCESSES)]
    assert victim is not None
    victim.process.send_signal(signal.SIGSTOP)
    paused_at = time.monotonic()
    held = await _held_ids(admin, victim.pid)
    running = int(await probe.scard(f"{chaos.probe}:running:{victim.pid}"))
    # A read it sent before the pause may still deliver (XREADGROUP blocks up to 500 ms);
    # what it delivers is idle for a whole stalled interval before anyone takes it over.
    await asyncio.sleep(max(0.0, paused_at + PAUSE_SETTLE_S - time.monotonic()))
    held |= await _held_ids(admin, victim.pid)
    await asyncio.sleep(max(0.0, paused_at + PAUSE_SECONDS - time.monotonic()))
    victim.process.send_signal(signal.SIGCONT)
    chaos.pauses.append(Pause(victim.pid, paused_at, len(held), running))
    print(f"paused pid {victim.pid} for {PAUSE_SECONDS} s: {len(held)} held, {running} running")


async def _restart_redis(chaos: Chaos, admin: Redis) -> None:
    # Freeze every write (scripts, XREADGROUP, the handlers' records) so that the count of
    # pending entries is the one Redis stops with.
    await admin.client_pause(60_000, all=False)
    pending = 0
    for channel in CHANNELS:
        with contextlib.suppress(ResponseError):
            for group in await admin.xinfo_groups(ChannelKeys(KEY_PREFIX, channel).stream):
                pending += int(group["pending"])
    began = time.monotonic()
    chaos.restart_redis(OUTAGE_SECONDS)
    target = JOBS if isinstance(chaos.redis, EmbeddedRedis) else math.inf
    outage = Outage(began, pending, target, ended_at=time.monotonic())
    chaos.outages.append(outage)
    print(f"Redis restarted after a {OUTAGE_SECONDS} s outage; {pending} pending at the stop")
    await _check_recovered(chaos, admin, outage)


async def _check_recovered(chaos: Chaos, admin: Redis, outage: Outage) -> None:
    """Every process is alive and ready again, and jobs complete again (or all are)."""
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
                elif ready and (count > before or count >= outage.target):
                    outage.recovered_in = time.monotonic() - outage.at
                    return
            if time.monotonic() > deadline:
                logs = "\n".join(f"pid {s.pid}:\n{s.output()[-4000:]}" for s in chaos.live())
                pytest.fail(
                    f"no recovery {RECOVERY_TIMEOUT} s after Redis came back "
                    f"(ready={ready}, completed {before} -> still):\n{logs}"
                )
            await asyncio.sleep(0.1)


async def _chaos_loop(
    chaos: Chaos,
    admin: Redis,
    probe: Redis,
    enqueuing: asyncio.Task[object],
    acts_first: int = 2,
) -> None:
    """Until the enqueuing ends: every few seconds a pause or a kill (alternating from a
    pause, the victim drawn at random); Redis restarts once, halfway but after
    `acts_first` of them. Whatever has not happened when the enqueuing ends happens then
    (jobs still run)."""
    rng = random.Random(int(os.environ.get("CHAOS_SEED", "0")) or None)
    restart_at = time.monotonic() + SECONDS / 2
    acts = 0

    async def act() -> None:
        nonlocal acts
        if acts % 2 == 0:
            await _pause_one(chaos, admin, probe, rng)
        else:
            await _kill_one(chaos, admin, probe, rng)
        acts += 1

    while not enqueuing.done():
        await asyncio.sleep(rng.uniform(*ACT_EVERY))
        if enqueuing.done():
            break
        if not chaos.outages and acts >= acts_first and time.monotonic() >= restart_at:
            await _restart_redis(chaos, admin)
        else:
            await act()
    while acts < 2:
        await act()
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


@dataclass
class Final:
    """Where each job ended, read from Redis and the handlers' records."""

    states: dict[str, str | None]  # the job hash's state (None: no hash)
    sets: dict[str, set[str]]  # job id -> the final sets it is in: completed, failed, delayed
    runs: dict[str, int]  # successful handler runs
    starts: dict[str, int]  # handler entries (planned retries included)
    failed: int  # jobs in the failed sets

    def two_states(self, ids: list[str]) -> list[str]:
        """Jobs in more than one of completed, failed and delayed (waiting for a retry)."""
        return [job for job in ids if len(self.sets.get(job, set())) > 1]


async def _final(admin: Redis, probe: Redis, prefix: str, ids: dict[str, list[str]]) -> Final:
    runs = {text(k): int(v) for k, v in (await probe.hgetall(f"{prefix}:runs")).items()}
    starts = {text(k): int(v) for k, v in (await probe.hgetall(f"{prefix}:starts")).items()}
    states: dict[str, str | None] = {}
    sets: dict[str, set[str]] = {}
    failed = 0
    for channel in CHANNELS:
        keys = ChannelKeys(KEY_PREFIX, channel)
        async with admin.pipeline(transaction=False) as pipe:
            for job_id in ids[channel]:
                pipe.hget(keys.job(job_id), "state")
            found = await pipe.execute()
        states.update(
            (job_id, text(state) if state else None)
            for job_id, state in zip(ids[channel], found, strict=True)
        )
        for name, key in (
            ("completed", keys.completed),
            ("failed", keys.failed),
            ("delayed", keys.delayed),
        ):
            members = [_str(member) for member in await admin.zrange(key, 0, -1)]
            if name == "failed":
                failed += len(members)
            for member in members:
                sets.setdefault(member, set()).add(name)
    return Final(states, sets, runs, starts, failed)


def _describe(final: Final, ids: list[str]) -> list[str]:
    return [
        f"{job}: state {final.states.get(job)}, in {sorted(final.sets.get(job, ()))}, "
        f"{final.starts.get(job, 0)} start(s), {final.runs.get(job, 0)} run(s)"
        for job in ids[:20]
    ]


def _logged(chaos: Chaos, needle: str) -> int:
    return sum(s.output().count(needle) for s in chaos.started)


class RestartedAfterTakeOver(AssertionError):
    """A job completed by its new owner, then started again by a process resumed after a
    pause (start.lua must check the claim)."""


async def test_jobs_survive_killed_and_paused_processes_and_a_redis_restart(chaos: Chaos) -> None:
    began = time.monotonic()
    await asyncio.gather(*(chaos.start(slot) for slot in range(PROCESSES)))
    admin = Redis.from_url(chaos.url)
    try:
        enqueuing = asyncio.create_task(_enqueue_paced(admin, JOBS, SECONDS))
        await _chaos_loop(chaos, admin, admin, enqueuing, acts_first=1)
        ids = await enqueuing
        await _wait_drained(admin, JOBS)
        elapsed = time.monotonic() - began
        final = await _final(admin, admin, PROBE, ids)
    finally:
        await admin.aclose()

    all_ids = [job_id for channel in CHANNELS for job_id in ids[channel]]
    runs = final.runs
    lost = [j for j in all_ids if final.states[j] != "completed"]
    # Completed, then marked active again by a stale start: not lost, but not in one state
    # either (start.lua's claim check prevents it).
    overwritten = [
        j for j in lost if final.states[j] == "active" and final.sets.get(j) == {"completed"}
    ]
    never_ran = [j for j in all_ids if runs.get(j, 0) < 1]
    twice = sorted(j for j, count in runs.items() if count >= 2)
    two_states = final.two_states(all_ids)
    extra = sum(count - 1 for count in runs.values() if count > 1)
    restarted = sum(count - 1 for count in final.starts.values() if count > 1)
    bound = (
        sum(kill.pending for kill in chaos.kills)
        + sum(pause.held for pause in chaos.pauses)
        + sum(o.pending for o in chaos.outages)
    )
    print(
        f"\nchaos: {len(all_ids)} jobs over {SECONDS:.0f} s, {len(chaos.kills)} kill(s), "
        f"{len(chaos.pauses)} pause(s) of {PAUSE_SECONDS:.0f} s, "
        f"{len(chaos.outages)} Redis restart(s) (recovered in "
        f"{', '.join(f'{o.recovered_in:.1f} s' for o in chaos.outages)}), {elapsed:.1f} s in all\n"
        f"  in flight at the kills (pending / in handler): "
        f"{[(k.pending, k.running) for k in chaos.kills]}; at the pauses (held / in handler): "
        f"{[(p.held, p.running) for p in chaos.pauses]}; pending at the Redis stop: "
        f"{[o.pending for o in chaos.outages]}\n"
        f"  LOST: {len(lost) - len(overwritten)}; DUPLICATED (ran more than once): "
        f"{len(twice)} (extra runs {extra}, bound {bound}); IN TWO STATES: "
        f"{len(two_states) + len(overwritten)} (in two sets: {len(two_states)}; completed, "
        f"then marked active by a stale start: {len(overwritten)})\n"
        f"  handler entries beyond the first: {restarted} (planned retries included); "
        f"never ran: {len(never_ran)}; failed set: {final.failed}\n"
        f"  take-overs reported by a live process: {_logged(chaos, 'taken over by another')}; "
        f"outcomes dropped as stale: {_logged(chaos, 'outcome(s) not recorded')}"
    )
    assert len(all_ids) == JOBS
    really_lost = [j for j in lost if j not in overwritten]
    assert not really_lost, f"jobs not completed: {_describe(final, really_lost)}"
    assert not never_ran, f"jobs with no recorded run: {never_ran[:20]}"
    assert not two_states, f"jobs in two states: {[(j, final.sets[j]) for j in two_states[:20]]}"
    assert set(runs) <= set(all_ids)
    assert final.failed == 0
    assert chaos.kills, "no process was killed: the run was too short"
    assert chaos.pauses, "no process was paused: the run was too short"
    assert chaos.outages
    assert all(o.recovered_in > 0 for o in chaos.outages)
    assert extra <= bound, f"{extra} extra runs, more than the {bound} jobs in flight: {twice[:20]}"
    if overwritten:
        raise RestartedAfterTakeOver(
            f"completed, then marked active by a stale start: {_describe(final, overwritten)}"
        )


async def test_jobs_after_an_empty_redis_restart_all_complete(
    empty_chaos: Chaos, redis_url: str
) -> None:
    chaos = empty_chaos
    jobs = max(100, JOBS // 2)
    began = time.monotonic()
    await asyncio.gather(*(chaos.start(slot) for slot in range(PROCESSES)))
    admin = Redis.from_url(chaos.url)
    probe = Redis.from_url(redis_url)
    acked: dict[str, float] = {}
    try:
        enqueuing = asyncio.create_task(_enqueue_paced(admin, jobs, SECONDS, acked))
        # The restart is due halfway whatever happened before: jobs must be enqueued after it.
        await _chaos_loop(chaos, admin, probe, enqueuing, acts_first=0)
        ids = await enqueuing
        await _wait_drained(admin, len([j for j, at in acked.items() if at > _back(chaos)]))
        await _wait_settled(chaos)
        elapsed = time.monotonic() - began
        final = await _final(admin, probe, chaos.probe, ids)
    finally:
        await admin.aclose()
        await probe.aclose()

    restart = chaos.outages[0]
    all_ids = [job_id for channel in CHANNELS for job_id in ids[channel]]
    before = [j for j in all_ids if acked[j] < restart.at]
    after = [j for j in all_ids if acked[j] > restart.ended_at]
    runs = final.runs
    lost_before = [j for j in before if runs.get(j, 0) < 1]
    lost_after = [j for j in after if final.states[j] != "completed" or runs.get(j, 0) < 1]
    twice = sorted(j for j, count in runs.items() if count >= 2)
    extra = sum(count - 1 for count in runs.values() if count > 1)
    bound = sum(kill.pending for kill in chaos.kills) + sum(p.held for p in chaos.pauses)
    two_states = final.two_states(after)
    nogroup = _logged(chaos, NOGROUP)
    print(
        f"\nchaos with an empty Redis restart: {len(all_ids)} jobs over {SECONDS:.0f} s, "
        f"{len(chaos.kills)} kill(s), {len(chaos.pauses)} pause(s), Redis restarted empty "
        f"(recovered in {restart.recovered_in:.1f} s, {restart.pending} pending at the stop), "
        f"{elapsed:.1f} s in all\n"
        f"  acknowledged before the restart: {len(before)}, LOST {len(lost_before)} (had not "
        f"run: gone with Redis's memory, expected)\n"
        f"  acknowledged after the restart: {len(after)}, LOST {len(lost_after)}; "
        f"IN TWO STATES: {len(two_states)}\n"
        f"  DUPLICATED (ran more than once): {len(twice)} (extra runs {extra}, bound {bound})\n"
        f"  consumer groups recreated (NOGROUP reports): {nogroup}; failed set after the "
        f"restart: {final.failed}"
    )
    assert len(before) + len(after) == len(all_ids) == jobs
    assert before
    assert after
    assert not lost_after, (
        f"acknowledged after the restart, not completed: {_describe(final, lost_after)}"
    )
    assert not two_states, [(j, final.sets[j]) for j in two_states[:20]]
    assert final.failed == 0
    assert extra <= bound, f"{extra} extra runs, more than the {bound} jobs in flight: {twice[:20]}"
    # Each process that saw the restart recreates each channel's group once or so, not
    # once a second; every process is alive.
    assert 1 <= nogroup <= 2 * len(CHANNELS) * len(chaos.started), nogroup
    assert all(s.process.returncode is None for s in chaos.live())


def _back(chaos: Chaos) -> float:
    return chaos.outages[0].ended_at if chaos.outages else math.inf


async def _wait_settled(chaos: Chaos) -> None:
    """Every live process ready (its consumer groups back)."""
    async with httpx.AsyncClient(timeout=2.0) as http:
        deadline = time.monotonic() + RECOVERY_TIMEOUT
        while True:
            codes = []
            for server in chaos.live():
                with contextlib.suppress(httpx.TransportError):
                    codes.append((await http.get(f"{server.http_url}/health/ready")).status_code)
            if codes == [200] * len(chaos.live()):
                return
            if time.monotonic() > deadline:
                pytest.fail(f"processes not ready after the empty restart: {codes}")
            await asyncio.sleep(0.1)
