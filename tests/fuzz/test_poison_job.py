"""A job written into the stream by hand with garbage data ends in the failed set, and the
worker keeps going: a valid job enqueued after it completes."""

from __future__ import annotations

import asyncio
import time

import httpx
from redis.asyncio import Redis

from runtime.engine.keys import ChannelKeys
from tests.fuzz.conftest import ReferenceServer

WITHIN = 20.0


async def test_garbage_in_the_stream_is_failed_and_the_worker_goes_on(
    reference_server: ReferenceServer, redis_url: str
) -> None:
    keys = ChannelKeys(reference_server.key_prefix, "sms")
    redis = Redis.from_url(redis_url)
    try:
        added = await redis.xadd(keys.stream, {"data": "garbage"})
        stream_id = added.decode() if isinstance(added, bytes) else added
    finally:
        await redis.aclose()
    poison = f"poison-{stream_id}"
    async with httpx.AsyncClient(base_url=reference_server.http_url, timeout=10) as http:
        deadline = time.monotonic() + WITHIN
        while True:
            response = await http.get("/channels/sms/jobs", params={"state": "failed"})
            assert response.status_code == 200, response.text
            listed = {job["id"]: job for job in response.json()["jobs"]}
            if poison in listed:
                break
            assert time.monotonic() < deadline, f"{poison} not in the failed set: {listed}"
            await asyncio.sleep(0.1)
        assert listed[poison]["state"] == "failed"

        enqueued = await http.post(
            "/channels/sms/jobs", json={"to": "+14155550100", "body": "after the garbage"}
        )
        assert enqueued.status_code == 202, enqueued.text
        job_id = enqueued.json()["id"]
        while True:
            job = (await http.get(f"/channels/sms/jobs/{job_id}")).json()
            if job["state"] == "completed":
                break
            assert time.monotonic() < deadline, f"the valid job did not complete: {job}"
            await asyncio.sleep(0.1)
