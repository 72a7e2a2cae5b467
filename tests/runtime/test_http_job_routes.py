"""The job routes and /metrics of the reference app (docs/http-api.md), in-process with
`runtime.testing.running_app` on the session's Redis: discard (204/404/409), retry of an
unknown job (404), a batch refused all or nothing naming the bad item's index, and the
exact change one job makes to the metrics docs/operations.md describes."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from prometheus_client.parser import text_string_to_metric_families

from runtime.testing import TestApp, running_app

SMS = {"to": "+14155550100", "body": "hi"}


@pytest.fixture
async def app(redis_url: str, key_prefix: str) -> AsyncIterator[TestApp]:
    """Workers for `sms` only: jobs of the other channels stay waiting."""
    async with running_app(
        redis_url=redis_url, key_prefix=key_prefix, worker_channels=("sms",), enable_grpc=False
    ) as running:
        yield running


async def test_discard_answers_204_404_and_409(app: TestApp) -> None:
    assert app.http is not None
    delayed = await app.http.post("/channels/sms/jobs", json=SMS, params={"delay_ms": 600_000})
    assert delayed.status_code == 202, delayed.text
    delayed_id = delayed.json()["id"]
    push = {"device_tokens": ["t"], "title": "t", "body": "b"}
    waiting = await app.http.post("/channels/push/jobs", json=push)
    assert waiting.status_code == 202, waiting.text
    waiting_id = waiting.json()["id"]

    gone = await app.http.delete(f"/channels/sms/jobs/{delayed_id}")
    assert gone.status_code == 204, gone.text
    assert gone.content == b""
    assert (await app.http.get(f"/channels/sms/jobs/{delayed_id}")).status_code == 404
    assert (await app.http.get("/channels/sms")).json()["delayed"] == 0

    again = await app.http.delete(f"/channels/sms/jobs/{delayed_id}")
    assert again.status_code == 404, again.text
    assert "never enqueued, or removed by retention" in again.json()["detail"]

    busy = await app.http.delete(f"/channels/push/jobs/{waiting_id}")
    assert busy.status_code == 409, busy.text
    assert "waiting" in busy.json()["detail"]
    status = await app.http.get(f"/channels/push/jobs/{waiting_id}")
    assert status.json()["state"] == "waiting"


async def test_a_completed_job_can_be_discarded_and_an_unknown_one_not_retried(
    app: TestApp,
) -> None:
    assert app.http is not None
    response = await app.http.post("/channels/sms/jobs", json=SMS)
    job_id = response.json()["id"]
    await app.drain("sms")
    assert (await app.http.get(f"/channels/sms/jobs/{job_id}")).json()["state"] == "completed"

    retry = await app.http.post(f"/channels/sms/jobs/{job_id}/retry")
    assert retry.status_code == 409, retry.text
    unknown = await app.http.post("/channels/sms/jobs/no-such-job/retry")
    assert unknown.status_code == 404, unknown.text
    assert "no job no-such-job" in unknown.json()["detail"]

    assert (await app.http.delete(f"/channels/sms/jobs/{job_id}")).status_code == 204
    assert (await app.http.get("/channels/sms")).json()["completed"] == 0


async def test_a_batch_with_one_bad_item_is_refused_naming_its_index(app: TestApp) -> None:
    assert app.http is not None
    good = {"device_tokens": ["t"], "title": "t", "body": "b"}
    batch = [good, good, {"device_tokens": [], "title": "t", "body": "b"}, good]
    response = await app.http.post("/channels/push/jobs/batch", json=batch)

    assert response.status_code == 422, response.text
    errors = response.json()["errors"]
    assert [error["field"] for error in errors] == ["2.device_tokens"]
    assert "2.device_tokens" in response.json()["detail"]
    counts = (await app.http.get("/channels/push")).json()
    assert (counts["waiting"], counts["active"], counts["delayed"]) == (0, 0, 0)
    assert await app.client.redis.xlen(app.client.keys("push").stream) == 0

    accepted = await app.http.post("/channels/push/jobs/batch", json=[good, good])
    assert accepted.status_code == 202, accepted.text
    assert len(accepted.json()["ids"]) == 2


def _samples(text: str, channel: str) -> dict[str, float]:
    """`name` -> value of every sample labelled with `channel` (histograms: _count, _sum)."""
    found: dict[str, float] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.labels.get("channel") != channel or "le" in sample.labels:
                continue
            state = sample.labels.get("state")
            found[f"{sample.name}:{state}" if state else sample.name] = sample.value
    return found


async def test_one_job_moves_each_metric_as_documented(app: TestApp) -> None:
    """docs/operations.md#metrics: one sms job enqueued over HTTP and run to completion."""
    assert app.http is not None
    before = _samples((await app.http.get("/metrics")).text, "sms")
    response = await app.http.post("/channels/sms/jobs", json=SMS)
    assert response.status_code == 202, response.text
    await app.drain("sms")
    after = _samples((await app.http.get("/metrics")).text, "sms")

    def change(name: str) -> float:
        return after.get(name, 0.0) - before.get(name, 0.0)

    assert change("channelkit_jobs_enqueued_total") == 1
    assert change("channelkit_jobs_started_total") == 1
    assert change("channelkit_jobs_completed_total") == 1
    assert change("channelkit_jobs_failed_total") == 0
    assert change("channelkit_jobs_retried_total") == 0
    assert change("channelkit_jobs_stalled_total") == 0
    assert change("channelkit_job_run_seconds_count") == 1
    assert change("channelkit_job_run_seconds_sum") > 0
    assert change("channelkit_job_wait_seconds_count") == 1
    assert after["channelkit_jobs_running"] == 0
    # read from Redis at scrape time: the job is in the completed set, nothing else is
    assert change("channelkit_queue_jobs:completed") == 1
    assert after["channelkit_queue_jobs:waiting"] == after["channelkit_queue_jobs:active"] == 0
