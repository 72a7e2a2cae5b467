"""The Litestar application: the generated channel routes plus health, behind API keys."""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Any

from litestar import Controller, Litestar, MediaType, Request, Response, Router, get
from litestar.connection import ASGIConnection
from litestar.datastructures import State
from litestar.di import Provide
from litestar.exceptions import NotAuthorizedException, ValidationException
from litestar.handlers import HTTPRouteHandler
from litestar.handlers.base import BaseRouteHandler
from litestar.logging import LoggingConfig
from litestar.openapi import OpenAPIConfig
from litestar.response import Redirect
from litestar.status_codes import HTTP_422_UNPROCESSABLE_ENTITY, HTTP_503_SERVICE_UNAVAILABLE
from pydantic import BaseModel

from runtime.auth import ApiKeys
from runtime.engine.client import Client
from runtime.engine.jobs import STATES
from runtime.engine.limits import HIGHEST_PRIORITY, LOWEST_PRIORITY
from runtime.engine.metrics import Metrics
from runtime.errors import EnqueueError, InvalidJobRequest, RedisUnavailable
from runtime.http.body import check_body_depth, check_json_body
from runtime.http.docs_ui import docs_assets_router, docs_render_plugins
from runtime.http.enqueue import Enqueuer
from runtime.http.openapi import (
    API_KEY_SECURITY,
    PayloadSchemaPlugin,
    api_key_components,
    declare_tags,
    document_api_keys,
    use_exact_payload_schemas,
)
from runtime.http.processes import list_processes
from runtime.http.registration import IndexedApp, IndexedRouter

__all__ = ["build_http_app", "validation_error_body"]

ReadinessCheck = Callable[[], Awaitable[str | None]]

logger = logging.getLogger("channelkit.http")

# Status codes of requests refused as the client's fault: answered, not errors to log.
_CLIENT_ERRORS = (400, 401, 403, 404, 405, 409, 413, 415, 422, 429)
# Answered 503 with a reason (Redis unavailable) and logged by the handler, at most once
# every LOG_OUTAGE_EVERY_S: no line with a traceback per request. Exact classes: Litestar
# matches the raised type itself.
_UNAVAILABLE: tuple[type[Exception], ...] = (RedisUnavailable, EnqueueError)
LOG_OUTAGE_EVERY_S = 30.0


def _field_path(key: Any) -> str:
    return str(key) if key not in (None, "") else "body"


def validation_error_body(exception: ValidationException) -> dict[str, Any]:
    """`{"detail": ..., "errors": [{"field": "recipients[0].email", "message": ...}]}`."""
    errors = []
    for item in exception.extra if isinstance(exception.extra, list) else []:
        if isinstance(item, dict):
            errors.append(
                {"field": _field_path(item.get("key")), "message": str(item.get("message", ""))}
            )
    return {
        "detail": "invalid request: " + "; ".join(f"{e['field']}: {e['message']}" for e in errors)
        if errors
        else exception.detail,
        "errors": errors,
    }


# Redis down, frozen, out of memory or read-only: the request may succeed in a moment.
_RETRY_AFTER_S = 1


class _OutageLog:
    """One warning per outage (or per LOG_OUTAGE_EVERY_S while it lasts), not per request."""

    def __init__(self) -> None:
        self._last = -LOG_OUTAGE_EVERY_S

    def __call__(self, error: RedisUnavailable) -> None:
        now = time.monotonic()
        if now - self._last >= LOG_OUTAGE_EVERY_S:
            self._last = now
            logger.warning("answering 503 while Redis is unavailable: %s", error)


def _redis_unavailable_handler(
    log: _OutageLog,
) -> Callable[[Request[Any, Any, State], RedisUnavailable], Response[Any]]:
    def handle(_: Request[Any, Any, State], error: RedisUnavailable) -> Response[Any]:
        """503 with the reason and Retry-After: a dependency outage, not a server bug."""
        log(error)
        return _unavailable_response(error)

    return handle


