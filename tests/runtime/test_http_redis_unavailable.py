"""With Redis unreachable, the HTTP API answers 503 with the reason and Retry-After, and
logs no traceback per request (a dependency outage, not a server bug).

The reference app's routes served by uvicorn on a real socket, with a Client whose Redis
port has nobody listening.
"""

from __future__ import annotations

import logging

import httpx
import pytest


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
