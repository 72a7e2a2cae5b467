"""The live `runtime serve` processes: each writes a heartbeat record that expires.

    <prefix>:processes:{registry}:index        sorted set: process id → last heartbeat ms
    <prefix>:processes:{registry}:process:<id> hash: the process's `ProcessInfo`, with a TTL

Every key shares the `{registry}` hash tag, so each command and pipeline stays in one
Redis Cluster slot. The keys cannot meet a channel's (those are `<prefix>:{<name>}:...`).
A process that stops cleanly removes its record; one that dies stops heartbeating, its
hash expires after `ttl_ms`, and readers skip (and the next heartbeat prunes) its entry
in the index.
"""

from __future__ import annotations

import json
import logging
import os
import socket
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from importlib import metadata
from typing import Any

from redis.exceptions import RedisError

from runtime.engine.clock import now_ms, text
from runtime.engine.connection import RedisClient
from runtime.engine.loop import BackgroundLoop

__all__ = ["HEARTBEAT_MS", "ProcessHeartbeat", "ProcessInfo", "ProcessKeys", "live_processes"]

logger = logging.getLogger("channelkit.processes")

HEARTBEAT_MS = 5_000
# A record lives three heartbeats: one late beat (a busy loop, a slow Redis) is no death.
TTL_BEATS = 3
LIST_MOST = 1_000  # processes a listing returns at most


def channelkit_version() -> str:
    try:
        return metadata.version("channelkit")
    except metadata.PackageNotFoundError:
        return "unknown"


@dataclass(frozen=True, slots=True)
class ProcessKeys:
    prefix: str

    @property
    def base(self) -> str:
        return f"{self.prefix}:processes:{{registry}}:"

    @property
    def index(self) -> str:
        return self.base + "index"

    def process(self, process_id: str) -> str:
        return self.base + "process:" + process_id


@dataclass(frozen=True, slots=True)
class ProcessInfo:
    """One `runtime serve` process as it last described itself."""

    id: str
    host: str
    pid: int
    version: str
    app: str
    started_at: datetime
    heartbeat_at: datetime
    worker_channels: list[str] = field(default_factory=list)
    http: str = ""  # host:port, '' when the HTTP API is off
    grpc: str = ""
    running_jobs: int = 0

    def to_hash(self) -> dict[str, str]:
        return {
            "id": self.id,
            "host": self.host,
            "pid": str(self.pid),
            "version": self.version,
            "app": self.app,
            "started_at": str(_ms(self.started_at)),
            "heartbeat_at": str(_ms(self.heartbeat_at)),
            "worker_channels": json.dumps(self.worker_channels),
            "http": self.http,
            "grpc": self.grpc,
            "running_jobs": str(self.running_jobs),
        }

    @classmethod
    def from_hash(cls, raw: dict[bytes, bytes]) -> ProcessInfo:
        values = {text(key): text(value) for key, value in raw.items()}
        try:
            channels = json.loads(values.get("worker_channels") or "[]")
        except ValueError:
            channels = []
        return cls(
            id=values.get("id", ""),
            host=values.get("host", ""),
            pid=_int(values.get("pid")),
            version=values.get("version", ""),
            app=values.get("app", ""),
            started_at=_time(values.get("started_at")),
            heartbeat_at=_time(values.get("heartbeat_at")),
            worker_channels=[str(name) for name in channels] if isinstance(channels, list) else [],
            http=values.get("http", ""),
            grpc=values.get("grpc", ""),
            running_jobs=_int(values.get("running_jobs")),
        )

    def as_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "host": self.host,
            "pid": self.pid,
            "version": self.version,
            "app": self.app,
            "started_at": self.started_at.isoformat(),
            "heartbeat_at": self.heartbeat_at.isoformat(),
            "worker_channels": list(self.worker_channels),
            "http": self.http,
            "grpc": self.grpc,
            "running_jobs": self.running_jobs,
        }


def _ms(moment: datetime) -> int:
    return int(moment.timestamp() * 1000)


def _int(value: str | None) -> int:
    try:
        return int(value or 0)
    except ValueError:
        return 0


def _time(value: str | None) -> datetime:
    return datetime.fromtimestamp(_int(value) / 1000, UTC)


async def live_processes(
    redis: RedisClient, prefix: str, *, ttl_ms: int = HEARTBEAT_MS * TTL_BEATS
) -> list[ProcessInfo]:
    """Processes that heartbeated within `ttl_ms`, oldest start first. Two round trips:
    the index by score, then the records (a pipeline in the same slot)."""
    keys = ProcessKeys(prefix)
    ids: list[bytes] = await redis.zrangebyscore(  # type: ignore[assignment]
        keys.index, now_ms() - ttl_ms, "+inf", start=0, num=LIST_MOST
    )
    if not ids:
        return []
    async with redis.pipeline(transaction=False) as pipe:
        for process_id in ids:
            pipe.hgetall(keys.process(text(process_id)))
        records: list[dict[bytes, bytes]] = await pipe.execute()
    found = [ProcessInfo.from_hash(raw) for raw in records if raw]
    return sorted(found, key=lambda info: (info.started_at, info.id))


class ProcessHeartbeat(BackgroundLoop):
    """Writes this process's record every `interval_ms`; removes it on stop."""

    def __init__(
        self,
        redis: RedisClient,
        prefix: str,
        process_id: str,
        *,
        app: str,
        worker_channels: Sequence[str] = (),
        http: str = "",
        grpc: str = "",
        running_jobs: Callable[[], int] | None = None,
        interval_ms: int = HEARTBEAT_MS,
    ) -> None:
        """`running_jobs`, when given, is called at each beat for the jobs running now."""
        super().__init__("process heartbeat")
        self.redis = redis
        self.keys = ProcessKeys(prefix)
        self.interval_ms = interval_ms
        self.ttl_ms = interval_ms * TTL_BEATS
        self._running_jobs = running_jobs
        started = datetime.fromtimestamp(now_ms() / 1000, UTC)
        self.info = ProcessInfo(
            id=process_id,
            host=socket.gethostname(),
            pid=os.getpid(),
            version=channelkit_version(),
            app=app,
            started_at=started,
            heartbeat_at=started,
            worker_channels=list(worker_channels),
            http=http,
            grpc=grpc,
        )

    async def beat(self) -> None:
        """Write the record now (raises RedisError)."""
        now = now_ms()
        running = self._running_jobs() if self._running_jobs is not None else 0
        record = self.info.to_hash() | {
            "heartbeat_at": str(now),
            "running_jobs": str(running),
        }
        key = self.keys.process(self.info.id)
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.hset(key, mapping=record)  # type: ignore[arg-type]
            pipe.pexpire(key, self.ttl_ms)
            pipe.zadd(self.keys.index, {self.info.id: now})
            # Entries of processes that died: their hashes have expired already.
            pipe.zremrangebyscore(self.keys.index, "-inf", now - self.ttl_ms)
            await pipe.execute()

    async def step(self) -> float:
        try:
            await self.beat()
        except RedisError as error:
            logger.warning("process heartbeat not written: %s", error)
        return self.interval_ms / 1000

    async def stop(self) -> None:
        await super().stop()
        try:
            async with self.redis.pipeline(transaction=True) as pipe:
                pipe.delete(self.keys.process(self.info.id))
                pipe.zrem(self.keys.index, self.info.id)
                await pipe.execute()
        except RedisError as error:
            logger.warning("process record not removed (it expires by itself): %s", error)
