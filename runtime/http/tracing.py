"""ASGI middleware: a request's W3C trace context (`traceparent`) parents what it enqueues.

Only installed when the OpenTelemetry API is (runtime.engine.tracing.ENABLED). A request
without a `traceparent` header, or one that an instrumented server already wrapped in a
span, passes through untouched. It covers every route of the app, GraphQL's included.
"""

from __future__ import annotations

from runtime.engine.tracing import TRACE_HEADERS, remote_parent
from runtime.http.metrics import ASGIApp, Receive, Scope, Send

__all__ = ["TraceContextMiddleware"]

_WANTED = tuple(name.encode() for name in TRACE_HEADERS)


class TraceContextMiddleware:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        carrier = {
            name.decode("latin-1"): value.decode("latin-1")
            for name, value in scope["headers"]
            if name in _WANTED
        }
        with remote_parent(carrier):
            await self.app(scope, receive, send)