def _unavailable_response(error: RedisUnavailable) -> Response[Any]:
    return Response(
        {"status_code": HTTP_503_SERVICE_UNAVAILABLE, "detail": str(error)},
        status_code=HTTP_503_SERVICE_UNAVAILABLE,
        media_type=MediaType.JSON,
        headers={"Retry-After": str(_RETRY_AFTER_S)},
    )


def _on_invalid_job_request(
    request: Request[Any, Any, State], error: InvalidJobRequest
) -> Response[Any]:
    """A job id, delay or listing bound the engine refused: 422 naming the field, as any
    other invalid input ("job_id: ..." names `job_id`)."""
    field, _, message = str(error).partition(": ")
    if not message:
        field, message = "", str(error)
    return _on_validation_error(
        request,
        ValidationException(detail=str(error), extra=[{"key": field, "message": message}]),
    )


def _on_validation_error(
    _: Request[Any, Any, State], exception: ValidationException
) -> Response[Any]:
    return Response(
        validation_error_body(exception),
        status_code=HTTP_422_UNPROCESSABLE_ENTITY,
        media_type=MediaType.JSON,
    )


def _api_key_guard(
    keys: Sequence[str],
) -> Callable[[ASGIConnection[Any, Any, Any, Any], BaseRouteHandler], None]:
    api_keys = ApiKeys(keys)

    def guard(connection: ASGIConnection[Any, Any, Any, Any], _: BaseRouteHandler) -> None:
        if not api_keys.allows(connection.headers.get("authorization")):
            raise NotAuthorizedException(
                detail="missing or wrong API key: send 'Authorization: Bearer <key>'",
                headers={"WWW-Authenticate": "Bearer"},
            )

    return guard


def _health_controller(readiness: ReadinessCheck) -> type[Controller]:
    class HealthController(Controller):
        path = "/health"
        tags = ("health",)

        @get("/live", summary="The process is running")
        async def live(self) -> dict[str, str]:
            return {"status": "ok"}

        @get("/ready", summary="Redis reachable and every enabled component up")
        async def ready(self) -> Response[dict[str, str]]:
            problem = await readiness()
            if problem:
                return Response(
                    {"status": "unavailable", "reason": problem},
                    status_code=HTTP_503_SERVICE_UNAVAILABLE,
                )
            return Response({"status": "ok"})

    return HealthController


def _metrics_route(metrics: Metrics, client: Client, channels: Sequence[str]) -> HTTPRouteHandler:
    @get("/metrics", summary="Prometheus metrics of this process", include_in_schema=False)
    async def scrape() -> Response[bytes]:
        for counts in await client.counts_many(channels):
            for state in STATES:
                metrics.set_depth(counts.channel, state, getattr(counts, state))
            metrics.set_paused(counts.channel, counts.paused)
            for priority in range(HIGHEST_PRIORITY, LOWEST_PRIORITY + 1):
                waiting = counts.waiting_by_priority.get(priority, 0)
                metrics.set_waiting_by_priority(counts.channel, priority, waiting)
        return Response(metrics.render(), media_type="text/plain; version=0.0.4")

    return scrape


def build_metrics_app(
    metrics: Metrics, client: Client, channels: Sequence[str], readiness: ReadinessCheck
) -> Litestar:
    """/metrics and /health only, for a separate --metrics-port (worker-only processes)."""
    return Litestar(
        route_handlers=[_metrics_route(metrics, client, channels), _health_controller(readiness)],
        exception_handlers={RedisUnavailable: _redis_unavailable_handler(_OutageLog())},
        logging_config=LoggingConfig(
            configure_root_logger=False,
            log_exceptions="always",
            disable_stack_trace=set(_UNAVAILABLE),
        ),
        openapi_config=None,
    )


@get("/docs", include_in_schema=False, sync_to_thread=False)
def _docs_redirect() -> Redirect:
    """Where FastAPI serves its API docs: users try it first."""
    return Redirect("/schema")


