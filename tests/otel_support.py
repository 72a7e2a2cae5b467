"""One OpenTelemetry SDK tracer provider for the test process, recording into memory.

OpenTelemetry lets a process set its global tracer provider once; every tracing test
shares this one and clears its exporter first (`recorded_spans`).
"""

from __future__ import annotations

from opentelemetry import trace
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

__all__ = ["SpanLog", "recorded_spans"]

_EXPORTER = InMemorySpanExporter()
_provider: TracerProvider | None = None


class SpanLog:
    """The spans finished since the test began."""

    def __init__(self, exporter: InMemorySpanExporter) -> None:
        self._exporter = exporter

    def all(self) -> list[ReadableSpan]:
        return list(self._exporter.get_finished_spans())

    def named(self, name: str) -> list[ReadableSpan]:
        return [span for span in self.all() if span.name == name]


def recorded_spans() -> SpanLog:
    global _provider
    if _provider is None:
        _provider = TracerProvider()
        _provider.add_span_processor(SimpleSpanProcessor(_EXPORTER))
        trace.set_tracer_provider(_provider)
    _EXPORTER.clear()
    return SpanLog(_EXPORTER)
