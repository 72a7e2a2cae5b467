"""Boot the whole app inside a test: the counterpart of NestJS's `Test.createTestingModule`.

    async with running_app() as app:              # embedded Redis, free ports
        response = await app.http.post("/channels/email/jobs", json={...})
        await app.drain("email")                   # every email job has run

As a pytest fixture, add `pytest_plugins = ["runtime.testing"]` to your conftest.py and
take `channelkit_app`. Each app uses its own key prefix (`test-<random>`), so tests
sharing one Redis never see each other's jobs; when the block ends, the keys under that
prefix are deleted (SCAN MATCH, never a flush). A `key_prefix=` you pass is yours: its keys
are left alone.
"""

from __future__ import annotations

import asyncio
import tempfile
import time
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import replace
from pathlib import Path
from typing import Any

import grpc
import httpx
import pytest
from redis.exceptions import ConnectionError as RedisConnectionError

from runtime.engine.client import Client
from runtime.engine.connection import connect
from runtime.serve.embedded_redis import EmbeddedRedis
from runtime.serve.service import Service, load_generated_app
from runtime.serve.settings import ServeSettings

__all__ = ["TestApp", "channelkit_app", "running_app"]


class TestApp:
    """A running app and clients for each way in."""

    __test__ = False  # not a pytest test class

    def __init__(
        self,
        service: Service,
        http: httpx.AsyncClient | None,
        grpc_channel: grpc.aio.Channel | None,
    ) -> None:
        self.service = service
        self.http = http  # None when the API is disabled
        self.grpc_channel = grpc_channel  # None when gRPC is disabled
        assert service.client is not None
        self.client: Client = service.client

    async def drain(self, channel: str, timeout: float = 10.0) -> None:  # noqa: ASYNC109
        """Wait until the channel has no job waiting, delayed or running."""
        keys = self.client.keys(channel)
        deadline = time.monotonic() + timeout
        while True:
            async with self.client.redis.pipeline(transaction=False) as pipe:
                pipe.zcard(keys.waiting)
                pipe.xlen(keys.stream)  # taken by a worker, until finished
                pipe.zcard(keys.delayed)
                waiting, taken, delayed = await pipe.execute()
            waiting += taken
            running = self.service.workers.running if self.service.workers else 0
            if not waiting and not delayed and not running:
                return
            if time.monotonic() > deadline:
                raise TimeoutError(
                    f"channel {channel!r} not drained after {timeout} s: "
                    f"{waiting} waiting, {delayed} delayed, {running} running"
                )
            await asyncio.sleep(0.02)


@asynccontextmanager
async def running_app(
    app: str = "generated",
    *,
    redis_url: str | None = None,
    project_dir: Path | None = None,
    **settings: Any,
) -> AsyncIterator[TestApp]:
    """Serve `app` on free loopback ports until the block ends, then stop everything.

    Without `redis_url` an embedded Redis is started for the block and removed after.
    `settings` override ServeSettings fields (e.g. `worker_channels=("email",)`). Unless
    `key_prefix` is among them, the app's keys are deleted when the block ends.
    """
    with tempfile.TemporaryDirectory(prefix="channelkit-test-") as folder:
        embedded = None if redis_url else EmbeddedRedis(Path(folder), persist=False).start()
        base = ServeSettings(
            app=app,
            redis_url=redis_url or (embedded.url if embedded else None),
            key_prefix=f"test-{uuid.uuid4().hex[:12]}",
            http_port=0,
            grpc_port=0,
            shutdown_timeout=5.0,
        )
        service = Service(replace(base, **settings), load_generated_app(app, project_dir))
        try:
            await service.start()
            http = (
                httpx.AsyncClient(base_url=f"http://127.0.0.1:{service.http_port}")
                if service.http_port
                else None
            )
            channel = (
                grpc.aio.insecure_channel(f"127.0.0.1:{service.grpc_port}")
                if service.grpc_port
                else None
            )
            try:
                yield TestApp(service, http, channel)
            finally:
                if http is not None:
                    await http.aclose()
                if channel is not None:
                    await channel.close()
        finally:
            try:
                await service.stop()
            finally:
                if embedded is not None:
                    embedded.stop()
                elif redis_url is not None and "key_prefix" not in settings:
                    await _delete_prefix(redis_url, base.key_prefix)


async def _delete_prefix(redis_url: str, prefix: str) -> None:
    """Delete the keys under `prefix:` (the app's own prefix only; never a flush). A Redis
    that cannot be reached any more (a test stopped it) has nothing to delete from now."""
    redis = connect(redis_url)
    try:
        keys = [key async for key in redis.scan_iter(match=f"{prefix}:*", count=1000)]
        for start in range(0, len(keys), 1000):
            await redis.delete(*keys[start : start + 1000])
    except RedisConnectionError:
        pass
    finally:
        await redis.aclose()


@pytest.fixture
async def channelkit_app() -> AsyncIterator[TestApp]:
    """The project's `generated` app, served with an embedded Redis (or REDIS_URL's)."""
    import os

    async with running_app(redis_url=os.environ.get("REDIS_URL")) as app:
        yield app
