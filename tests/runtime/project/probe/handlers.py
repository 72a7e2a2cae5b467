"""Handlers whose effects the tests observe from outside the serving process.

Each reads `PROBE_REDIS_URL` and `PROBE_PREFIX` when it runs and appends
`"<kind>:<job id>:<pid>"` to the list `{prefix}:events`; `run_slow` appends `start:` and
`end:` entries and keeps a gauge of how many run at once (`{prefix}:running`) with its
maximum (`{prefix}:max_running`).

The payloads are typed structurally: the generated package exists only in the tests'
temporary copy of this project, and mypy checks this file without it.
"""

from __future__ import annotations

import asyncio
import os
from typing import Any, Literal, Protocol

import httpx

from runtime import JobContext, RetryAfter
from runtime.engine.connection import RedisClient, connect

__all__ = ["run_fast", "run_other", "run_provider", "run_slow"]

# Count one more running job, raise the maximum if needed and log the start, atomically.
_ENTER = """
local now = redis.call('INCR', KEYS[1])
local top = tonumber(redis.call('GET', KEYS[2]) or '0')
if now > top then redis.call('SET', KEYS[2], now) end
redis.call('RPUSH', KEYS[3], ARGV[1])
return now
"""


class Identified(Protocol):
    @property
    def id(self) -> str: ...


class Sleep(Identified, Protocol):
    @property
    def seconds(self) -> float: ...


class ProviderCall(Identified, Protocol):
    @property
    def url(self) -> str: ...

    @property
    def scope(self) -> Any: ...  # the generated enum: job, channel or key


def _connect() -> tuple[RedisClient, str]:
    return connect(os.environ["PROBE_REDIS_URL"]), os.environ["PROBE_PREFIX"]


async def _record(kind: str, job: str) -> None:
    redis, prefix = _connect()
    async with redis:
        await redis.rpush(f"{prefix}:events", f"{kind}:{job}:{os.getpid()}")


async def run_slow(payload: Sleep, context: JobContext) -> None:
    redis, prefix = _connect()
    running, top, events = f"{prefix}:running", f"{prefix}:max_running", f"{prefix}:events"
    async with redis:
        await redis.eval(_ENTER, 3, running, top, events, f"start:{payload.id}:{os.getpid()}")
        await context.progress({"stage": "sleeping", "seconds": payload.seconds})
        try:
            await asyncio.sleep(payload.seconds)
        finally:
            async with redis.pipeline(transaction=True) as pipe:
                pipe.decr(running)
                pipe.rpush(events, f"end:{payload.id}:{os.getpid()}")
                await pipe.execute()


async def run_fast(payload: Identified) -> None:
    await _record("fast", payload.id)


async def run_other(payload: Identified) -> None:
    await _record("other", payload.id)


async def run_provider(payload: ProviderCall) -> None:
    """A provider that may answer 429 Too Many Requests with Retry-After (seconds)."""
    async with httpx.AsyncClient(timeout=5) as http:
        response = await http.post(payload.url, json={"id": payload.id})
    if response.status_code == 429:
        scope: Literal["job", "channel", "key"] = getattr(payload.scope, "value", payload.scope)
        raise RetryAfter(float(response.headers["Retry-After"]), scope=scope)
    response.raise_for_status()
    await _record("provider", payload.id)
