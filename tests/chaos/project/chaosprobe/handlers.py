"""The chaos project's handler: a no-op that records every run in Redis.

When a run starts: SADD `<prefix>:running:<pid>` and HINCRBY `<prefix>:starts` by the job
id. When it ends well: one MULTI that SREMs it from the running set, HINCRBYs
`<prefix>:runs` and RPUSHes `<channel>:<id>:<pid>` to `<prefix>:log`. Every 37th job
(`n % 37 == 0`) fails its first attempt, so retries run under the chaos too. A short
random sleep keeps jobs in flight when a process is killed; it is drawn from
`CHAOS_SEED`, the job id and the attempt, so a run replayed with the same seed sleeps the
same.

`CHAOS_REDIS_URL` and `CHAOS_PREFIX` say where to record; one connection per process.
The payload is typed structurally: the generated package exists only in the test's
temporary copy of this project.
"""

from __future__ import annotations

import asyncio
import os
import random
from typing import Protocol

from runtime.engine.connection import RedisClient, connect
from runtime.engine.context import JobContext

__all__ = ["run"]

_redis: RedisClient | None = None


class Numbered(Protocol):
    @property
    def id(self) -> str: ...

    @property
    def n(self) -> int: ...


def _connection() -> tuple[RedisClient, str]:
    global _redis
    if _redis is None:
        _redis = connect(os.environ["CHAOS_REDIS_URL"])
    return _redis, os.environ["CHAOS_PREFIX"]


async def run(payload: Numbered, context: JobContext) -> None:
    redis, prefix = _connection()
    pid = os.getpid()
    running = f"{prefix}:running:{pid}"
    async with redis.pipeline(transaction=True) as pipe:
        pipe.sadd(running, payload.id)
        pipe.hincrby(f"{prefix}:starts", payload.id, 1)
        await pipe.execute()
    seed = f"{os.environ.get('CHAOS_SEED', '')}:{payload.id}:{context.attempt}"
    await asyncio.sleep(random.Random(seed).uniform(0.0, 0.1))
    if payload.n % 37 == 0 and context.attempt == 1:
        await redis.srem(running, payload.id)
        raise RuntimeError(f"planned failure of job {payload.id} on its first attempt")
    async with redis.pipeline(transaction=True) as pipe:
        pipe.srem(running, payload.id)
        pipe.hincrby(f"{prefix}:runs", payload.id, 1)
        pipe.rpush(f"{prefix}:log", f"{context.channel}:{payload.id}:{pid}")
        await pipe.execute()
