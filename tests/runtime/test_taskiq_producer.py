"""Jobs from a plain taskiq producer run on Channelkit's workers: the generated task is a
real taskiq task, and the wire format is taskiq's message."""

from __future__ import annotations

from pathlib import Path

from taskiq_redis import RedisStreamBroker

from runtime.serve.embedded_redis import EmbeddedRedis
from runtime.testing import running_app


async def test_kiq_of_the_generated_task_runs_on_the_channel(redis_url: str) -> None:
    from generated.models.sms import SmsPayload
    from generated.processors import sms

    async with running_app(redis_url=redis_url, enable_api=False, enable_grpc=False) as app:
        broker = RedisStreamBroker(redis_url, queue_name=app.client.keys("sms").stream)
        task = sms.register(broker)
        await broker.startup()
        try:
            sent = await task.kiq(SmsPayload(to="+14155550100", body="from taskiq"))
        finally:
            await broker.shutdown()
        await app.drain("sms")
        job = await app.client.job("sms", sent.task_id)
        assert job is not None
        assert job.state == "completed"
        assert job.result["accepted"] == ["+14155550100"]


async def test_acl_user_password_and_database_in_the_url(tmp_path: Path) -> None:
    """REDIS_URL with an ACL user, a password and a database number (a Redis of the test's
    own: the shared one's users are not ours to change)."""
    with EmbeddedRedis(tmp_path / "redis", persist=False) as server:
        from redis.asyncio import Redis

        admin = Redis.from_url(server.url)
        await admin.acl_setuser(
            "worker", enabled=True, passwords=["+s3cret"], keys=["*"], commands=["+@all"]
        )
        await admin.aclose()
        url = f"unix://worker:s3cret@{server.socket}?db=5"
        async with running_app(redis_url=url) as app:
            assert app.http is not None
            response = await app.http.post(
                "/channels/sms/jobs", json={"to": "+14155550100", "body": "acl"}
            )
            assert response.status_code == 202, response.text
            await app.drain("sms")
            job = await app.client.job("sms", response.json()["id"])
            assert job is not None
            assert job.state == "completed"
            # the job's keys are in database 5 (read before running_app removes its prefix)
            check = Redis.from_url(server.url, db=5)
            try:
                assert await check.exists(f"{app.client.prefix}:{{sms}}:completed")
            finally:
                await check.aclose()