def build_http_app(
    controllers: Sequence[type[Controller]],
    client: Client,
    readiness: ReadinessCheck,
    *,
    metrics: Metrics,
    channels: Sequence[str],
    payload_models: Sequence[type[BaseModel]] = (),
    api_keys: Sequence[str] = (),
    max_body_size: int = 1024 * 1024,
    title: str = "Channelkit",
    resources: object = None,
    extra_routes: Sequence[Router] = (),
    extra_state: Mapping[str, Any] | None = None,
    mounted: Sequence[Any] = (),
) -> Litestar:
    """`resources` (what the app's resources factory yielded) is the `resources`
    dependency of every route, and `app.state.resources`. `extra_routes` (the dashboard's,
    runtime.ui) guard themselves; `extra_state` goes into `app.state` for them. `mounted`
    route handlers (the GraphQL controller) come with their own guards, stay out of the
    OpenAPI document and parse their own bodies, which are first checked for depth
    (runtime.http.body)."""
    extra = Router(path="/", route_handlers=list(mounted), before_request=check_body_depth)
    protected = IndexedRouter(
        path="/",
        route_handlers=[*controllers, list_processes],
        guards=[_api_key_guard(api_keys)] if api_keys else [],
        before_request=check_json_body,
        security=API_KEY_SECURITY if api_keys else None,
    )

    # Sync and cached: the same object for every request, resolved without a coroutine.
    def provide_client() -> Client:
        return client

    def provide_enqueuer() -> Enqueuer:
        return client

    def provide_resources() -> Any:
        return resources

    schedule_payloads = dict(zip(channels, payload_models, strict=False))

    def provide_schedule_payloads() -> Mapping[str, type[BaseModel]]:
        return schedule_payloads

    app = IndexedApp(
        route_handlers=[
            protected,
            _health_controller(readiness),
            _metrics_route(metrics, client, channels),
            _docs_redirect,
            docs_assets_router(),
            *extra_routes,
            *([extra] if mounted else []),
        ],
        dependencies={
            "enqueuer": Provide(provide_enqueuer, use_cache=True, sync_to_thread=False),
            "client": Provide(provide_client, use_cache=True, sync_to_thread=False),
            "resources": Provide(provide_resources, use_cache=True, sync_to_thread=False),
            "schedule_payloads": Provide(
                provide_schedule_payloads, use_cache=True, sync_to_thread=False
            ),
        },
        state=State({**(extra_state or {}), "resources": resources}),
        exception_handlers={
            ValidationException: _on_validation_error,
            InvalidJobRequest: _on_invalid_job_request,
            RedisUnavailable: _redis_unavailable_handler(_OutageLog()),
        },
        request_max_body_size=max_body_size,
        openapi_config=OpenAPIConfig(
            title=title,
            version="1.0.0",
            description="Enqueue jobs on each channel and follow them: one set of routes per "
            "channel, each payload's schema as a component.",
            components=[api_key_components()] if api_keys else [],
            render_plugins=docs_render_plugins(),
        ),
        plugins=[PayloadSchemaPlugin()],
        # Given explicitly so Litestar does not install its own root queue handler:
        # the process's logging is configured once, by runtime serve. Its "litestar"
        # logger propagates to that root handler (so LOG_FORMAT and LOG_LEVEL apply) and
        # a refused request (4xx) is not logged as an uncaught exception with a traceback.
        logging_config=LoggingConfig(
            configure_root_logger=False,
            log_exceptions="always",
            disable_stack_trace={*_CLIENT_ERRORS, *_UNAVAILABLE},
            loggers={"litestar": {"level": "NOTSET", "handlers": [], "propagate": True}},
        ),
    )
    if payload_models:
        use_exact_payload_schemas(app, payload_models)
    if api_keys:
        document_api_keys(app)
    declare_tags(app)
    return app
