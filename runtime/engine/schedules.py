"""Schedules: jobs enqueued on a cron expression or a fixed interval (BullMQ's job
schedulers, `Queue.upsertJobScheduler`).

    Schedule        a definition: name, cron or every, time zone, payload, start/end,
                    catch_up, paused (channels.yaml's `schedules:` and the APIs build it)
    ScheduleInfo    a stored schedule as readers see it: its definition, where it came
                    from, next and last run, jobs enqueued
    Schedules       create / list / get / pause / resume / remove, on `Client.schedules`
    ScheduleStore   the Redis side: one hash per schedule and an index per channel,
                    changed only by the schedule_*.lua scripts

Keys (beside the channel's, under its hash tag; runtime.engine.keys):

    <prefix>:{<channel>}:schedules          sorted set: name -> ms it is next due
                                            (+inf while paused or past its end)
    <prefix>:{<channel>}:schedule:<name>    one schedule (a hash, fields below)

Hash fields: spec (the definition as canonical JSON), version (bumped when it changes),
source (config or api), paused (1/0), after (ms: ticks at or before it are taken),
next (ms of the next tick, empty when none), pending and pending_until (a tick taken by
a process and the end of its lease, until its job is confirmed), last_tick,
last_job_id, last_enqueued_at, enqueued (jobs created), error (why the last tick's job
could not be built), created_at, updated_at.

The scheduler loop (runtime.engine.scheduler) turns due ticks into jobs.
"""

from __future__ import annotations

import builtins
import json
import math
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Literal

from pydantic import BaseModel

from runtime.engine.cadence import Cadence, check_timezone
from runtime.engine.clock import now_ms, text
from runtime.engine.connection import RedisClient
from runtime.engine.keys import ChannelKeys
from runtime.engine.redis_errors import redis_errors
from runtime.engine.script_loader import load_script
from runtime.errors import InvalidScheduleError, ScheduleConflict, ScheduleNotFound

__all__ = [
    "CATCH_UP",
    "MAX_SCHEDULE_NAME_LENGTH",
    "Schedule",
    "ScheduleInfo",
    "ScheduleStore",
    "Schedules",
    "check_schedule_name",
    "schedule_job_id",
]

CatchUp = Literal["once", "skip"]
Source = Literal["config", "api"]
CATCH_UP: tuple[CatchUp, ...] = ("once", "skip")
MAX_SCHEDULE_NAME_LENGTH = 100
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")


def check_schedule_name(name: str) -> None:
    if not 1 <= len(name) <= MAX_SCHEDULE_NAME_LENGTH or not _NAME.match(name):
        raise InvalidScheduleError(
            f"name: 1 to {MAX_SCHEDULE_NAME_LENGTH} letters, digits, '_', '-' or '.', "
            f"starting with a letter or digit; got {name!r}"
        )


def schedule_job_id(name: str, tick_ms: int) -> str:
    """The id of the job a tick enqueues: the same in every process, so a tick enqueued
    twice (a process that died before confirming it) is stored once."""
    return f"schedule:{name}:{tick_ms}"


@dataclass(frozen=True, slots=True)
class Schedule:
    """One schedule's definition. `payload` is the job's payload as JSON data, already
    valid for the channel's payload model; times are ms since the epoch."""

    name: str
    payload: Mapping[str, Any]
    cron: str | None = None
    every_ms: int | None = None
    timezone: str = "UTC"
    start_ms: int | None = None
    end_ms: int | None = None
    catch_up: CatchUp = "once"
    paused: bool = False

    def __post_init__(self) -> None:
        """InvalidScheduleError naming the field for anything that cannot tick."""
        check_schedule_name(self.name)
        if self.catch_up not in CATCH_UP:
            raise InvalidScheduleError(f"catch_up: 'once' or 'skip'; got {self.catch_up!r}")
        try:
            check_timezone(self.timezone)
        except ValueError as error:
            raise InvalidScheduleError(f"timezone: {error}") from None
        try:
            self.cadence()
        except ValueError as error:
            message = str(error)
            field_name = "cron" if message.startswith("bad cron") else ""
            raise InvalidScheduleError(
                f"{field_name}: {message}" if field_name else message
            ) from None

    def cadence(self) -> Cadence:
        return Cadence(self.cron, self.every_ms, self.timezone, self.start_ms, self.end_ms)

    def spec_json(self) -> str:
        """The definition as canonical JSON: equal definitions, equal text."""
        return json.dumps(_spec_data(self), sort_keys=True, separators=(",", ":"))

    @classmethod
    def from_spec_json(cls, name: str, spec: str) -> Schedule:
        data = json.loads(spec)
        return cls(name=name, **data)

    @classmethod
    def with_payload(cls, name: str, payload: BaseModel, **definition: Any) -> Schedule:
        """A schedule whose payload is `payload` as the channel's model serialises it."""
        data = json.loads(payload.model_dump_json(by_alias=True, exclude_unset=True))
        return cls(name=name, payload=data, **definition)


