"""With Redis unreachable, the HTTP API answers 503 with the reason and Retry-After, and
logs no traceback per request (a dependency outage, not a server bug).

The reference app's routes served by uvicorn on a real socket, with a Client whose Redis
port has nobody listening; and a primary of the test's own that refuses writes for want of
an in-sync replica (`min-replicas-to-write`, as a promoted replica does after a failover
when docs/operations.md's setting is on).
"""

from __future__ import annotations

import logging
from pathlib import Path

import httpx
import pytest
from pydantic import BaseModel

from runtime.errors import EnqueueError
from runtime.testing import running_app
from tests.redis_topologies import RedisNode, free_node_port


async def test_enqueue_and_lookups_answer_503_with_the_reason(
    http_without_redis: httpx.AsyncClient, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    enqueue = await http_without_redis.post(
        "/channels/sms/jobs", json={"to": "+14155550100", "body": "hello"}
    )
    assert enqueue.status_code == 503, enqueue.text
    assert enqueue.headers["retry-after"] == "1"
    detail = enqueue.json()["detail"]
    assert "was not enqueued" in detail
    assert "sms" in detail

    batch = await http_without_redis.post(
        "/channels/sms/jobs/batch", json=[{"to": "+14155550100", "body": "hello"}]
    )
    assert batch.status_code == 503, batch.text
    assert "were not enqueued" in batch.json()["detail"]

    status = await http_without_redis.get("/channels/sms/jobs/some-id")
    assert status.status_code == 503, status.text
    summary = await http_without_redis.get("/channels/sms")
    assert summary.status_code == 503, summary.text

    assert not [record for record in caplog.records if record.exc_info], "no traceback logged"


async def test_bounds_are_checked_before_redis_is_needed(
    http_without_redis: httpx.AsyncClient,
) -> None:
    """A delay or job id out of bounds is a 422 naming the field, even while Redis is
    down: nothing is attempted."""
    body = {"to": "+14155550100", "body": "hello"}
    too_late = await http_without_redis.post(
        "/channels/sms/jobs", json=body, params={"delay_ms": 10**15}
    )
    assert too_late.status_code == 422, too_late.text
    assert too_late.json()["errors"][0]["field"] == "delay_ms"
    too_deep = await http_without_redis.get(
        "/channels/sms/jobs", params={"state": "active", "offset": 100_000, "limit": 500}
    )
    assert too_deep.status_code == 422, too_deep.text
    assert too_deep.json()["errors"][0]["field"] == "offset"


class Sms(BaseModel):
    to: str
    body: str


async def test_a_primary_without_an_in_sync_replica_is_a_503_not_a_500(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Redis answers NOREPLICAS, which redis-py raises as a plain ResponseError: it is
    Redis refusing for now (503 with the reason, EnqueueError from the Client), and the
    API takes jobs again once the primary may write."""
    node = RedisNode(tmp_path / "redis", free_node_port(set())).start()
    try:
        url = f"redis://{node.address}/0"
        async with running_app(redis_url=url, enable_grpc=False, enable_workers=False) as app:
            assert app.http is not None
            with node.client() as admin:
                admin.config_set("min-replicas-to-write", 1)  # no replica: writes refused
            caplog.set_level(logging.WARNING)
            body = {"to": "+14155550100", "body": "hello"}
            refused = await app.http.post("/channels/sms/jobs", json=body)
            assert refused.status_code == 503, refused.text
            assert refused.headers["retry-after"] == "1"
            assert "NOREPLICAS" in refused.json()["detail"], refused.text
            batch = await app.http.post("/channels/sms/jobs/batch", json=[body])
            assert batch.status_code == 503, batch.text
            with pytest.raises(EnqueueError, match="NOREPLICAS"):
                await app.client.enqueue("sms", Sms(**body))
            assert not [r for r in caplog.records if r.exc_info], "no traceback logged"

            with node.client() as admin:
                admin.config_set("min-replicas-to-write", 0)
            accepted = await app.http.post("/channels/sms/jobs", json=body)
            assert accepted.status_code == 202, accepted.text
    finally:
        node.stop()
