"""ASGI middleware that times each HTTP request into the process's `Metrics`."""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

from runtime.engine.metrics import Metrics

__all__ = ["RequestMetricsMiddleware"]

Scope = dict[str, Any]
Receive = Callable[[], Awaitable[dict[str, Any]]]
Send = Callable[[dict[str, Any]], Awaitable[None]]
ASGIApp = Callable[..., Awaitable[None]]


class RequestMetricsMiddleware:
    """ASGI middleware timing each HTTP request by its route template (not its path, so
    job ids do not explode the label set)."""

    def __init__(self, app: ASGIApp, metrics: Metrics, skip: Sequence[str] = ("/metrics",)) -> None:
        self.app = app
        self.metrics = metrics
        self.skip = tuple(skip)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        # Lifespan and websocket scopes pass straight through.
        if scope["type"] != "http" or scope["path"].startswith(self.skip):
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500

        async def record_status(message: dict[str, Any]) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
            await send(message)

        try:
            await self.app(scope, receive, record_status)
        finally:
            route = scope.get("path_template") or "unmatched"
            self.metrics.observe_http(route, scope["method"], status, time.perf_counter() - started)
