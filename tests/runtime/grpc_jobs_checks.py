"""`service JobsService` of the repository's `generated` app, in-process with `running_app`.

Run by tests/runtime/test_grpc_jobs.py as a pytest process of its own (hence not named
test_*.py): the app imports `generated.proto`, and every generated package registers
`channels.v1` in protobuf's default pool, so it cannot share a process with another
generated package (test_grpc_payload's). Run alone with
`.venv/bin/pytest tests/runtime/grpc_jobs_checks.py`.
"""

from __future__ import annotations

import asyncio
import json
import os
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import grpc
import pytest
from google.protobuf import json_format

from generated.proto import channels_pb2, channels_pb2_grpc
from runtime.engine.keys import ChannelKeys
from runtime.engine.processes import ProcessHeartbeat
from runtime.testing import TestApp, running_app

pytestmark = pytest.mark.timeout(60)

API_KEY = "jobs-test-key"
AUTH = (("authorization", f"Bearer {API_KEY}"),)
SMS = channels_pb2.SmsPayload(to="+14155550100", body="hi")


@dataclass
class Served:
    app: TestApp
    channels: channels_pb2_grpc.ChannelsServiceAsyncStub
    jobs: channels_pb2_grpc.JobsServiceAsyncStub


@pytest.fixture
async def served(redis_url: str, monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[Served]:
    monkeypatch.delenv("SMS_PROVIDER_URL", raising=False)  # the handler's dry run
    async with running_app(redis_url=redis_url, api_keys=(API_KEY,)) as app:
        assert app.grpc_channel is not None
        channels = channels_pb2_grpc.ChannelsServiceStub(app.grpc_channel)
        yield Served(app, channels, channels_pb2_grpc.JobsServiceStub(app.grpc_channel))


async def poison(app: TestApp, channel: str, job_id: str) -> None:
    """A message whose payload the channel's model rejects: it fails at once, for good."""
    data: dict[str, Any] = {
        "task_id": job_id,
        "task_name": f"channelkit.{channel}",
        "labels": {},
        "labels_types": None,
        "args": [],
        "kwargs": {"payload": {"to": "not a number", "body": ""}},
    }
    keys = ChannelKeys(app.client.prefix, channel)
    await app.client.redis.xadd(keys.stream, {"data": json.dumps(data)})
    await app.drain(channel)


async def test_enqueue_drain_then_get_job_and_channel(served: Served) -> None:
    request = channels_pb2.EnqueueSmsRequest(payload=SMS, job_id="sms-1")
    reply = await served.channels.EnqueueSms(request, metadata=AUTH)
    await served.app.drain("sms")

    got = await served.jobs.GetJob(
        channels_pb2.GetJobRequest(channel="sms", job_id=reply.job_id), metadata=AUTH
    )
    job = got.job
    assert (job.id, job.channel) == ("sms-1", "sms")
    assert job.state == channels_pb2.JOB_STATE_COMPLETED
    assert (job.attempts, job.failures) == (1, 0)
    assert job.payload_json == ""  # the store keeps a payload only while delayed or failed
    # a google.protobuf.Value: the handler's dict arrives as a struct, typed on the wire
    assert job.result.WhichOneof("kind") == "struct_value"
    result = json_format.MessageToDict(job.result)
    assert result["accepted"] == ["+14155550100"]
    assert result["dry_run"] is True
    assert job.result.struct_value.fields["dry_run"].bool_value is True
    assert job.HasField("enqueued_at")
    assert job.HasField("finished_at")
    assert job.finished_at.ToDatetime() >= job.enqueued_at.ToDatetime()
    assert not job.HasField("error")
    assert list(job.errors) == []

    counts = (
        await served.jobs.GetChannel(channels_pb2.GetChannelRequest(channel="sms"), metadata=AUTH)
    ).counts
    assert counts.channel == "sms"
    assert (counts.waiting, counts.active, counts.delayed) == (0, 0, 0)
    assert (counts.completed, counts.failed) == (1, 0)
    assert counts.limiter.granted_in_window == 1  # sms: 10 per second
    # the window is counted a little longer than 1 s (runtime/engine/consumer.py: _window_ms)
    assert 0 < counts.limiter.window_resets_in_ms <= 1020

    listed = await served.jobs.ListJobs(
        channels_pb2.ListJobsRequest(channel="sms", state=channels_pb2.JOB_STATE_COMPLETED),
        metadata=AUTH,
    )
    assert [j.id for j in listed.jobs] == ["sms-1"]


async def test_failed_job_listed_retried_and_discarded(served: Served) -> None:
    await poison(served.app, "sms", "bad-1")

    listed = await served.jobs.ListJobs(
        channels_pb2.ListJobsRequest(channel="sms", state=channels_pb2.JOB_STATE_FAILED),
        metadata=AUTH,
    )
    [job] = listed.jobs
    assert (job.id, job.state, job.failures) == ("bad-1", channels_pb2.JOB_STATE_FAILED, 1)
    assert job.error.type == "payload_invalid"
    assert "to" in job.error.message
    assert job.error.at_ms > 0
    assert [e.type for e in job.errors] == ["payload_invalid"]
    assert json.loads(job.payload_json) == {"to": "not a number", "body": ""}
    # UNSPECIFIED lists failed jobs, as the HTTP route does by default
    default = await served.jobs.ListJobs(channels_pb2.ListJobsRequest(channel="sms"), metadata=AUTH)
    assert [j.id for j in default.jobs] == ["bad-1"]

    retried = (
        await served.jobs.RetryJob(
            channels_pb2.RetryJobRequest(channel="sms", job_id="bad-1"), metadata=AUTH
        )
    ).job
    assert retried.id == "bad-1"
    assert retried.state in (
        channels_pb2.JOB_STATE_WAITING,
        channels_pb2.JOB_STATE_ACTIVE,
        channels_pb2.JOB_STATE_FAILED,  # a worker took it and failed it again at once
    )
    await served.app.drain("sms")
    again = (
        await served.jobs.GetJob(
            channels_pb2.GetJobRequest(channel="sms", job_id="bad-1"), metadata=AUTH
        )
    ).job
    assert again.state == channels_pb2.JOB_STATE_FAILED
    assert again.failures == 1  # reset by the retry, then failed once more
    assert len(again.errors) == 2

    discarded = await served.jobs.DiscardJob(
        channels_pb2.DiscardJobRequest(channel="sms", job_id="bad-1"), metadata=AUTH
    )
    assert discarded.discarded
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await served.jobs.GetJob(
            channels_pb2.GetJobRequest(channel="sms", job_id="bad-1"), metadata=AUTH
        )
    assert caught.value.code() == grpc.StatusCode.NOT_FOUND
    got = await served.jobs.GetChannel(channels_pb2.GetChannelRequest(channel="sms"), metadata=AUTH)
    assert got.counts.failed == 0


async def test_retry_and_discard_need_the_right_state(served: Served) -> None:
    await served.channels.EnqueueSms(
        channels_pb2.EnqueueSmsRequest(payload=SMS, job_id="later", delay_ms=60_000),
        metadata=AUTH,
    )
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await served.jobs.RetryJob(
            channels_pb2.RetryJobRequest(channel="sms", job_id="later"), metadata=AUTH
        )
    assert caught.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    details = caught.value.details() or ""
    assert "is delayed; only failed or cancelled jobs can be retried" in details

    job = (
        await served.jobs.GetJob(
            channels_pb2.GetJobRequest(channel="sms", job_id="later"), metadata=AUTH
        )
    ).job
    assert job.state == channels_pb2.JOB_STATE_DELAYED
    assert job.HasField("due_at")
    assert not job.HasField("started_at")
    assert not job.HasField("result")
    assert json.loads(job.payload_json) == {"to": "+14155550100", "body": "hi"}

    reply = await served.jobs.DiscardJob(
        channels_pb2.DiscardJobRequest(channel="sms", job_id="later"), metadata=AUTH
    )
    assert reply.discarded


@pytest.mark.parametrize(
    ("method", "request_message", "code"),
    [
        ("GetJob", channels_pb2.GetJobRequest(channel="fax", job_id="x"), "NOT_FOUND"),
        ("GetJob", channels_pb2.GetJobRequest(channel="sms", job_id="nope"), "NOT_FOUND"),
        ("GetJob", channels_pb2.GetJobRequest(channel="sms"), "INVALID_ARGUMENT"),
        ("RetryJob", channels_pb2.RetryJobRequest(channel="sms", job_id="nope"), "NOT_FOUND"),
        ("RetryJob", channels_pb2.RetryJobRequest(channel="fax", job_id="x"), "NOT_FOUND"),
        ("DiscardJob", channels_pb2.DiscardJobRequest(channel="sms", job_id="nope"), "NOT_FOUND"),
        ("GetChannel", channels_pb2.GetChannelRequest(channel="fax"), "NOT_FOUND"),
        ("ListJobs", channels_pb2.ListJobsRequest(channel="fax"), "NOT_FOUND"),
        ("ListJobs", channels_pb2.ListJobsRequest(channel="sms", limit=501), "INVALID_ARGUMENT"),
        (
            "ListJobs",
            channels_pb2.ListJobsRequest(channel="sms", state=channels_pb2.JobState.ValueType(9)),
            "INVALID_ARGUMENT",
        ),
    ],
)
async def test_errors(served: Served, method: str, request_message: object, code: str) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await getattr(served.jobs, method)(request_message, metadata=AUTH)
    assert caught.value.code() == grpc.StatusCode[code]
    if "fax" in str(request_message):
        assert caught.value.details() == (
            "unknown channel 'fax'; channels declared: email, push, sms, whatsapp"
        )


async def test_jobs_service_needs_the_api_key(served: Served) -> None:
    request = channels_pb2.GetChannelRequest(channel="sms")
    for metadata in ((), (("authorization", "Bearer wrong"),)):
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await served.jobs.GetChannel(request, metadata=metadata)
        assert caught.value.code() == grpc.StatusCode.UNAUTHENTICATED
    got = await served.jobs.GetChannel(request, metadata=AUTH)
    assert got.counts.channel == "sms"


async def test_health_and_reflection_know_the_jobs_service(served: Served) -> None:
    from grpc_health.v1 import health_pb2
    from grpc_reflection.v1alpha import reflection_pb2

    channel = served.app.grpc_channel
    assert channel is not None
    check = channel.unary_unary(
        "/grpc.health.v1.Health/Check",
        request_serializer=health_pb2.HealthCheckRequest.SerializeToString,
        response_deserializer=health_pb2.HealthCheckResponse.FromString,
    )
    reply = await check(health_pb2.HealthCheckRequest(service="channels.v1.JobsService"))
    assert reply.status == health_pb2.HealthCheckResponse.SERVING

    info = channel.stream_stream(
        "/grpc.reflection.v1alpha.ServerReflection/ServerReflectionInfo",
        request_serializer=reflection_pb2.ServerReflectionRequest.SerializeToString,
        response_deserializer=reflection_pb2.ServerReflectionResponse.FromString,
    )
    request = reflection_pb2.ServerReflectionRequest(list_services="")
    services: list[str] = []
    async for response in info(iter([request])):
        services = [s.name for s in response.list_services_response.service]
    assert {"channels.v1.ChannelsService", "channels.v1.JobsService"} <= set(services)


async def test_list_processes_gives_the_records_of_get_processes(served: Served) -> None:
    """The app's own process and a second one (the engine's heartbeat writer, as another
    `runtime serve` on the same Redis and prefix runs it): the same records over gRPC as
    over HTTP, and a process that stops cleanly leaves both lists."""
    assert served.app.http is not None
    client = served.app.client
    other = ProcessHeartbeat(
        client.redis,
        client.prefix,
        "elsewhere-4242-abc123",
        app="generated",
        worker_channels=["sms", "push"],
        grpc="10.0.0.2:50051",
    )
    await other.beat()
    auth = {"authorization": f"Bearer {API_KEY}"}
    try:
        for _ in range(100):
            over_http = (await served.app.http.get("/processes", headers=auth)).json()
            if len(over_http["processes"]) == 2:
                break
            await asyncio.sleep(0.05)
        reply = await served.jobs.ListProcesses(channels_pb2.ListProcessesRequest(), metadata=AUTH)
    finally:
        await other.stop()
    listed = [
        json_format.MessageToDict(
            process,
            preserving_proto_field_name=True,
            always_print_fields_with_no_presence=True,
        )
        for process in reply.processes
    ]
    assert [p["id"] for p in listed] == [p["id"] for p in over_http["processes"]]
    assert len(listed) == 2
    for over_grpc, record in zip(listed, over_http["processes"], strict=True):
        times = ("started_at", "heartbeat_at")
        assert {k: v for k, v in over_grpc.items() if k not in times} == {
            k: v for k, v in record.items() if k not in times
        }
        assert _instant(over_grpc["started_at"]) == _instant(record["started_at"])
        # a beat may fall between the two reads (every 5 s)
        gap = _instant(over_grpc["heartbeat_at"]) - _instant(record["heartbeat_at"])
        assert timedelta(0) <= gap <= timedelta(seconds=6)
    own, second = sorted(listed, key=lambda p: p["id"] == "elsewhere-4242-abc123")
    assert own["pid"] == os.getpid()
    assert own["worker_channels"] == ["email", "push", "sms", "whatsapp"]
    assert (second["worker_channels"], second["grpc"], second["http"]) == (
        ["sms", "push"],
        "10.0.0.2:50051",
        "",
    )

    after = await served.jobs.ListProcesses(channels_pb2.ListProcessesRequest(), metadata=AUTH)
    assert [p.pid for p in after.processes] == [os.getpid()]
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await served.jobs.ListProcesses(channels_pb2.ListProcessesRequest())
    assert caught.value.code() == grpc.StatusCode.UNAUTHENTICATED


def _instant(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


async def _watch(
    served: Served, request: channels_pb2.WatchEventsRequest, until: str
) -> list[dict[str, Any]]:
    found: list[dict[str, Any]] = []
    call = served.jobs.WatchEvents(request, metadata=AUTH)
    async with asyncio.timeout(20):
        async for reply in call:
            event = json_format.MessageToDict(reply.event, preserving_proto_field_name=True)
            found.append(event)
            if event["event"] == until:
                call.cancel()
                return found
    raise AssertionError("the stream ended")


async def test_watch_events_streams_a_jobs_events_and_resumes_after_an_id(
    served: Served,
) -> None:
    watching = asyncio.ensure_future(
        _watch(served, channels_pb2.WatchEventsRequest(channel="sms", job_id="w1"), "completed")
    )
    await asyncio.sleep(0.3)  # subscribed, from now on
    await served.channels.EnqueueSms(
        channels_pb2.EnqueueSmsRequest(payload=SMS, job_id="w1"), metadata=AUTH
    )
    events = await watching
    assert [e["event"] for e in events] == ["waiting", "active", "completed"]
    assert {e["job_id"] for e in events} == {"w1"}
    assert events[1]["data"] == {"attempt": 1.0}  # a Struct's numbers are doubles
    assert datetime.fromisoformat(events[0]["at"].replace("Z", "+00:00")).year >= 2024

    resumed = await _watch(
        served,
        channels_pb2.WatchEventsRequest(channel="sms", job_id="w1", after=events[0]["id"]),
        "completed",
    )
    assert resumed == events[1:]

    for request, code in (
        (channels_pb2.WatchEventsRequest(channel="sms", after="soon"), "INVALID_ARGUMENT"),
        (channels_pb2.WatchEventsRequest(channel="nope"), "NOT_FOUND"),
    ):
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await _watch(served, request, "completed")
        assert caught.value.code().name == code, caught.value.details()
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        async for _ in served.jobs.WatchEvents(channels_pb2.WatchEventsRequest(channel="sms")):
            pass
    assert caught.value.code() == grpc.StatusCode.UNAUTHENTICATED
