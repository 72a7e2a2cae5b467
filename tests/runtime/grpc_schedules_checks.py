"""`service SchedulesService` of the repository's `generated` app, in-process with
`running_app`: upsert, get, list, pause, resume, remove; INVALID_ARGUMENT naming the bad
cron, time zone or payload field; NOT_FOUND; FAILED_PRECONDITION for channels.yaml's.

Run by tests/runtime/test_grpc_schedules.py as a pytest process of its own (see
grpc_jobs_checks.py for why). Run alone with
`.venv/bin/pytest tests/runtime/grpc_schedules_checks.py`.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator

import grpc
import pytest

from generated.proto import channels_pb2, channels_pb2_grpc
from runtime.engine.schedules import Schedule
from runtime.testing import TestApp, running_app

pytestmark = pytest.mark.timeout(60)

SMS = json.dumps({"to": "+14155550100", "body": "digest"})


@pytest.fixture
async def app(redis_url: str) -> AsyncIterator[TestApp]:
    async with running_app(redis_url=redis_url, worker_channels=("sms",)) as running:
        yield running


def stub(app: TestApp) -> channels_pb2_grpc.SchedulesServiceAsyncStub:
    assert app.grpc_channel is not None
    return channels_pb2_grpc.SchedulesServiceStub(app.grpc_channel)


async def test_upsert_get_list_pause_resume_remove(app: TestApp) -> None:
    schedules = stub(app)
    created = await schedules.UpsertSchedule(
        channels_pb2.UpsertScheduleRequest(
            channel="sms",
            name="morning",
            cron="0 8 * * *",
            timezone="Europe/Berlin",
            payload_json=SMS,
            catch_up=channels_pb2.CATCH_UP_SKIP,
        )
    )
    schedule = created.schedule
    assert schedule.cron == "0 8 * * *"
    assert schedule.timezone == "Europe/Berlin"
    assert schedule.catch_up == channels_pb2.CATCH_UP_SKIP
    assert schedule.source == "api"
    assert schedule.HasField("next_run")
    assert json.loads(schedule.payload_json) == json.loads(SMS)
    got = await schedules.GetSchedule(
        channels_pb2.GetScheduleRequest(channel="sms", name="morning")
    )
    assert got.schedule == schedule
    listed = await schedules.ListSchedules(channels_pb2.ListSchedulesRequest(channel="sms"))
    assert [item.name for item in listed.schedules] == ["morning"]
    paused = await schedules.PauseSchedule(
        channels_pb2.PauseScheduleRequest(channel="sms", name="morning")
    )
    assert paused.schedule.paused
    assert not paused.schedule.HasField("next_run")
    resumed = await schedules.ResumeSchedule(
        channels_pb2.ResumeScheduleRequest(channel="sms", name="morning")
    )
    assert not resumed.schedule.paused
    removed = await schedules.RemoveSchedule(
        channels_pb2.RemoveScheduleRequest(channel="sms", name="morning")
    )
    assert removed.removed
    with pytest.raises(grpc.aio.AioRpcError) as missing:
        await schedules.GetSchedule(channels_pb2.GetScheduleRequest(channel="sms", name="morning"))
    assert missing.value.code() == grpc.StatusCode.NOT_FOUND
    assert "no schedule 'morning'" in (missing.value.details() or "")


@pytest.mark.parametrize(
    ("request_fields", "detail"),
    [
        ({"cron": "61 * * * *", "payload_json": SMS}, "cron: bad cron expression"),
        ({"every_ms": 10, "payload_json": SMS}, "every: from 1s"),
        (
            {"cron": "0 8 * * *", "timezone": "Mars/Base", "payload_json": SMS},
            "timezone: unknown time zone 'Mars/Base'",
        ),
        ({"cron": "0 8 * * *", "payload_json": '{"to": "12"}'}, "payload_json.to: "),
        ({"cron": "0 8 * * *", "payload_json": "{"}, "payload_json: not JSON"),
        ({"payload_json": SMS}, "cron, every: give exactly one"),
    ],
)
async def test_bad_input_is_invalid_argument_naming_the_field(
    app: TestApp, request_fields: dict[str, object], detail: str
) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as refused:
        await stub(app).UpsertSchedule(
            channels_pb2.UpsertScheduleRequest(channel="sms", name="bad", **request_fields)  # type: ignore[arg-type]
        )
    assert refused.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert detail in (refused.value.details() or "")


async def test_unknown_channel_and_declared_schedules(app: TestApp) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as unknown:
        await stub(app).ListSchedules(channels_pb2.ListSchedulesRequest(channel="fax"))
    assert unknown.value.code() == grpc.StatusCode.NOT_FOUND
    declared = Schedule(name="nightly", payload=json.loads(SMS), cron="0 2 * * *")
    await app.client.schedules.sync_declared("sms", [declared])
    with pytest.raises(grpc.aio.AioRpcError) as conflict:
        await stub(app).RemoveSchedule(
            channels_pb2.RemoveScheduleRequest(channel="sms", name="nightly")
        )
    assert conflict.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert "declared in channels.yaml" in (conflict.value.details() or "")
    await app.client.schedules.sync_declared("sms", [])  # leave nothing behind
