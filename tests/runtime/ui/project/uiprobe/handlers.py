"""Handlers of the dashboard's test project. `run_work` raises while the key
`<UI_PROBE_PREFIX>:broken` exists in Redis (its message carries the job's note, so a note
with markup reaches the error shown on the job page); otherwise it sleeps `seconds` and
returns the note.

The payloads are typed structurally: the generated package exists only in the tests'
temporary copy of this project."""

from __future__ import annotations

import asyncio
import os
from typing import Protocol

from redis.asyncio import Redis

__all__ = ["run_idle", "run_work"]


class Work(Protocol):
    @property
    def id(self) -> str: ...

    @property
    def note(self) -> str | None: ...

    @property
    def seconds(self) -> float | None: ...


class Identified(Protocol):
    @property
    def id(self) -> str: ...


class Broken(Exception):
    """The test asked for failures."""


async def run_work(payload: Work) -> dict[str, str]:
    redis = Redis.from_url(os.environ["UI_PROBE_REDIS_URL"])
    async with redis:
        broken = await redis.exists(f"{os.environ['UI_PROBE_PREFIX']}:broken")
    if broken:
        raise Broken(f"could not deliver {payload.note or payload.id}")
    if payload.seconds:
        await asyncio.sleep(payload.seconds)
    return {"note": payload.note or ""}


async def run_idle(payload: Identified) -> None:
    return None