def _spec_data(schedule: Schedule) -> dict[str, Any]:
    return {
        "payload": dict(schedule.payload),
        "cron": schedule.cron,
        "every_ms": schedule.every_ms,
        "timezone": schedule.timezone,
        "start_ms": schedule.start_ms,
        "end_ms": schedule.end_ms,
        "catch_up": schedule.catch_up,
        "paused": schedule.paused,
    }


@dataclass(frozen=True, slots=True)
class ScheduleInfo:
    """A stored schedule. `paused` is its state now (`schedule.paused` is as declared);
    `next_run_ms` None: paused, or no tick left before its end."""

    channel: str
    schedule: Schedule
    source: Source
    paused: bool
    next_run_ms: int | None
    last_run_ms: int | None
    last_job_id: str | None
    last_enqueued_at_ms: int | None
    enqueued: int
    created_at_ms: int
    updated_at_ms: int
    error: str | None
    version: str = field(repr=False, default="")
    after_raw: str = field(repr=False, default="0")
    pending_tick_ms: int | None = field(repr=False, default=None)
    pending_until_ms: int | None = field(repr=False, default=None)

    @property
    def name(self) -> str:
        return self.schedule.name

    @classmethod
    def from_hash(cls, channel: str, name: str, raw: Mapping[bytes, bytes]) -> ScheduleInfo:
        values = {text(key): text(value) for key, value in raw.items()}
        paused = values.get("paused") == "1"
        next_tick = _int(values.get("next"))
        return cls(
            channel=channel,
            schedule=Schedule.from_spec_json(name, values["spec"]),
            source="config" if values.get("source") == "config" else "api",
            paused=paused,
            next_run_ms=None if paused else next_tick,
            last_run_ms=_int(values.get("last_tick")),
            last_job_id=values.get("last_job_id") or None,
            last_enqueued_at_ms=_int(values.get("last_enqueued_at")),
            enqueued=_int(values.get("enqueued")) or 0,
            created_at_ms=_int(values.get("created_at")) or 0,
            updated_at_ms=_int(values.get("updated_at")) or 0,
            error=values.get("error") or None,
            version=values.get("version", ""),
            after_raw=values.get("after", "0"),
            pending_tick_ms=_int(values.get("pending")),
            pending_until_ms=_int(values.get("pending_until")),
        )

    @property
    def after_ms(self) -> int:
        return int(float(self.after_raw))

    def to_dict(self) -> dict[str, Any]:
        """As JSON data (what HTTP and the CLI show); times as ISO 8601 UTC."""
        schedule = self.schedule
        return {
            "name": schedule.name,
            "channel": self.channel,
            "cron": schedule.cron,
            "every_ms": schedule.every_ms,
            "timezone": schedule.timezone,
            "payload": dict(schedule.payload),
            "start": _iso(schedule.start_ms),
            "end": _iso(schedule.end_ms),
            "catch_up": schedule.catch_up,
            "paused": self.paused,
            "source": self.source,
            "next_run": _iso(self.next_run_ms),
            "last_run": _iso(self.last_run_ms),
            "last_job_id": self.last_job_id,
            "enqueued": self.enqueued,
            "error": self.error,
        }


def _int(value: str | None) -> int | None:
    if value is None or value == "":
        return None
    number = float(value)
    return None if math.isinf(number) else int(number)


def _iso(ms: int | None) -> str | None:
    if ms is None:
        return None
    return datetime.fromtimestamp(ms / 1000, tz=UTC).isoformat()


def _arg(value: int | None) -> str:
    return "" if value is None else str(value)


