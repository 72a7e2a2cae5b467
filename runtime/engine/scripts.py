"""Typed Python calls of the Lua scripts that change job state, each atomic and each for
a whole batch.

The scripts live in `runtime/engine/lua/*.lua`, one per file, each opening with its
KEYS, ARGV and return value; `script_loader` resolves their includes. `ScriptSet`
registers every script once per Redis connection; `ChannelScripts` binds them to one
channel's keys and turns arguments and replies into typed records.

Every state change a job goes through (enqueued, taken, started, finished, retried,
failed, cancelled, reclaimed, moved when due, retried from the failed set) is one script
call for many jobs: the receive path pays Redis round trips per batch, not per job. All keys of a
channel share its hash tag, so the scripts stay legal in Redis Cluster.

Job hash fields: state, priority, attempts (runs started), failures, enqueued_at,
started_at, finished_at, due_at (ms since the epoch), result (JSON), error (a `JobError`
as JSON), errors (JSON list of the last 10), progress (JSON) and progress_at, cancel
(set while a cancellation waits for the worker), data (the message; kept until a worker
takes the job, and again while delayed and once failed or cancelled, so the job can run
again).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, ClassVar, Literal, Protocol

from redis.commands.core import AsyncScript

from runtime.engine.clock import text
from runtime.engine.connection import RedisClient
from runtime.engine.jobs import JobError
from runtime.engine.keys import CONSUMER_GROUP, ChannelKeys, cancel_channel
from runtime.engine.limits import DEFAULT_PRIORITY
from runtime.engine.outcomes import Outcome, encode_outcomes
from runtime.engine.script_loader import load_script

__all__ = [
    "PAUSED",
    "BulkOperation",
    "Cancellation",
    "ChannelScripts",
    "Claim",
    "HeldJob",
    "NewJob",
    "RateLimit",
    "Reclaimed",
    "Retention",
    "RunNumbers",
    "ScriptSet",
    "Started",
    "StreamEntry",
    "Taken",
    "Transition",
]

BulkOperation = Literal["retry_failed", "discard_failed", "cancel_waiting", "cancel_delayed"]
PAUSED = -1  # Taken.hold of a paused channel


@dataclass(slots=True)  # one per job: not frozen, which costs 3x to create
class NewJob:
    """A job to enqueue: its id, its message, how long it waits first (0: none) and its
    priority (1 starts first)."""

    job_id: str
    message: bytes
    delay_ms: int = 0
    priority: int = DEFAULT_PRIORITY


@dataclass(slots=True)  # one per job: not frozen, which costs 3x to create
class StreamEntry:
    """A message as read from a channel's stream, and how often it was delivered: the
    claim a run holds, which finish.lua checks before it records an outcome."""

    stream_id: str
    message: bytes
    deliveries: int = 1


@dataclass(frozen=True, slots=True)
class RateLimit:
    """One grant request: the window of `group` (None: the channel's global window), its
    length, the most starts it allows, and a token naming this grant."""

    group: str | None
    window_ms: int
    max: int
    token: str


@dataclass(slots=True)  # one per job: not frozen, which costs 3x to create
class RunNumbers:
    """A started job's run: `attempt` counts runs started (from 1), `failures` the failed
    ones before it."""

    attempt: int
    failures: int


class Claim(Protocol):
    """A job read from the stream by this consumer: start.lua starts it only while the
    entry is still pending for this consumer with this delivery count."""

    @property
    def job_id(self) -> str: ...

    @property
    def stream_id(self) -> str: ...

    @property
    def delivery(self) -> int: ...


@dataclass(frozen=True, slots=True)
class Taken:
    """What take.lua gave this consumer: entries to start in order, when the next delayed
    job is due (None: none is), and why nothing was taken when the channel holds still
    (`hold`: 0 it does not, PAUSED, or the ms a RetryAfter holds it back)."""

    entries: list[StreamEntry]
    next_due_ms: int | None
    hold: int


@dataclass(frozen=True, slots=True)
class Started:
    """What start.lua did with a batch: the jobs at `dropped` (0-based positions) were not
    started, their claim lost; those at `cancelled` were cancelled before they started;
    of the others, the first `granted` started (their runs in `runs`), the rest wait
    `wait_ms` for the rate limit; `used` grants are in its window."""

    granted: int
    wait_ms: int
    runs: list[RunNumbers]
    used: int
    dropped: list[int]
    cancelled: list[int]


class HeldJob(Claim, Protocol):
    """A claim with its message: what requeue.lua gives back to the waiting set."""

    @property
    def message(self) -> bytes: ...


@dataclass(frozen=True, slots=True)
class Cancellation:
    """What cancel.lua did: `outcome` CANCELLED, REQUESTED (a worker has the job and is
    told to stop it) or 0 refused; the state the job was found in ('' no such job)."""

    CANCELLED: ClassVar[int] = 1
    REQUESTED: ClassVar[int] = 2

    outcome: int
    state: str


@dataclass(frozen=True, slots=True)
class Reclaimed:
    """Jobs this consumer took over, and how many stalled too often and went to the
    failed set instead."""

    entries: list[StreamEntry]
    failed: int


@dataclass(frozen=True, slots=True)
class Transition:
    """Whether a job operation happened, and the state the job was found in ('' when
    there is no such job)."""

    done: bool
    state: str


@dataclass(frozen=True, slots=True)
class Retention:
    """How many finished jobs to keep and for how long: count -1 and age 0 mean no bound."""

    completed_count: int
    completed_age_ms: int
    failed_count: int
    failed_age_ms: int

    def argv(self) -> tuple[int, int, int, int]:
        return (
            self.completed_count,
            self.completed_age_ms,
            self.failed_count,
            self.failed_age_ms,
        )


class ScriptSet:
    """Every script registered once on one Redis connection (pool); channels share it.

    redis-py sends EVALSHA and loads a script on NOSCRIPT by itself, so a restarted or
    flushed Redis gets the scripts back on first use. On a cluster, EVALSHA goes to the
    primary of its keys' slot, and the load after NOSCRIPT goes to every primary: a
    replica promoted by a failover gets the scripts on its first call.
    """

    def __init__(self, redis: RedisClient) -> None:
        self.enqueue = redis.register_script(load_script("enqueue"))
        self.take = redis.register_script(load_script("take"))
        self.start = redis.register_script(load_script("start"))
        self.finish = redis.register_script(load_script("finish"))
        self.reclaim = redis.register_script(load_script("reclaim"))
        self.heartbeat = redis.register_script(load_script("heartbeat"))
        self.requeue = redis.register_script(load_script("requeue"))
        self.limit = redis.register_script(load_script("limit"))
        self.restamp = redis.register_script(load_script("restamp"))
        self.retry_failed = redis.register_script(load_script("retry_failed"))
        self.discard = redis.register_script(load_script("discard"))
        self.cancel = redis.register_script(load_script("cancel"))
        self.bulk = redis.register_script(load_script("bulk"))
        self.progress = redis.register_script(load_script("progress"))
        self.pause = redis.register_script(load_script("pause"))


class ChannelScripts:
    """The scripts bound to one channel's keys."""

    def __init__(self, scripts: ScriptSet, keys: ChannelKeys) -> None:
        self.keys = keys
        self._scripts = scripts
        k = keys
        # every script that changes a job's state appends its events (include/events.lua)
        self._events = [k.events, k.meta]
        self._enqueue_keys = [k.waiting, k.delayed, k.sequence, k.marker, *self._events]
        self._take_keys = [k.stream, k.waiting, k.delayed, k.sequence, k.marker, k.paused]
        self._take_keys += [k.backoff(), *self._events]
        self._finish_keys = [k.stream, k.delayed, k.completed, k.failed, k.cancelled]
        self._finish_keys += [k.marker, k.backoff(), *self._events]
        self._bulk_keys = [k.waiting, k.delayed, k.failed, k.cancelled, k.sequence, k.marker]
        self._bulk_keys += self._events

    async def enqueue(self, jobs: Sequence[NewJob], now_ms: int) -> list[bool]:
        """One flag per job: False where its id existed already (nothing written)."""
        args: list[Any] = [self.keys.job_prefix, now_ms]
        for job in jobs:
            args += (job.job_id, job.message, job.delay_ms, job.priority)
        created = await _call(self._scripts.enqueue, self._enqueue_keys, args)
        return [bool(flag) for flag in created]

    async def take(self, consumer: str, now_ms: int, most: int, most_moved: int) -> Taken:
        """Up to `most` jobs for `consumer`, highest priority first (due delayed jobs,
        at most `most_moved`, join the waiting ones first)."""
        entries, next_due, hold = await _call(
            self._scripts.take,
            self._take_keys,
            [
                self.keys.job_prefix,
                CONSUMER_GROUP,
                consumer,
                now_ms,
                most,
                most_moved,
                DEFAULT_PRIORITY,
            ],
        )
        return Taken(
            entries=[StreamEntry(text(sid), bytes(data)) for sid, data in entries],
            next_due_ms=int(next_due) if next_due else None,
            hold=int(hold),
        )

    def _limit_keys(self, limit: RateLimit) -> list[str]:
        return [self.keys.limiter(limit.group), self.keys.limiter_total(limit.group)]

    async def start(
        self,
        consumer: str,
        claims: Sequence[Claim],
        now_ms: int,
        limit: RateLimit | None = None,
    ) -> Started:
        """Start, in order, the claimed jobs `consumer` still holds, as many as `limit`
        allows (all without one)."""
        keys = [self.keys.stream, self.keys.cancelled, self.keys.paused]
        if limit is not None:
            keys += self._limit_keys(limit)
        keys += self._events
        window, max_starts, token = (
            (0, 0, "") if limit is None else (limit.window_ms, limit.max, limit.token)
        )
        args: list[Any] = [
            self.keys.job_prefix,
            now_ms,
            window,
            max_starts,
            token,
            CONSUMER_GROUP,
            consumer,
        ]
        for claim in claims:
            args += (claim.job_id, claim.stream_id, claim.delivery)
        granted, wait, rows, used, dropped, cancelled = await _call(self._scripts.start, keys, args)
        return Started(
            granted=int(granted),
            wait_ms=int(wait),
            runs=[RunNumbers(int(attempt), int(failures)) for attempt, failures in rows],
            used=int(used),
            dropped=[int(position) - 1 for position in dropped],
            cancelled=[int(position) - 1 for position in cancelled],
        )

    async def finish(
        self, consumer: str, outcomes: Sequence[Outcome], now_ms: int, keep: Retention
    ) -> list[Outcome]:
        """Record the outcomes whose claim `consumer` still holds, ack their messages and
        apply retention (also with no outcome). Returns the outcomes dropped because
        another run holds the claim now."""
        args: list[Any] = [self.keys.job_prefix, CONSUMER_GROUP, now_ms, *keep.argv(), consumer]
        args += encode_outcomes(outcomes)
        positions = await _call(self._scripts.finish, self._finish_keys, args)
        return [outcomes[int(position) - 1] for position in positions]

    async def reclaim(
        self,
        consumer: str,
        *,
        min_idle_ms: int,
        count: int,
        max_stalled: int,
        now_ms: int,
        error: JobError,
    ) -> Reclaimed:
        rows, failed = await _call(
            self._scripts.reclaim,
            [self.keys.stream, self.keys.failed, self.keys.paused, *self._events],
            [
                self.keys.job_prefix,
                CONSUMER_GROUP,
                consumer,
                min_idle_ms,
                count,
                max_stalled,
                now_ms,
                error.to_json(),
            ],
        )
        return Reclaimed(
            entries=[
                StreamEntry(text(sid), bytes(data), int(delivered)) for sid, data, delivered in rows
            ],
            failed=int(failed),
        )

    async def heartbeat(self, consumer: str, stream_ids: Sequence[str]) -> list[str]:
        """Refresh the claim on `stream_ids`; returns those another process took over."""
        lost = await _call(
            self._scripts.heartbeat, [self.keys.stream], [CONSUMER_GROUP, consumer, *stream_ids]
        )
        return [text(sid) for sid in lost]

    async def requeue(self, consumer: str, claims: Sequence[HeldJob]) -> int:
        """Give jobs `consumer` took but did not start back to the waiting set; returns
        how many (those whose claim it still held)."""
        k = self.keys
        args: list[Any] = [CONSUMER_GROUP, consumer, k.job_prefix, DEFAULT_PRIORITY]
        for claim in claims:
            args += (claim.stream_id, claim.delivery, claim.job_id, claim.message)
        keys = [k.stream, k.waiting, k.sequence, k.marker]
        return int(await _call(self._scripts.requeue, keys, args))

    async def limit(self, limit: RateLimit, wanted: int) -> tuple[int, int]:
        """(granted, wait ms until the next grant is possible) for `wanted` starts; none
        while a RetryAfter holds the group back."""
        granted, wait = await _call(
            self._scripts.limit,
            [*self._limit_keys(limit), self.keys.backoff(limit.group)],
            [limit.window_ms, limit.max, wanted, limit.token],
        )
        return int(granted), int(wait)

    async def restamp(self, limit: RateLimit, granted: int) -> None:
        """Date the grant made with `limit.token` to now (see restamp.lua)."""
        await _call(
            self._scripts.restamp, self._limit_keys(limit), [limit.window_ms, limit.token, granted]
        )

    async def retry_failed(self, job_id: str) -> Transition:
        k = self.keys
        done, state = await _call(
            self._scripts.retry_failed,
            [k.waiting, k.sequence, k.marker, k.failed, k.cancelled, *self._events],
            [k.job_prefix, job_id, DEFAULT_PRIORITY],
        )
        return Transition(bool(done), text(state))

    async def discard(self, job_id: str) -> Transition:
        k = self.keys
        keys = [k.delayed, k.completed, k.failed, k.cancelled, *self._events]
        done, state = await _call(self._scripts.discard, keys, [k.job_prefix, job_id])
        return Transition(bool(done), text(state))

    async def cancel(self, job_id: str, now_ms: int) -> Cancellation:
        k = self.keys
        outcome, state = await _call(
            self._scripts.cancel,
            [k.waiting, k.delayed, k.cancelled, *self._events],
            [k.job_prefix, job_id, now_ms, cancel_channel(k.prefix), k.channel],
        )
        return Cancellation(int(outcome), text(state))

    async def bulk(self, operation: BulkOperation, most: int, now_ms: int) -> int:
        """One step of `operation` on at most `most` jobs; returns how many it changed."""
        args = [self.keys.job_prefix, operation, most, now_ms, DEFAULT_PRIORITY]
        return int(await _call(self._scripts.bulk, self._bulk_keys, args))

    async def progress(self, consumer: str, claim: Claim, value_json: str, now_ms: int) -> bool:
        """Store a running job's progress while `consumer` holds its claim."""
        keys = [self.keys.stream, self.keys.job(claim.job_id), *self._events]
        args = [
            CONSUMER_GROUP,
            consumer,
            claim.stream_id,
            claim.delivery,
            claim.job_id,
            value_json,
            now_ms,
        ]
        return bool(await _call(self._scripts.progress, keys, args))

    async def pause(self, paused: bool, now_ms: int) -> bool:
        """Pause (or resume) the channel; False when it was so already."""
        keys = [self.keys.paused, self.keys.marker, *self._events]
        mode = "pause" if paused else "resume"
        return bool(await _call(self._scripts.pause, keys, [mode, now_ms]))


async def _call(script: AsyncScript, keys: list[str], args: list[Any]) -> Any:
    return await script(keys=keys, args=args)
