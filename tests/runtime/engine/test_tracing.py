"""Trace context through the job message: the enqueue span is the parent of every run's
span (retries are new spans in the same trace), with channel, job id and attempt."""

from __future__ import annotations

import json

import pytest
from opentelemetry.trace import SpanKind, StatusCode
from redis.asyncio import Redis

from runtime.engine.channel import Backoff, Retry
from runtime.engine.client import Client
from runtime.engine.consumer import ChannelConsumer
from runtime.engine.context import JobContext
from runtime.engine.keys import ChannelKeys
from runtime.engine.metrics import Metrics
from tests.conftest import run_python
from tests.otel_support import SpanLog, recorded_spans
from tests.runtime.engine.support import (
    CHANNEL,
    Message,
    add,
    eventually,
    make_channel,
    message,
    state_of,
)


@pytest.fixture
def spans() -> SpanLog:
    return recorded_spans()


async def test_each_run_is_a_child_of_the_enqueue_span_and_retries_share_the_trace(
    redis: Redis, keys: ChannelKeys, client: Client, spans: SpanLog
) -> None:
    attempts: list[int] = []

    async def flaky(payload: Message, context: JobContext) -> None:
        attempts.append(context.attempt)
        if context.attempt < 3:
            raise RuntimeError(f"attempt {context.attempt} fails")

    channel = make_channel(flaky, retry=Retry(attempts=3, backoff=Backoff("fixed", 50)))
    consumer = ChannelConsumer(channel, client, consumer="c1", metrics=Metrics().channel(CHANNEL))
    await consumer.start()
    try:
        job_id = await client.enqueue(CHANNEL, Message(n=1))
        await eventually(lambda: _state_is(redis, keys, job_id, "completed"), what="three attempts")
    finally:
        await consumer.stop(5)

    assert attempts == [1, 2, 3]
    [send] = spans.named(f"send {CHANNEL}")
    runs = spans.named(f"process {CHANNEL}")
    runs.sort(key=lambda span: str((span.attributes or {}).get("channelkit.attempt")))
    assert send.kind is SpanKind.PRODUCER
    assert send.attributes is not None
    assert send.attributes["messaging.destination.name"] == CHANNEL
    assert send.attributes["messaging.message.id"] == job_id
    assert len(runs) == 3
    for attempt, run in enumerate(runs, start=1):
        assert run.kind is SpanKind.CONSUMER
        assert run.context is not None
        assert send.context is not None
        assert run.context.trace_id == send.context.trace_id
        assert run.parent is not None
        assert run.parent.span_id == send.context.span_id
        assert run.attributes is not None
        assert run.attributes["messaging.message.id"] == job_id
        assert run.attributes["messaging.destination.name"] == CHANNEL
        assert run.attributes["channelkit.attempt"] == attempt
    assert [run.status.status_code for run in runs] == [
        StatusCode.ERROR,
        StatusCode.ERROR,
        StatusCode.UNSET,
    ]
    assert runs[0].events
    assert runs[0].events[0].name == "exception"


async def test_the_message_carries_the_w3c_traceparent_in_its_labels(
    redis: Redis, keys: ChannelKeys, client: Client, spans: SpanLog
) -> None:
    job_ids = await client.enqueue_many(CHANNEL, [Message(n=1), Message(n=2)])
    # waiting jobs keep their message in the job hash until a worker takes them
    messages = [await redis.hget(keys.job(job_id), "data") for job_id in job_ids]
    first, second = (json.loads(message)["labels"] for message in messages if message)
    assert first == second  # one span for the batch
    labels = first
    [send] = spans.named(f"send {CHANNEL}")
    assert send.context is not None
    version, trace_id, span_id, flags = labels["traceparent"].split("-")
    assert version == "00"
    assert int(flags, 16) & 1
    assert int(trace_id, 16) == send.context.trace_id
    assert int(span_id, 16) == send.context.span_id
    assert send.attributes is not None
    assert send.attributes["messaging.batch.message_count"] == 2
    assert len(job_ids) == 2


async def test_a_job_enqueued_without_trace_context_runs_in_a_root_span(
    redis: Redis, keys: ChannelKeys, client: Client, spans: SpanLog
) -> None:
    """A message from a producer that does not trace (a plain taskiq `kiq`, an older
    Channelkit): its run is a trace of its own."""
    done: list[int] = []

    async def handler(payload: Message, context: JobContext) -> None:
        done.append(payload.n)

    consumer = ChannelConsumer(
        make_channel(handler), client, consumer="c1", metrics=Metrics().channel(CHANNEL)
    )
    await consumer.start()
    try:
        await add(redis, keys, message("untraced", n=7))
        await eventually(lambda: _state_is(redis, keys, "untraced", "completed"), what="run")
    finally:
        await consumer.stop(5)
    [run] = spans.named(f"process {CHANNEL}")
    assert run.parent is None
    assert done == [7]


def test_without_the_opentelemetry_api_nothing_is_traced_and_labels_stay_empty() -> None:
    """The `tracing` extra is optional: with `opentelemetry` missing the flag is off and a
    message is byte for byte what it was before tracing existed."""
    result = run_python(
        "import sys\n"
        "sys.modules['opentelemetry'] = None  # as if not installed\n"
        "from runtime.engine import tracing\n"
        "from runtime.engine.client import encode_job\n"
        "from tests.runtime.engine.support import Message\n"
        "assert tracing.ENABLED is False\n"
        "print(encode_job('jobs', Message(n=1), 'j1').decode())\n"
    )
    assert result.returncode == 0, result.stderr
    assert '"labels":{}' in result.stdout


async def _state_is(redis: Redis, keys: ChannelKeys, job_id: str, state: str) -> bool:
    return await state_of(redis, keys, job_id) == state