class ScheduleStore:
    """The schedule scripts on one Redis connection, bound to nothing: every call names
    its channel's keys."""

    def __init__(self, redis: RedisClient, prefix: str) -> None:
        self.redis = redis
        self.prefix = prefix
        self._upsert = redis.register_script(load_script("schedule_upsert"))
        self._advance = redis.register_script(load_script("schedule_advance"))
        self._recover = redis.register_script(load_script("schedule_recover"))
        self._done = redis.register_script(load_script("schedule_done"))
        self._pause = redis.register_script(load_script("schedule_pause"))
        self._remove = redis.register_script(load_script("schedule_remove"))

    def index_key(self, channel: str) -> str:
        return ChannelKeys(self.prefix, channel).base + "schedules"

    @property
    def changes_key(self) -> str:
        """Counts schedule creations and resumes by any process: a scheduler that sees it
        move looks at channels it had found without schedules at once."""
        return f"{self.prefix}:schedules-changed"

    async def mark_changed(self) -> None:
        await self.redis.incr(self.changes_key)

    def hash_key(self, channel: str, name: str) -> str:
        return ChannelKeys(self.prefix, channel).base + "schedule:" + name

    def _keys(self, channel: str, name: str) -> list[str]:
        return [self.index_key(channel), self.hash_key(channel, name)]

    async def read(self, channel: str, name: str) -> ScheduleInfo | None:
        raw: dict[bytes, bytes] = await self.redis.hgetall(self.hash_key(channel, name))  # type: ignore[assignment]
        if not raw or b"spec" not in raw:
            return None
        return ScheduleInfo.from_hash(channel, name, raw)

    async def names(self, channel: str) -> list[str]:
        raw: list[bytes] = await self.redis.zrange(self.index_key(channel), 0, -1)  # type: ignore[assignment]
        return sorted(text(name) for name in raw)

    async def read_many(self, channel: str, names: Sequence[str]) -> list[ScheduleInfo]:
        async with self.redis.pipeline(transaction=False) as pipe:
            for name in names:
                pipe.hgetall(self.hash_key(channel, name))
            hashes: list[dict[bytes, bytes]] = await pipe.execute()
        return [
            ScheduleInfo.from_hash(channel, name, raw)
            for name, raw in zip(names, hashes, strict=True)
            if raw and b"spec" in raw
        ]

    async def upsert(self, channel: str, schedule: Schedule, source: Source, now: int) -> int:
        """0 unchanged, 1 created, 2 changed."""
        next_tick = schedule.cadence().next_after(now)
        args: list[str | int] = [
            schedule.name,
            schedule.spec_json(),
            source,
            "1" if schedule.paused else "0",
            now,
            _arg(next_tick),
        ]
        return int(await self._upsert(keys=self._keys(channel, schedule.name), args=args))

    async def advance(
        self,
        info: ScheduleInfo,
        *,
        new_after: int,
        next_tick: int | None,
        enqueue_tick: int | None,
        now: int,
        lease_ms: int,
    ) -> bool:
        args: list[str | int] = [
            info.name,
            info.version,
            info.after_raw,
            new_after,
            now,
            lease_ms,
            _arg(next_tick),
            _arg(enqueue_tick),
        ]
        return bool(await self._advance(keys=self._keys(info.channel, info.name), args=args))

    async def recover(self, info: ScheduleInfo, tick: int, now: int, lease_ms: int) -> bool:
        args: list[str | int] = [info.name, tick, now, lease_ms]
        return bool(await self._recover(keys=self._keys(info.channel, info.name), args=args))

    async def done(
        self, info: ScheduleInfo, tick: int, job_id: str, *, created: bool, now: int, error: str
    ) -> bool:
        args: list[str | int] = [info.name, tick, job_id, "1" if created else "0", now, error]
        return bool(await self._done(keys=self._keys(info.channel, info.name), args=args))

    async def set_paused(
        self, channel: str, name: str, paused: bool, now: int, next_tick: int | None
    ) -> bool:
        args: list[str | int] = [name, "1" if paused else "0", now, _arg(next_tick)]
        return bool(await self._pause(keys=self._keys(channel, name), args=args))

    async def remove(self, channel: str, name: str) -> bool:
        return bool(await self._remove(keys=self._keys(channel, name), args=[name]))


