"""Chaos: jobs enqueued through the served APIs keep flowing while `runtime serve`
processes are SIGKILLed or paused and Redis crashes or restarts empty, and nothing
acknowledged is lost.

Two runs, each with a Redis of the test's own (a free TCP port and a temp folder:
`chaos_support.ChaosRedis`), the chaos project (tests/chaos/project: four channels shaped
like the notification service's, a handler that records every run) and three `runtime
serve` processes. CHAOS_JOBS jobs are enqueued over CHAOS_SECONDS through the processes'
HTTP API (even job numbers) and gRPC API (odd ones), round robin over the live processes;
a request that fails in transport, times out (a paused process) or is answered 503 /
UNAVAILABLE is sent again to the next process with the same Idempotency-Key / job_id. A
job is *acknowledged* when an API answered 202 / OK. Meanwhile, every few seconds, a
random process is either SIGKILLed (and started again) or paused with SIGSTOP for
PAUSE_SECONDS, longer than every stalled interval (1-2 s), so that the others take its
jobs over, and then resumed with SIGCONT; halfway, Redis itself goes down.

The ledger is kept outside the Redis under test, in the session's Redis (REDIS_URL, under
a `new_prefix()`): the acknowledgments (job id -> time, API, pid), and what the handlers
record (starts, successful runs, the jobs each process is in).

The random seed is printed at the start (`-s`); `CHAOS_SEED=<seed>` replays the run's
schedule: the gaps between acts, the victims, and every handler's sleep.

**test_jobs_survive_killed_and_paused_processes_and_a_redis_crash**: Redis runs with
`appendonly yes`, `appendfsync everysec` and is *crashed* (SIGKILL) halfway, then started
again on the same port and folder. Before the crash, under CLIENT PAUSE WRITE (nothing
moves meanwhile), the test reads every pending entry and the completed sets; during the
outage it starts the crashed data once on another port, to see what survived: which
acknowledged jobs are gone, which completions were rolled back. The bound of
docs/delivery.md ("Redis crashes") is asserted as stated there:

- LOST: an acknowledged job that did not complete must be one whose enqueue the crash
  lost, acknowledged less than CRASH_WINDOW_S before the SIGKILL (Redis postpones the
  append-only write up to 2 s while a background fsync is slow). Every other job completes
  with at least one recorded run. The count of jobs the crash lost is printed (on a
  healthy disk it is usually 0: a write reaches the kernel before Redis replies).
- IN TWO STATES: none (completed and failed, or completed and waiting for a retry).
- DUPLICATED: every successful run beyond a job's first is tied to one event that held
  the job at that moment: a killed process's pending entries (read before the SIGKILL and
  again after it, their union), a paused process's (read at once and again 0.55 s later,
  when a read it sent before the pause has returned), or the crash (pending at the crash,
  or a completion the crash rolled back). A job runs again only when the process it was
  delivered to lost it before its acknowledgment was durable; nothing else may run twice.
  A paused process runs on what it held once resumed, but its outcomes are dropped (the
  claim moved on), and it does not start again what it no longer holds (start.lua checks
  the claim), so no job is marked active after its owner completed it.

**test_jobs_after_an_empty_redis_restart_all_complete**: Redis keeps nothing (no
persistence) and restarts empty: every job it held is gone, and with it the consumer
groups. The invariant is weaker, and split at the restart:

- jobs acknowledged after Redis came back: every one completes, none lost, none in two
  states, every duplicate tied to a kill or a pause as above;
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
from collections import Counter
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest
from redis import Redis as SyncRedis
from redis.asyncio import Redis
from redis.exceptions import RedisError

from runtime.engine.keys import ChannelKeys
from tests.chaos.chaos_support import ApiEnqueuer, ChaosRedis, held_jobs
from tests.conftest import delete_keys, new_prefix
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
PROCESSES = 3

JOBS = int(os.environ.get("CHAOS_JOBS", "600"))
SECONDS = float(os.environ.get("CHAOS_SECONDS", "12"))
ACT_EVERY = (1.5, 3.5)  # seconds between kills or pauses, drawn uniformly
PAUSE_SECONDS = 3.0  # a SIGSTOP lasts this long: more than every stalled interval (1-2 s)
PAUSE_SETTLE_S = 0.55  # a blocked read (500 ms) sent before a pause has returned by then
OUTAGE_SECONDS = 3.0  # Redis is down this long: more than every stalled interval (1-2 s)
# An acknowledged write a SIGKILL of Redis (`appendfsync everysec`) may lose was executed
# less than 2 s before it (the longest Redis postpones the append-only write while a
# background fsync runs), plus a serverCron tick (100 ms) and a margin.
CRASH_WINDOW_S = 2.5
RECOVERY_TIMEOUT = 30.0  # after Redis is back, every process must be ready and jobs flow
DRAIN_TIMEOUT = 60.0 + JOBS / 100  # after the last enqueue, every job must be completed
TICK = 0.1  # enqueue pacing
NOGROUP = "the consumer group is gone"

pytestmark = pytest.mark.timeout(int(SECONDS + DRAIN_TIMEOUT + 120))


@dataclass
class Kill:
    pid: int
    at: float
    before: int  # its pending entries read before the SIGKILL
    held: set[str]  # job ids pending for it before or after the SIGKILL
    running: int  # jobs its handler had entered and not left (the ledger's view)


@dataclass
class Pause:
    pid: int
    at: float
    held: set[str]  # job ids delivered to it and not acknowledged during the pause
    running: int


@dataclass
class Outage:
    at: float
    pending: set[str]  # job ids pending when Redis went down
    crash: bool = False  # SIGKILL of a Redis with an append-only file (else SIGTERM)
    rolled_back: set[str] = field(default_factory=set)  # completed before, not after
    lost: set[str] = field(default_factory=set)  # acknowledged before, no job after
    window: int = 0  # jobs acknowledged less than CRASH_WINDOW_S before the crash
    target: float = math.inf  # jobs this Redis completes in all: reached, nothing more can
    recovered_in: float = 0.0
    ended_at: float = 0.0

    @property
    def held(self) -> set[str]:
        """What the outage may make run twice: only a crash that kept its data."""
        return self.pending | self.rolled_back if self.crash else set()


@dataclass
class Chaos:
    """The Redis, the processes (every incarnation, for the teardown), what was done.

    `ledger` (the session's Redis) and `prefix` say where the handlers record their runs
    and the enqueuer its acknowledgments."""

    folder: Path
    project: Path
    redis: ChaosRedis
    ledger_url: str
    prefix: str
    seed: int
    rng: random.Random = field(init=False)
    acked: dict[str, float] = field(default_factory=dict)  # the enqueuer's
    slots: list[Server | None] = field(default_factory=lambda: [None] * PROCESSES)
    started: list[Server] = field(default_factory=list)
    kills: list[Kill] = field(default_factory=list)
    pauses: list[Pause] = field(default_factory=list)
    outages: list[Outage] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.rng = random.Random(self.seed)

    @property
    def url(self) -> str:
        return self.redis.url

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
            "CHAOS_REDIS_URL": self.ledger_url,
            "CHAOS_PREFIX": self.prefix,
            "CHAOS_SEED": str(self.seed),
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

    async def close(self) -> None:
        for server in self.started:
            if server.process.returncode is None:
                with contextlib.suppress(ProcessLookupError):
                    server.process.send_signal(signal.SIGCONT)
            await server.stop(within=10.0)
        self.redis.stop(signal.SIGKILL)


def _seed() -> int:
    seed = int(os.environ.get("CHAOS_SEED") or random.SystemRandom().randrange(1, 2**31))
    print(f"\nCHAOS_SEED={seed} (replay this run's schedule with CHAOS_SEED={seed})")
    return seed


@pytest.fixture
def ledger_prefix(redis_url: str) -> Iterator[str]:
    """A prefix of the session's Redis for the ledger; removed afterwards."""
    prefix = new_prefix("chaos-")
    yield prefix
    delete_keys(redis_url, f"{prefix}*")


async def _chaos(tmp_path: Path, redis_url: str, prefix: str, *, appendonly: bool) -> Chaos:
    project = generate_project(PROJECT, tmp_path / "project", APP)
    redis = ChaosRedis(tmp_path / "redis", free_port(), appendonly=appendonly).start()
    return Chaos(tmp_path, project, redis, redis_url, prefix, _seed())


@pytest.fixture
async def chaos(tmp_path: Path, redis_url: str, ledger_prefix: str) -> AsyncIterator[Chaos]:
    """Chaos on a Redis with an append-only file fsynced every second; it will crash."""
    state = await _chaos(tmp_path, redis_url, ledger_prefix, appendonly=True)
    try:
        yield state
    finally:
        await state.close()


@pytest.fixture
async def empty_chaos(tmp_path: Path, redis_url: str, ledger_prefix: str) -> AsyncIterator[Chaos]:
    """Chaos on a Redis that persists nothing."""
    state = await _chaos(tmp_path, redis_url, ledger_prefix, appendonly=False)
    try:
        yield state
    finally:
        await state.close()


def _str(value: object) -> str:
    """A Redis reply field as text (redis-py types them loosely)."""
    return value.decode() if isinstance(value, bytes) else str(value)


def _job_id(channel: str, n: int) -> str:
    return f"{channel}-{n:06d}"


def _channel_of(job_id: str) -> str:
    return job_id.rsplit("-", 1)[0]


async def _enqueue_paced(
    chaos: Chaos, ledger: Redis, jobs: int, seconds: float
) -> dict[str, list[str]]:
    """Enqueue `jobs` jobs round robin over the channels, evenly over `seconds`, through
    the APIs (chaos_support.ApiEnqueuer); `chaos.acked` gets each acknowledgment's time.
    A tick whose jobs are not acknowledged yet (Redis is down) holds the next ones back."""
    enqueuer = ApiEnqueuer(chaos.project, APP, chaos.live, ledger, f"{chaos.prefix}:acked")
    chaos.acked = enqueuer.acked
    ids: dict[str, list[str]] = {channel: [] for channel in CHANNELS}
    per_tick = max(1, math.ceil(jobs / max(1.0, seconds / TICK)))
    began = time.monotonic()
    n = 0
    tick = 0
    try:
        while n < jobs:
            batch = []
            for _ in range(min(per_tick, jobs - n)):
                channel = CHANNELS[n % len(CHANNELS)]
                job_id = _job_id(channel, n)
                ids[channel].append(job_id)
                batch.append(enqueuer.enqueue(channel, job_id, n))
                n += 1
            await asyncio.gather(*batch)
            tick += 1
            await asyncio.sleep(max(0.0, began + tick * TICK - time.monotonic()))
    finally:
        await enqueuer.close()
    print(
        f"enqueued through the APIs: tries {enqueuer.tries}, refused or timed out "
        f"(then sent again) {enqueuer.refused}, other answers {len(enqueuer.unexpected)}"
    )
    # While Redis is down an API answers 503 / UNAVAILABLE with the reason, never a 500.
    assert not enqueuer.unexpected, f"answers neither 2xx nor 503: {enqueuer.unexpected[:5]}"
    return ids


async def _completed(admin: Redis) -> int:
    async with admin.pipeline(transaction=False) as pipe:
        for channel in CHANNELS:
            pipe.zcard(ChannelKeys(KEY_PREFIX, channel).completed)
        counts = await pipe.execute()
    return sum(int(count) for count in counts)


def _completed_ids(client: SyncRedis) -> set[str]:
    found: set[str] = set()
    for channel in CHANNELS:
        found.update(
            _str(m) for m in client.zrange(ChannelKeys(KEY_PREFIX, channel).completed, 0, -1)
        )
    return found


async def _held(admin: Redis, pid: int | None) -> set[str]:
    return await held_jobs(admin, CHANNELS, KEY_PREFIX, pid)


async def _kill_one(chaos: Chaos, admin: Redis, ledger: Redis) -> None:
    slot = chaos.rng.randrange(PROCESSES)
    victim = chaos.slots[slot]
    assert victim is not None
    # Before: what it holds now. After: whatever a read sent meanwhile delivered to it; a
    # take-over needs the entries idle for a stalled interval (>= 1 s), so none is gone.
    before = await _held(admin, victim.pid)
    victim.process.send_signal(signal.SIGKILL)
    await victim.process.wait()
    chaos.slots[slot] = None
    held = before | await _held(admin, victim.pid)
    running = int(await ledger.scard(f"{chaos.prefix}:running:{victim.pid}"))
    chaos.kills.append(Kill(victim.pid, time.monotonic(), len(before), held, running))
    print(
        f"killed pid {victim.pid}: {len(before)} pending before, {len(held)} in all, "
        f"{running} in its handler"
    )
    await chaos.start(slot)


async def _pause_one(chaos: Chaos, admin: Redis, ledger: Redis) -> None:
    """SIGSTOP a process for PAUSE_SECONDS: its jobs are taken over meanwhile; then
    SIGCONT, and it runs on."""
    victim = chaos.slots[chaos.rng.randrange(PROCESSES)]
    assert victim is not None
    victim.process.send_signal(signal.SIGSTOP)
    paused_at = time.monotonic()
    held = await _held(admin, victim.pid)
    running = int(await ledger.scard(f"{chaos.prefix}:running:{victim.pid}"))
    # A read it sent before the pause may still deliver (XREADGROUP blocks up to 500 ms);
    # what it delivers is idle for a whole stalled interval before anyone takes it over.
    await asyncio.sleep(max(0.0, paused_at + PAUSE_SETTLE_S - time.monotonic()))
    held |= await _held(admin, victim.pid)
    await asyncio.sleep(max(0.0, paused_at + PAUSE_SECONDS - time.monotonic()))
    victim.process.send_signal(signal.SIGCONT)
    chaos.pauses.append(Pause(victim.pid, paused_at, held, running))
    print(f"paused pid {victim.pid} for {PAUSE_SECONDS} s: {len(held)} held, {running} running")


async def _redis_down(chaos: Chaos, admin: Redis) -> None:
    """Crash Redis (append-only) or stop it (nothing persisted), and start it again on the
    same port and folder after OUTAGE_SECONDS. The waits block on purpose: the server must
    be forked by this (the main) thread, as it dies with the thread that started it."""
    # Freeze every write (scripts, XREADGROUP, the handlers' records) so that what is read
    # now is what Redis goes down with.
    await admin.client_pause(60_000, all=False)
    pending = await _held(admin, None)
    crash = chaos.redis.appendonly
    outage = Outage(time.monotonic(), pending, crash)
    completed = await _completed_async(admin) if crash else set()
    _down_and_up(chaos.redis, outage, completed, dict(chaos.acked))
    chaos.outages.append(outage)
    what = "crashed (SIGKILL)" if crash else "stopped (SIGTERM, nothing persisted)"
    print(
        f"Redis {what}, back after {outage.ended_at - outage.at:.1f} s; {len(pending)} "
        f"pending then"
        + (
            f"; the crash lost {len(outage.lost)} acknowledged job(s) of {outage.window} "
            f"acknowledged in its last {CRASH_WINDOW_S} s, rolled back "
            f"{len(outage.rolled_back)} completion(s)"
            if crash
            else ""
        )
    )
    await _check_recovered(chaos, admin, outage)


async def _completed_async(admin: Redis) -> set[str]:
    found: set[str] = set()
    for channel in CHANNELS:
        members = await admin.zrange(ChannelKeys(KEY_PREFIX, channel).completed, 0, -1)
        found.update(_str(m) for m in members)
    return found


def _down_and_up(
    redis: ChaosRedis, outage: Outage, completed: set[str], acked: dict[str, float]
) -> None:
    """SIGKILL (a crash) or SIGTERM, the outage, and the start on the same port."""
    outage.at = time.monotonic()
    if outage.crash:
        redis.stop(signal.SIGKILL)
        _inspect_crash(redis, outage, completed, acked)
        outage.target = JOBS - len(outage.lost)
    else:
        redis.stop(signal.SIGTERM)
    time.sleep(max(0.0, outage.at + OUTAGE_SECONDS - time.monotonic()))
    redis.start()
    outage.ended_at = time.monotonic()


def _inspect_crash(
    redis: ChaosRedis, outage: Outage, completed: set[str], acked: dict[str, float]
) -> None:
    """Start the crashed data on a port nobody else knows, read what survived, stop it."""
    port = free_port()
    redis.start(port=port)
    try:
        with SyncRedis(port=port, socket_timeout=10) as client:
            ids = sorted(acked)
            with client.pipeline(transaction=False) as pipe:
                for job_id in ids:
                    pipe.exists(ChannelKeys(KEY_PREFIX, _channel_of(job_id)).job(job_id))
                found = pipe.execute()
            outage.lost = {j for j, there in zip(ids, found, strict=True) if not there}
            outage.rolled_back = completed - _completed_ids(client)
    finally:
        redis.stop(signal.SIGTERM)
    outage.window = sum(1 for at in acked.values() if at > outage.at - CRASH_WINDOW_S)


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
    chaos: Chaos, admin: Redis, ledger: Redis, enqueuing: asyncio.Task[object], acts_first: int
) -> None:
    """Until the enqueuing ends: every few seconds a pause or a kill (alternating from a
    pause, the victim drawn at random); Redis goes down once, halfway but after
    `acts_first` of them. Whatever has not happened when the enqueuing ends happens then
    (jobs still run)."""
    rng = chaos.rng
    down_at = time.monotonic() + SECONDS / 2
    acts = 0

    async def act() -> None:
        nonlocal acts
        if acts % 2 == 0:
            await _pause_one(chaos, admin, ledger)
        else:
            await _kill_one(chaos, admin, ledger)
        acts += 1

    while not enqueuing.done():
        await asyncio.sleep(rng.uniform(*ACT_EVERY))
        if enqueuing.done():
            break
        if not chaos.outages and acts >= acts_first and time.monotonic() >= down_at:
            await _redis_down(chaos, admin)
        else:
            await act()
    while acts < 2:
        await act()
    if not chaos.outages:
        await _redis_down(chaos, admin)


