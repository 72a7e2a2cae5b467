"""Enqueue jobs into Redis: the producer side, shared by HTTP, gRPC and Python clients.

Jobs are taskiq messages (JSON) on the channel's stream, so any taskiq worker for the
channel's task can run them. A delayed job waits in a sorted set until a worker moves it.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Sequence
from typing import Any

from pydantic import BaseModel
from redis.asyncio import Redis

from runtime.keys import ChannelKeys

__all__ = ["DEFAULT_PREFIX", "Client", "encode_job"]

DEFAULT_PREFIX = "channelkit"


def encode_job(channel: str, payload: BaseModel, job_id: str) -> bytes:
    """The bytes a worker receives: a taskiq message (taskiq.message.TaskiqMessage as JSON)
    calling the channel's task. Written by hand: building the taskiq model first would
    validate and serialise the payload twice on the enqueue hot path."""
    body = payload.model_dump_json(by_alias=True, exclude_unset=True)
    return (
        f'{{"task_id":{json.dumps(job_id)},"task_name":"channelkit.{channel}",'
        f'"labels":{{}},"labels_types":null,"args":[],"kwargs":{{"payload":{body}}}}}'
    ).encode()


class Client:
    """A connection to the Redis that holds the channels, and the key prefix they use."""

    def __init__(self, redis: Redis, *, prefix: str = DEFAULT_PREFIX) -> None:
        self.redis = redis
        self.prefix = prefix

    @classmethod
    def from_url(cls, url: str, *, prefix: str = DEFAULT_PREFIX, **options: Any) -> Client:
        """`redis://`, `rediss://` (TLS) or `unix://` URLs, with user, password and db."""
        return cls(Redis.from_url(url, **options), prefix=prefix)

    def keys(self, channel: str) -> ChannelKeys:
        return ChannelKeys(self.prefix, channel)

    async def close(self) -> None:
        await self.redis.aclose()

    async def __aenter__(self) -> Client:
        return self

    async def __aexit__(self, *_: object) -> None:
        await self.close()

    async def enqueue(
        self,
        channel: str,
        payload: BaseModel,
        *,
        job_id: str | None = None,
        delay_ms: int | None = None,
    ) -> str:
        job_id = job_id or uuid.uuid4().hex
        data = encode_job(channel, payload, job_id)
        keys = self.keys(channel)
        if delay_ms:
            await self.redis.zadd(keys.delayed, {data: time.time() * 1000 + delay_ms})
        else:
            await self.redis.xadd(keys.stream, {b"data": data})
        return job_id

    async def enqueue_many(self, channel: str, payloads: Sequence[BaseModel]) -> list[str]:
        stream = self.keys(channel).stream
        job_ids = [uuid.uuid4().hex for _ in payloads]
        async with self.redis.pipeline(transaction=False) as pipe:
            for job_id, payload in zip(job_ids, payloads, strict=True):
                pipe.xadd(stream, {b"data": encode_job(channel, payload, job_id)})
            await pipe.execute()
        return job_ids