class Schedules:
    """Schedules at runtime, as `Client.schedules`. Each method names its channel; payloads
    are the channel's payload model (validated by whoever built it: HTTP, gRPC, the CLI
    and the generated registry all build it with the channel's model).

    Raises InvalidScheduleError (a bad name, cron, time zone, interval), ScheduleNotFound,
    ScheduleConflict (changing through the API a schedule that channels.yaml declares),
    RedisUnavailable.
    """

    def __init__(self, redis: RedisClient, prefix: str) -> None:
        self.store = ScheduleStore(redis, prefix)
        self._listeners: list[Callable[[str], None]] = []

    def on_change(self, listener: Callable[[str], None]) -> None:
        """Call `listener(channel)` after this process changed a schedule of `channel`
        (the scheduler loop wakes up for it)."""
        self._listeners.append(listener)

    def _changed(self, channel: str) -> None:
        for listener in self._listeners:
            listener(channel)

    async def upsert(
        self, channel: str, schedule: Schedule, *, source: Source = "api"
    ) -> ScheduleInfo:
        """Create `schedule`, or change the stored one of its name (an unchanged definition
        keeps its history and pause state). Returns it as stored."""
        with redis_errors():
            if source == "api":
                found = await self.store.read(channel, schedule.name)
                if found is not None and found.source == "config":
                    raise ScheduleConflict(
                        channel,
                        schedule.name,
                        "is declared in channels.yaml; change it there (pause and resume "
                        "work on it at runtime)",
                    )
            await self.store.upsert(channel, schedule, source, now_ms())
            await self.store.mark_changed()
            info = await self.store.read(channel, schedule.name)
        self._changed(channel)
        if info is None:  # removed in between by another caller
            raise ScheduleNotFound(channel, schedule.name)
        return info

    async def get(self, channel: str, name: str) -> ScheduleInfo:
        check_schedule_name(name)
        with redis_errors():
            info = await self.store.read(channel, name)
        if info is None:
            raise ScheduleNotFound(channel, name)
        return info

    async def list(self, channel: str) -> Sequence[ScheduleInfo]:
        """Every schedule of `channel`, by name."""
        with redis_errors():
            return await self.store.read_many(channel, await self.store.names(channel))

    async def pause(self, channel: str, name: str) -> ScheduleInfo:
        """Enqueue nothing until resumed (cluster-wide; survives restarts)."""
        return await self._set_paused(channel, name, paused=True)

    async def resume(self, channel: str, name: str) -> ScheduleInfo:
        """Go on from now: ticks that fell while paused are not enqueued."""
        return await self._set_paused(channel, name, paused=False)

    async def _set_paused(self, channel: str, name: str, *, paused: bool) -> ScheduleInfo:
        info = await self.get(channel, name)
        now = now_ms()
        next_tick = None if paused else info.schedule.cadence().next_after(max(info.after_ms, now))
        with redis_errors():
            if not await self.store.set_paused(channel, name, paused, now, next_tick):
                raise ScheduleNotFound(channel, name)
            if not paused:
                await self.store.mark_changed()
        self._changed(channel)
        return await self.get(channel, name)

    async def remove(self, channel: str, name: str) -> None:
        """Remove a schedule; the jobs it enqueued stay."""
        check_schedule_name(name)
        with redis_errors():
            found = await self.store.read(channel, name)
            if found is not None and found.source == "config":
                raise ScheduleConflict(
                    channel,
                    name,
                    "is declared in channels.yaml; remove it there (it would come back at the "
                    "next start), or pause it",
                )
            if not await self.store.remove(channel, name):
                raise ScheduleNotFound(channel, name)
        self._changed(channel)

    async def sync_declared(
        self, channel: str, schedules: Iterable[Schedule]
    ) -> tuple[builtins.list[str], builtins.list[str]]:
        """Make the channel's channels.yaml schedules the stored ones: upsert each, remove
        the config schedules no longer declared (API-created ones are kept). Returns
        (names created or changed, names removed)."""
        declared = {schedule.name: schedule for schedule in schedules}
        changed: builtins.list[str] = []
        removed: builtins.list[str] = []
        now = now_ms()
        with redis_errors():
            for schedule in declared.values():
                if await self.store.upsert(channel, schedule, "config", now):
                    changed.append(schedule.name)
            for info in await self.store.read_many(channel, await self.store.names(channel)):
                if info.source == "config" and info.name not in declared:
                    await self.store.remove(channel, info.name)
                    removed.append(info.name)
        if changed or removed:
            self._changed(channel)
        return changed, removed