async def _wait_drained(admin: Redis, jobs: float) -> None:
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


def _untied(chaos: Chaos, runs: dict[str, int]) -> tuple[list[str], Counter[str]]:
    """Jobs with more extra runs than events that held them (a kill, a pause, the crash),
    and how many duplicated jobs each kind of event explains."""
    holders: Counter[str] = Counter()
    kind: dict[str, str] = {}
    for name, events in (("kill", chaos.kills), ("pause", chaos.pauses), ("crash", chaos.outages)):
        for event in events:
            for job in event.held:
                holders[job] += 1
                kind.setdefault(job, name)
    untied = sorted(j for j, count in runs.items() if count - 1 > holders[j])
    causes = Counter(kind[j] for j, count in runs.items() if count > 1 and j in kind)
    return untied, causes


async def _acks(ledger: Redis, prefix: str) -> dict[str, float]:
    """The ledger's acknowledgments: job id -> monotonic time."""
    found = await ledger.hgetall(f"{prefix}:acked")
    return {text(k): float(text(v).split()[0]) for k, v in found.items()}


class RestartedAfterTakeOver(AssertionError):
    """A job completed by its new owner, then started again by a process resumed after a
    pause (start.lua must check the claim)."""


async def test_jobs_survive_killed_and_paused_processes_and_a_redis_crash(
    chaos: Chaos, redis_url: str
) -> None:
    began = time.monotonic()
    await asyncio.gather(*(chaos.start(slot) for slot in range(PROCESSES)))
    admin = Redis.from_url(chaos.url)
    ledger = Redis.from_url(redis_url)
    try:
        enqueuing = asyncio.create_task(_enqueue_paced(chaos, ledger, JOBS, SECONDS))
        await _chaos_loop(chaos, admin, ledger, enqueuing, acts_first=1)
        ids = await enqueuing
        crash = chaos.outages[0]
        await _wait_drained(admin, crash.target)
        elapsed = time.monotonic() - began
        final = await _final(admin, ledger, chaos.prefix, ids)
        acked = await _acks(ledger, chaos.prefix)
    finally:
        await admin.aclose()
        await ledger.aclose()

    all_ids = [job_id for channel in CHANNELS for job_id in ids[channel]]
    runs = final.runs
    lost = [j for j in all_ids if final.states[j] != "completed"]
    # Completed, then marked active again by a stale start: not lost, but not in one state
    # either (start.lua's claim check prevents it).
    overwritten = [
        j for j in lost if final.states[j] == "active" and final.sets.get(j) == {"completed"}
    ]
    really_lost = [j for j in lost if j not in overwritten]
    beyond = [j for j in really_lost if j not in crash.lost]  # lost, not by the crash
    early = sorted(j for j in crash.lost if acked[j] <= crash.at - CRASH_WINDOW_S)
    never_ran = [j for j in all_ids if runs.get(j, 0) < 1 and j not in crash.lost]
    twice = sorted(j for j, count in runs.items() if count >= 2)
    two_states = final.two_states(all_ids)
    extra = sum(count - 1 for count in runs.values() if count > 1)
    restarted = sum(count - 1 for count in final.starts.values() if count > 1)
    untied, causes = _untied(chaos, runs)
    print(
        f"\nchaos: {len(all_ids)} jobs over {SECONDS:.0f} s through HTTP and gRPC, "
        f"{len(chaos.kills)} kill(s), {len(chaos.pauses)} pause(s) of {PAUSE_SECONDS:.0f} s, "
        f"a Redis crash (SIGKILL, appendfsync everysec; recovered in "
        f"{crash.recovered_in:.1f} s), {elapsed:.1f} s in all\n"
        f"  in flight at the kills (pending before / in all / in handler): "
        f"{[(k.before, len(k.held), k.running) for k in chaos.kills]}; at the pauses (held / "
        f"in handler): {[(len(p.held), p.running) for p in chaos.pauses]}; at the crash: "
        f"{len(crash.pending)} pending, {len(crash.rolled_back)} completion(s) rolled back\n"
        f"  acknowledged: {len(acked)}; in the last {CRASH_WINDOW_S} s before the crash: "
        f"{crash.window}, of which the crash LOST {len(crash.lost)}\n"
        f"  LOST: {len(really_lost)} ({len(beyond)} not explained by the crash); "
        f"DUPLICATED (ran more than once): {len(twice)} (extra runs {extra}, each tied to an "
        f"event that held the job: {dict(causes)}; untied: {len(untied)}); IN TWO STATES: "
        f"{len(two_states) + len(overwritten)} (in two sets: {len(two_states)}; completed, "
        f"then marked active by a stale start: {len(overwritten)})\n"
        f"  handler entries beyond the first: {restarted} (planned retries included); "
        f"never ran: {len(never_ran)}; failed set: {final.failed}\n"
        f"  take-overs reported by a live process: {_logged(chaos, 'taken over by another')}; "
        f"outcomes dropped as stale: {_logged(chaos, 'outcome(s) not recorded')}"
    )
    assert len(all_ids) == JOBS
    assert set(acked) == set(all_ids), "every job is acknowledged by an API"
    assert not early, f"the crash lost jobs acknowledged before its window: {early[:20]}"
    assert not beyond, f"acknowledged jobs not completed: {_describe(final, beyond)}"
    assert not never_ran, f"jobs with no recorded run: {never_ran[:20]}"
    assert not two_states, f"jobs in two states: {[(j, final.sets[j]) for j in two_states[:20]]}"
    assert set(runs) <= set(all_ids)
    assert final.failed == 0
    assert chaos.kills, "no process was killed: the run was too short"
    assert chaos.pauses, "no process was paused: the run was too short"
    assert crash.crash
    assert crash.recovered_in > 0
    assert not untied, "ran again, held by no killed or paused process nor the crash: " + (
        str([(j, runs[j]) for j in untied[:20]])
    )
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
    ledger = Redis.from_url(redis_url)
    try:
        enqueuing = asyncio.create_task(_enqueue_paced(chaos, ledger, jobs, SECONDS))
        # The restart is due halfway whatever happened before: jobs must be enqueued after it.
        await _chaos_loop(chaos, admin, ledger, enqueuing, acts_first=0)
        ids = await enqueuing
        acked = await _acks(ledger, chaos.prefix)
        await _wait_drained(admin, len([j for j, at in acked.items() if at > _back(chaos)]))
        await _wait_settled(chaos)
        elapsed = time.monotonic() - began
        final = await _final(admin, ledger, chaos.prefix, ids)
    finally:
        await admin.aclose()
        await ledger.aclose()

    restart = chaos.outages[0]
    all_ids = [job_id for channel in CHANNELS for job_id in ids[channel]]
    before = [j for j in all_ids if acked[j] < restart.at]
    after = [j for j in all_ids if acked[j] > restart.ended_at]
    runs = final.runs
    lost_before = [j for j in before if runs.get(j, 0) < 1]
    lost_after = [j for j in after if final.states[j] != "completed" or runs.get(j, 0) < 1]
    twice = sorted(j for j, count in runs.items() if count >= 2)
    extra = sum(count - 1 for count in runs.values() if count > 1)
    untied, causes = _untied(chaos, runs)
    two_states = final.two_states(after)
    nogroup = _logged(chaos, NOGROUP)
    print(
        f"\nchaos with an empty Redis restart: {len(all_ids)} jobs over {SECONDS:.0f} s "
        f"through HTTP and gRPC, {len(chaos.kills)} kill(s), {len(chaos.pauses)} pause(s), "
        f"Redis restarted empty (recovered in {restart.recovered_in:.1f} s, "
        f"{len(restart.pending)} pending at the stop), {elapsed:.1f} s in all\n"
        f"  acknowledged before the restart: {len(before)}, LOST {len(lost_before)} (had not "
        f"run: gone with Redis's memory, expected)\n"
        f"  acknowledged after the restart: {len(after)}, LOST {len(lost_after)}; "
        f"IN TWO STATES: {len(two_states)}\n"
        f"  DUPLICATED (ran more than once): {len(twice)} (extra runs {extra}, each tied to an "
        f"event that held the job: {dict(causes)}; untied: {len(untied)})\n"
        f"  consumer groups recreated (NOGROUP reports): {nogroup}; failed set after the "
        f"restart: {final.failed}"
    )
    assert len(before) + len(after) == len(all_ids) == jobs
    assert set(acked) == set(all_ids), "every job is acknowledged by an API"
    assert before
    assert after
    assert not lost_after, (
        f"acknowledged after the restart, not completed: {_describe(final, lost_after)}"
    )
    assert not two_states, [(j, final.sets[j]) for j in two_states[:20]]
    assert final.failed == 0
    assert not untied, "ran again, held by no killed or paused process: " + (
        str([(j, runs[j]) for j in untied[:20]])
    )
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
