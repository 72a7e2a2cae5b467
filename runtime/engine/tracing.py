"""OpenTelemetry traces across the enqueue: a job carries its trace context to its handler.

The enqueue (`Client.enqueue`, `Client.enqueue_many`) runs in a PRODUCER span
`send <channel>` and writes the W3C trace context (`traceparent`, `tracestate`) into the
job's taskiq message labels, where taskiq's own OpenTelemetry middleware puts it too. Each
run of the job is a CONSUMER span `process <channel>` around the handler, a child of the
enqueue span: the request, the enqueue and every attempt (retries included) are one trace.

The OpenTelemetry API is optional (the `tracing` extra). It is imported once, here; without
it `ENABLED` is False and the enqueue and run paths check that one flag and do nothing
more. With the API but no tracer provider set (no SDK configured), `recording()` is False:
no span is started and nothing is written into the message. The transports call
`remote_parent` with the request's headers (HTTP, GraphQL) or metadata (gRPC), so a
caller's `traceparent` becomes the enqueue span's parent.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import Any

TRACER_NAME = "channelkit"

try:
    from opentelemetry import context as otel_context
    from opentelemetry import propagate, trace
except ImportError:  # the `tracing` extra is not installed
    ENABLED = False
else:
    ENABLED = True
    # A proxy until the app sets a tracer provider, then that provider's tracer.
    _TRACER = trace.get_tracer(TRACER_NAME)
    _NOT_RECORDING = (trace.ProxyTracerProvider, trace.NoOpTracerProvider)

__all__ = ["ENABLED", "TRACER_NAME", "enqueue_span", "recording", "remote_parent", "run_span"]
# The carriers' keys the W3C propagator reads; anything else in headers is not looked at.
TRACE_HEADERS = ("traceparent", "tracestate")


def recording() -> bool:
    """Whether an app set a tracer provider (the SDK's, say): only then are spans made.
    Asked per enqueue and per run, as the provider may be set after import; once set it
    stays (OpenTelemetry sets it once per process), so a yes is remembered."""
    global _provider_set
    if not _provider_set:
        _provider_set = not isinstance(trace.get_tracer_provider(), _NOT_RECORDING)
    return _provider_set


_provider_set = False


@contextmanager
def enqueue_span(channel: str, job_ids: list[str]) -> Iterator[dict[str, str]]:
    """A PRODUCER span for enqueueing `job_ids`; yields the labels to store in the jobs."""
    attributes: dict[str, Any] = {
        "messaging.system": "channelkit",
        "messaging.operation.type": "send",
        "messaging.destination.name": channel,
    }
    if len(job_ids) == 1:
        attributes["messaging.message.id"] = job_ids[0]
    else:
        attributes["messaging.batch.message_count"] = len(job_ids)
    with _TRACER.start_as_current_span(
        f"send {channel}", kind=trace.SpanKind.PRODUCER, attributes=attributes
    ):
        labels: dict[str, str] = {}
        propagate.inject(labels)
        yield labels


@contextmanager
def run_span(channel: str, job_id: str, attempt: int, message: bytes) -> Iterator[None]:
    """A CONSUMER span around one run of a job, the child of the span that enqueued it
    (read from the message's labels); an exception the handler raises is recorded on it."""
    with _TRACER.start_as_current_span(
        f"process {channel}",
        context=propagate.extract(_labels(message)),
        kind=trace.SpanKind.CONSUMER,
        attributes={
            "messaging.system": "channelkit",
            "messaging.operation.type": "process",
            "messaging.destination.name": channel,
            "messaging.message.id": job_id,
            "channelkit.attempt": attempt,
        },
    ):
        yield


@contextmanager
def remote_parent(carrier: Mapping[str, str]) -> Iterator[None]:
    """Make the trace context in `carrier` (a request's headers) the current parent, unless
    a span is current already (an instrumented server made one for the request)."""
    if not ENABLED or not any(key in carrier for key in TRACE_HEADERS):
        yield
        return
    if trace.get_current_span().get_span_context().is_valid:
        yield
        return
    token = otel_context.attach(propagate.extract(carrier))
    try:
        yield
    finally:
        otel_context.detach(token)


def _labels(message: bytes) -> dict[str, str]:
    """The string labels of a taskiq message (a message that is not JSON has none)."""
    try:
        labels = json.loads(message).get("labels")
    except (ValueError, AttributeError):
        return {}
    if not isinstance(labels, dict):
        return {}
    return {key: value for key, value in labels.items() if isinstance(value, str)}
