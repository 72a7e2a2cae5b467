"""One request, one trace: a `traceparent` sent to the HTTP, gRPC or GraphQL enqueue parents the
enqueue span, whose child is the span around the handler. The app runs in this process
(runtime.testing.running_app, real sockets) so the SDK's in-memory exporter sees both."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from opentelemetry.sdk.trace import ReadableSpan

from generated.proto import channels_pb2, channels_pb2_grpc
from runtime.testing import TestApp, running_app
from tests.otel_support import SpanLog, recorded_spans

TRACE_ID = "4bf92f3577b34da6a3ce929d0e0e4736"
PARENT_ID = "00f067aa0ba902b7"
TRACEPARENT = f"00-{TRACE_ID}-{PARENT_ID}-01"
SMS = {"to": "+14155550100", "body": "traced"}


@pytest.fixture
async def app(redis_url: str) -> AsyncIterator[TestApp]:
    async with running_app(redis_url=redis_url, worker_channels=("sms",)) as app:
        yield app


@pytest.fixture
def spans() -> SpanLog:
    return recorded_spans()


def assert_one_trace(spans: SpanLog, job_id: str, *, parent: str | None) -> None:
    [send] = [s for s in spans.named("send sms") if _attribute(s, "messaging.message.id") == job_id]
    [run] = [
        s for s in spans.named("process sms") if _attribute(s, "messaging.message.id") == job_id
    ]
    assert send.context is not None
    assert run.context is not None
    if parent is None:
        assert send.parent is None  # no caller context: the enqueue starts the trace
    else:
        assert send.parent is not None
        assert f"{send.parent.span_id:016x}" == parent
        assert f"{send.context.trace_id:032x}" == TRACE_ID
    assert run.context.trace_id == send.context.trace_id
    assert run.parent is not None
    assert run.parent.span_id == send.context.span_id
    assert _attribute(run, "channelkit.attempt") == 1
    assert _attribute(run, "messaging.destination.name") == "sms"


async def test_an_http_request_with_traceparent_is_one_trace_down_to_the_handler(
    app: TestApp, spans: SpanLog
) -> None:
    assert app.http is not None
    response = await app.http.post(
        "/channels/sms/jobs", json=SMS, headers={"traceparent": TRACEPARENT}
    )
    assert response.status_code == 202, response.text
    job_id = response.json()["id"]
    await app.drain("sms")
    assert_one_trace(spans, job_id, parent=PARENT_ID)


async def test_an_http_request_without_traceparent_starts_a_trace_at_the_enqueue(
    app: TestApp, spans: SpanLog
) -> None:
    assert app.http is not None
    response = await app.http.post("/channels/sms/jobs", json=SMS)
    assert response.status_code == 202, response.text
    await app.drain("sms")
    assert_one_trace(spans, response.json()["id"], parent=None)


async def test_a_grpc_call_with_traceparent_metadata_is_one_trace(
    app: TestApp, spans: SpanLog
) -> None:
    assert app.grpc_channel is not None
    stub = channels_pb2_grpc.ChannelsServiceStub(app.grpc_channel)
    reply = await stub.EnqueueSms(
        channels_pb2.EnqueueSmsRequest(
            payload=channels_pb2.SmsPayload(to=SMS["to"], body=SMS["body"])
        ),
        metadata=(("traceparent", TRACEPARENT),),
    )
    await app.drain("sms")
    assert_one_trace(spans, reply.job_id, parent=PARENT_ID)


async def test_a_graphql_mutation_with_traceparent_is_one_trace(
    app: TestApp, spans: SpanLog
) -> None:
    assert app.http is not None
    response = await app.http.post(
        "/graphql",
        json={
            "query": "mutation($p: SmsPayloadInput!) { enqueueSms(payload: $p) { id } }",
            "variables": {"p": SMS},
        },
        headers={"traceparent": TRACEPARENT},
    )
    assert response.status_code == 200, response.text
    job_id = response.json()["data"]["enqueueSms"]["id"]
    await app.drain("sms")
    assert_one_trace(spans, job_id, parent=PARENT_ID)


def _job_id(span: ReadableSpan) -> object:
    return _attribute(span, "messaging.message.id")


def _attribute(span: ReadableSpan, name: str) -> object:
    return (span.attributes or {}).get(name)
