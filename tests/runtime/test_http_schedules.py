"""The schedule routes of the reference app over real HTTP (runtime.testing.running_app,
its Scheduler included) on the session's Redis: create, tick, list, pause, resume,
remove; 422 naming the bad cron, time zone or payload field; 404."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest

from runtime.testing import TestApp, running_app

SMS = {"to": "+14155550100", "body": "daily digest"}


@pytest.fixture
async def app(redis_url: str, key_prefix: str) -> AsyncIterator[TestApp]:
    async with running_app(
        redis_url=redis_url, key_prefix=key_prefix, worker_channels=("sms",), enable_grpc=False
    ) as running:
        yield running


async def test_create_tick_pause_resume_remove(app: TestApp) -> None:
    assert app.http is not None
    created = await app.http.put(
        "/channels/sms/schedules/digest", json={"every_ms": 1000, "payload": SMS}
    )
    assert created.status_code == 200, created.text
    body = created.json()
    assert body["name"] == "digest"
    assert body["source"] == "api"
    assert body["next_run"] is not None
    for _ in range(40):  # the process's own Scheduler enqueues the next tick
        await asyncio.sleep(0.1)
        status = (await app.http.get("/channels/sms/schedules/digest")).json()
        if status["enqueued"]:
            break
    assert status["enqueued"] >= 1
    assert status["last_job_id"].startswith("schedule:digest:")
    job = await app.http.get(f"/channels/sms/jobs/{status['last_job_id']}")
    assert job.status_code == 200, job.text

    listed = (await app.http.get("/channels/sms/schedules")).json()
    assert [item["name"] for item in listed["schedules"]] == ["digest"]

    paused = await app.http.post("/channels/sms/schedules/digest/pause")
    assert paused.status_code == 200, paused.text
    assert paused.json()["paused"] is True
    assert paused.json()["next_run"] is None
    resumed = await app.http.post("/channels/sms/schedules/digest/resume")
    assert resumed.json()["paused"] is False

    metrics = (await app.http.get("/metrics")).text
    assert 'channelkit_schedules{channel="sms"} 1.0' in metrics
    assert 'channelkit_schedule_jobs_enqueued_total{channel="sms",schedule="digest"}' in metrics

    removed = await app.http.delete("/channels/sms/schedules/digest")
    assert removed.status_code == 204, removed.text
    missing = await app.http.get("/channels/sms/schedules/digest")
    assert missing.status_code == 404
    assert "no schedule 'digest' in channel 'sms'" in missing.json()["detail"]


@pytest.mark.parametrize(
    ("body", "field", "message"),
    [
        ({"cron": "61 * * * *", "payload": SMS}, "cron", "bad cron expression"),
        (
            {"cron": "0 8 * * *", "timezone": "Europe/Nowhere", "payload": SMS},
            "timezone",
            "unknown time zone",
        ),
        ({"every_ms": 5, "payload": SMS}, "every", "from 1s"),
        ({"cron": "0 8 * * *", "payload": {"to": "12", "body": "x"}}, "payload.to", "pattern"),
        ({"cron": "0 8 * * *", "payload": {"to": "+14155550100"}}, "payload.body", "required"),
        ({"cron": "0 8 * * *", "payload": SMS, "catch_up": "always"}, "catch_up", ""),
    ],
)
async def test_bad_input_is_422_naming_the_field(
    app: TestApp, body: dict[str, object], field: str, message: str
) -> None:
    assert app.http is not None
    response = await app.http.put("/channels/sms/schedules/bad", json=body)
    assert response.status_code == 422, response.text
    errors = response.json()["errors"]
    assert any(e["field"] == field and message in e["message"] for e in errors), errors
    assert (await app.http.get("/channels/sms/schedules/bad")).status_code == 404
