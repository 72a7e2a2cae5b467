"""Handlers whose effects the delivery tests observe from outside the serving process.

Each appends a JSON event `{"kind", "ch", "id", "pid", "attempt", "t"}` (`t`: time.time()
taken when the handler is entered, before any await) to the list `<PROBE_PREFIX>:events`
in the Redis at `PROBE_REDIS_URL`. One connection per process, opened on first use.

The payloads are typed structurally: the generated package exists only in the tests'
temporary copy of this project, and mypy checks this file without it.
"""

from __future__ import annotations

import asyncio
import json
import os
import time
from typing import Protocol

from pydantic import BaseModel

from runtime import PermanentError
from runtime.engine.connection import RedisClient, connect
from runtime.engine.context import JobContext

__all__ = ["run_behave", "run_mark", "run_noop", "run_sleep", "run_strict"]

_redis: RedisClient | None = None


class Identified(Protocol):
    @property
    def id(self) -> str: ...


class Sleep(Identified, Protocol):
    @property
    def seconds(self) -> float: ...


class Behave(Identified, Protocol):
    @property
    def mode(self) -> object: ...  # the generated enum (its `.value` is the mode's name)

    @property
    def fails(self) -> int | None: ...


class Strict(Identified, Protocol):
    @property
    def mode(self) -> object: ...  # the generated enum: ok, invalid, bad_result


class Reading(BaseModel):
    """What a provider's reply should hold; `run_strict` validates a bad one."""

    count: int


class Numbered(Protocol):
    @property
    def n(self) -> int: ...


def _connection() -> tuple[RedisClient, str]:
    global _redis
    if _redis is None:
        _redis = connect(os.environ["PROBE_REDIS_URL"])
    return _redis, os.environ["PROBE_PREFIX"]


async def _record(kind: str, job: str, context: JobContext, at: float | None = None) -> None:
    redis, prefix = _connection()
    event = {
        "kind": kind,
        "ch": context.channel,
        "id": job,
        "pid": os.getpid(),
        "attempt": context.attempt,
        "t": time.time() if at is None else at,
    }
    await redis.rpush(f"{prefix}:events", json.dumps(event))


async def run_sleep(payload: Sleep, context: JobContext) -> None:
    await _record("start", payload.id, context, time.time())
    await asyncio.sleep(payload.seconds)
    await _record("end", payload.id, context)


async def run_mark(payload: Identified, context: JobContext) -> None:
    await _record("run", payload.id, context, time.time())


async def run_behave(payload: Behave, context: JobContext) -> None:
    await _record("start", payload.id, context, time.time())
    mode = getattr(payload.mode, "value", payload.mode)
    if mode == "flaky" and context.attempt <= (payload.fails or 0):
        raise RuntimeError(f"flaky failure on attempt {context.attempt}")
    if mode == "permanent":
        raise PermanentError(f"permanent failure of {payload.id}")
    if mode == "always":
        raise RuntimeError(f"always fails, attempt {context.attempt}")
    if mode == "flag":
        redis, prefix = _connection()
        if await redis.exists(f"{prefix}:flag:{payload.id}"):
            raise RuntimeError(f"flag set, attempt {context.attempt}")
    await _record("ok", payload.id, context)


async def run_noop(payload: Numbered) -> None:
    return None


async def run_strict(payload: Strict, context: JobContext) -> dict[str, object]:
    """`invalid`: lets the ValidationError of a bad reply through; `bad_result`: returns
    what the channel's result schema rejects (`count` must be an integer)."""
    await _record("start", payload.id, context, time.time())
    mode = getattr(payload.mode, "value", payload.mode)
    if mode == "invalid":
        Reading.model_validate({"count": f"not a number ({payload.id})"})
    if mode == "bad_result":
        return {"count": "many"}
    return {"count": 1}
