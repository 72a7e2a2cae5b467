"""The project's own tests of `runtime.testing.running_app`, the app in the test's loop.

Run by tests/runtime/test_testing_helper.py as a pytest process of its own, as a
project's test suite would run (the generated package's proto cannot share a process with
another generated package's). Needs REDIS_URL, CHANNELKIT_KEY_PREFIX, PROBE_REDIS_URL and
PROBE_PREFIX.
"""

from __future__ import annotations

import importlib
import os
from pathlib import Path

import grpc
import pytest
from redis.asyncio import Redis

from runtime.testing import running_app

APP = "probe_generated"
PROJECT = Path(__file__).resolve().parent.parent


async def _events() -> list[str]:
    async with Redis.from_url(os.environ["PROBE_REDIS_URL"]) as redis:
        raw = await redis.lrange(f"{os.environ['PROBE_PREFIX']}:events", 0, -1)
    return [item.decode() if isinstance(item, bytes) else item for item in raw]


async def test_http_and_grpc_enqueue_then_drain() -> None:
    async with running_app(
        app=APP,
        project_dir=PROJECT,
        redis_url=os.environ["REDIS_URL"],
        key_prefix=os.environ["CHANNELKIT_KEY_PREFIX"],
    ) as app:
        assert app.http is not None
        assert app.grpc_channel is not None
        pb2 = importlib.import_module(f"{APP}.proto").channels_pb2
        pb2_grpc = importlib.import_module(f"{APP}.proto").channels_pb2_grpc

        response = await app.http.post("/channels/fast/jobs", json={"id": "in-http"})
        assert response.status_code == 202, response.text
        stub = pb2_grpc.ChannelsServiceStub(app.grpc_channel)
        request = pb2.EnqueueFastRequest(payload=pb2.FastPayload(id="in-grpc"))
        reply = await stub.EnqueueFast(request, timeout=10)
        assert reply.job_id

        await app.drain("fast")
        pid = os.getpid()
        assert sorted(await _events()) == [f"fast:in-grpc:{pid}", f"fast:in-http:{pid}"]

        # Refused in-process too, and nothing is left to drain.
        response = await app.http.post("/channels/fast/jobs", json={"id": ""})
        assert response.status_code == 422, response.text
        with pytest.raises(grpc.aio.AioRpcError) as refused:
            await stub.EnqueueFast(pb2.EnqueueFastRequest(payload=pb2.FastPayload()), timeout=10)
        assert refused.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert await app.client.redis.xlen(app.client.keys("fast").stream) == 0


async def test_drain_waits_for_running_jobs() -> None:
    async with running_app(
        app=APP,
        project_dir=PROJECT,
        redis_url=os.environ["REDIS_URL"],
        key_prefix=os.environ["CHANNELKIT_KEY_PREFIX"],
        enable_api=False,
        enable_grpc=False,
    ) as app:
        assert app.http is None
        assert app.grpc_channel is None
        models = importlib.import_module(f"{APP}.models.slow")
        payloads = [models.SlowPayload(id=f"s{n}", seconds=0.2) for n in range(4)]
        await app.client.enqueue_many("slow", payloads)
        await app.drain("slow")
        # drain() returns once the jobs have run, not merely once they were read.
        ends = sorted(e.split(":")[1] for e in await _events() if e.startswith("end:"))
        assert ends == ["s0", "s1", "s2", "s3"]


async def test_the_apps_own_prefix_is_deleted_when_the_block_ends() -> None:
    async with running_app(
        app=APP, project_dir=PROJECT, redis_url=os.environ["REDIS_URL"], enable_grpc=False
    ) as app:
        assert app.http is not None
        prefix = app.client.prefix
        assert prefix.startswith("test-")
        response = await app.http.post("/channels/fast/jobs", json={"id": "own-prefix"})
        assert response.status_code == 202, response.text
        await app.drain("fast")
        async with Redis.from_url(os.environ["REDIS_URL"]) as redis:
            assert [key async for key in redis.scan_iter(match=f"{prefix}:*")]
    async with Redis.from_url(os.environ["REDIS_URL"]) as redis:
        assert [key async for key in redis.scan_iter(match=f"{prefix}:*")] == []
