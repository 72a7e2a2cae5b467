"""The one process: HTTP API, gRPC server and every channel's workers on one event loop."""

from __future__ import annotations

import asyncio
import contextlib
import importlib
import logging
import sys
from collections.abc import Generator, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

import grpc
import uvicorn
from grpc_health.v1 import health_pb2
from litestar import Litestar

from runtime.engine import tracing
from runtime.engine.channel import Channel
from runtime.engine.client import Client
from runtime.engine.connection import check_redis, redacted, redis_problem
from runtime.engine.context import ResourcesFactory
from runtime.engine.metrics import Metrics
from runtime.engine.processes import ProcessHeartbeat
from runtime.engine.scheduler import Scheduler
from runtime.engine.workers import Workers, consumer_name
from runtime.errors import ConfigError, ResourcesError, UnknownChannelError
from runtime.grpc.metrics import MetricsInterceptor
from runtime.grpc.schedules import SchedulesServicer
from runtime.grpc.server import build_grpc_server
from runtime.http.app import build_http_app, build_metrics_app
from runtime.http.metrics import RequestMetricsMiddleware
from runtime.http.tracing import TraceContextMiddleware
from runtime.serve.embedded_redis import DataDirLock, EmbeddedRedis
from runtime.serve.http_timeouts import HeadTimeoutProtocol
from runtime.serve.ports import port_free, reuse_port_socket
from runtime.serve.settings import ServeSettings

__all__ = ["GeneratedApp", "Service", "load_generated_app"]

logger = logging.getLogger("channelkit.serve")

REDIS_TIMEOUT_S = 5.0


@dataclass(frozen=True, slots=True)
class GeneratedApp:
    """What `runtime serve` takes from a generated package."""

    package: str
    channels: tuple[Channel[Any, Any], ...]
    routes: ModuleType
    grpc_service: ModuleType
    resources: ResourcesFactory[Any] | None = None
    """channels.yaml's `resources:` factory (the registry's RESOURCES), if it names one."""


def load_generated_app(package: str, project_dir: Path | None = None) -> GeneratedApp:
    """Import `<package>.registry` and friends, finding the project's packages as uvicorn
    and celery do: the project folder (the current one by default) goes on sys.path."""
    folder = str((project_dir or Path.cwd()).resolve())
    if folder not in sys.path:
        sys.path.insert(0, folder)
    try:
        registry = importlib.import_module(f"{package}.registry")
    except ModuleNotFoundError as error:
        raise ConfigError(
            f"cannot import the generated package {package!r} from {folder} ({error}); "
            "run `runtime generate` there, or pass --app"
        ) from None
    return GeneratedApp(
        package=package,
        channels=tuple(registry.CHANNELS),
        routes=importlib.import_module(f"{package}.routes"),
        grpc_service=importlib.import_module(f"{package}.grpc_service"),
        resources=getattr(registry, "RESOURCES", None),
    )


class _Uvicorn(uvicorn.Server):
    """uvicorn that leaves signals to us (it would re-raise SIGTERM after serving)."""

    @contextlib.contextmanager
    def capture_signals(self) -> Generator[None, None, None]:
        yield


class _AsgiServer:
    """One uvicorn server on the running loop."""

    def __init__(self, app: Any, name: str) -> None:
        self._app = app
        self._name = name
        self._server: _Uvicorn | None = None
        self._task: asyncio.Task[None] | None = None

    async def start(
        self, host: str, port: int, reuse_port: bool = False, ws_max_size: int = 16 * 1024 * 1024
    ) -> int:
        """Serve until stop(); returns the bound port (useful with port 0). With
        `reuse_port`, the socket is bound with SO_REUSEPORT: processes that all do so share
        the port, and the kernel spreads connections among them. A WebSocket message over
        `ws_max_size` bytes closes its connection (1009)."""
        sockets = [reuse_port_socket(host, port)] if reuse_port else None
        config = uvicorn.Config(
            self._app,
            host=host,
            port=port,
            log_config=None,
            lifespan="on",
            access_log=False,
            http=HeadTimeoutProtocol,  # idle and slowloris connections are closed
            ws_max_size=ws_max_size,
            # events are a few hundred bytes: deflating each one for each subscriber cost
            # more CPU than it saved bandwidth (measured: it held the loop for seconds)
            ws_per_message_deflate=False,
        )
        server = self._server = _Uvicorn(config)
        task = self._task = asyncio.create_task(server.serve(sockets), name=self._name)
        while not server.started:
            if task.done():
                await task
                raise ConfigError(f"the {self._name} server did not start on {host}:{port}")
            await asyncio.sleep(0.01)
        return int(server.servers[0].sockets[0].getsockname()[1])

    async def stop(self) -> None:
        if self._server is not None and self._task is not None:
            self._server.should_exit = True
            await self._task


class Service:
    """Start and stop every enabled component; `start()` returns once all are ready."""

    def __init__(self, settings: ServeSettings, app: GeneratedApp) -> None:
        self.settings = settings
        self.app = app
        self.embedded: EmbeddedRedis | None = None
        self._data_lock: DataDirLock | None = None
        self.redis_url = settings.redis_url or ""
        self.client: Client | None = None
        self.workers: Workers | None = None
        self.scheduler: Scheduler | None = None
        self.metrics = Metrics()
        self.http_port: int | None = None
        self.grpc_port: int | None = None
        self.metrics_port: int | None = None
        self.heartbeat: ProcessHeartbeat | None = None
        self._http: _AsgiServer | None = None
        self._metrics_server: _AsgiServer | None = None
        self._grpc: grpc.aio.Server | None = None
        self.resources: object = None
        """What the app's resources factory yielded; None without one."""
        self._resources_stack = contextlib.AsyncExitStack()

    def worker_channels(self) -> Sequence[Channel[Any, Any]]:
        wanted = self.settings.worker_channels
        known = {channel.name: channel for channel in self.app.channels}
        for name in wanted:
            if name not in known:
                raise UnknownChannelError(name, sorted(known))
        return [known[name] for name in wanted] if wanted else list(self.app.channels)

    async def readiness(self) -> str | None:
        """None when ready; otherwise why not: Redis unreachable or out of memory, a
        cluster that lost a slot's primary or a Sentinel set without a master, or a
        channel's worker unable to take jobs (its consumer group missing, say)."""
        if self.client is None:
            return "starting"
        problem = await redis_problem(self.client.redis)
        if problem:
            return problem
        if self.workers is not None:
            return self.workers.problem()
        return None

    async def start(self) -> None:
        settings = self.settings
        workers_for = self.worker_channels() if settings.enable_workers else []
        self._check_ports()
        if not self.redis_url:
            data_dir = settings.data_dir.resolve()
            self._data_lock = DataDirLock(data_dir).acquire()
            self.embedded = EmbeddedRedis(data_dir).start()
            self.redis_url = self.embedded.url
            logger.warning(
                "no REDIS_URL: started an embedded Redis persisting to %s at %s; "
                "set REDIS_URL (or --redis-url) to use a real one",
                settings.data_dir,
                self.embedded.how_to_connect(),
            )
        else:
            logger.info("Redis: %s", redacted(self.redis_url))
        # Bounded waits: a frozen or unreachable Redis is a 503 after at most this long,
        # never a request that hangs (blocking reads wait READ_BLOCK_MS, well below it).
        self.client = Client.from_url(
            self.redis_url,
            prefix=settings.key_prefix,
            socket_timeout=REDIS_TIMEOUT_S,
            socket_connect_timeout=REDIS_TIMEOUT_S,
        )
        self.client.metrics = self.metrics
        # The URL's kind must match the server's (a cluster URL at a single Redis or the
        # reverse is a ConfigError naming REDIS_URL), and it must answer.
        await check_redis(self.client.redis)
        await self._enter_resources()
        if workers_for:
            self.workers = Workers(
                workers_for,
                self.client,
                shutdown_timeout=settings.shutdown_timeout,
                metrics=self.metrics,
                resources=self.resources,
            )
            await self.workers.start()
        await self._start_schedules(workers_for)
        if settings.enable_grpc:
            await self._start_grpc()
        if settings.enable_api:
            await self._start_http()
        if settings.metrics_port is not None:
            await self._start_metrics(settings.metrics_port)
        self._start_process_heartbeat(workers_for)
        logger.info(
            "ready: http=%s grpc=%s workers=%s",
            f"{settings.http_host}:{self.http_port}" if self.http_port else "off",
            f"{settings.grpc_host}:{self.grpc_port}" if self.grpc_port else "off",
            ",".join(c.name for c in workers_for) or "off",
        )

    async def _start_schedules(self, workers_for: Sequence[Channel[Any, Any]]) -> None:
        """Store channels.yaml's schedules (every channel's: the registry is the truth),
        then, in a process with workers, tick those channels' schedules."""
        assert self.client is not None
        for channel in self.app.channels:
            changed, removed = await self.client.schedules.sync_declared(
                channel.name, channel.schedules
            )
            if changed or removed:
                logger.info(
                    "%s: schedules from channels.yaml stored: %s; removed: %s",
                    channel.name,
                    ", ".join(changed) or "none",
                    ", ".join(removed) or "none",
                )
        if workers_for:
            self.scheduler = Scheduler(workers_for, self.client, metrics=self.metrics)
            self.scheduler.start()

    def _check_ports(self) -> None:
        """A port in use is a one-line ConfigError before Redis or any worker starts."""
        settings = self.settings
        wanted = []
        if settings.enable_api:
            wanted.append(("HTTP", "HTTP_PORT", settings.http_host, settings.http_port))
        if settings.enable_grpc:
            wanted.append(("gRPC", "GRPC_PORT", settings.grpc_host, settings.grpc_port))
        if settings.metrics_port is not None:
            wanted.append(("metrics", "METRICS_PORT", settings.http_host, settings.metrics_port))
        for what, env, host, port in wanted:
            shared = settings.reuse_port and what != "metrics"
            if port and not shared and not port_free(host, port):
                raise ConfigError(
                    f"the {what} port {host}:{port} is in use (another runtime serve?); "
                    f"stop what listens there or choose another with {env}"
                )

    async def _enter_resources(self) -> None:
        """Enter the app's resources factory once, before any job or request; it is exited
        in stop(), after the last job. Raising or hanging is a ResourcesError."""
        factory = self.app.resources
        if factory is None:
            return
        name = f"{getattr(factory, '__module__', '?')}:{getattr(factory, '__qualname__', '?')}"
        timeout = self.settings.resources_timeout
        try:
            async with asyncio.timeout(timeout):
                self.resources = await self._resources_stack.enter_async_context(factory())
        except TimeoutError:
            raise ResourcesError(
                f"the resources factory {name} did not yield within {timeout:g} s "
                "(RESOURCES_TIMEOUT); is it waiting on a service that is down?"
            ) from None
        except Exception as error:
            raise ResourcesError(
                f"the resources factory {name} failed: {type(error).__name__}: {error}"
            ) from error
        logger.info("resources ready: %s yielded %s", name, type(self.resources).__name__)

    async def _start_grpc(self) -> None:
        assert self.client is not None
        client = self.client
        servicer_module = self.app.grpc_service
        schedules = SchedulesServicer(
            client.schedules,
            {channel.name: channel.payload_model for channel in self.app.channels},
            servicer_module.channels_pb2,
        )
        service_names = (
            servicer_module.SERVICE_NAME,
            servicer_module.JOBS_SERVICE_NAME,
            schedules.service_name,
        )

        def add_services(server: grpc.aio.Server) -> None:
            servicer_module.add_to_server(server, client)
            schedules.add_to_server(server)

        server, health = build_grpc_server(
            add_services,
            service_names,
            api_keys=self.settings.api_keys,
            max_message_bytes=self.settings.max_body_size,
            interceptors=[MetricsInterceptor(self.metrics)],
            reuse_port=self.settings.reuse_port,
        )
        self.grpc_port = server.add_insecure_port(
            f"{self.settings.grpc_host}:{self.settings.grpc_port}"
        )
        await server.start()
        for name in ("", *service_names):
            await health.set(name, health_pb2.HealthCheckResponse.SERVING)
        self._grpc = server

    async def _start_http(self) -> None:
        assert self.client is not None
        ui_routes: list[Any] = []
        ui_state: dict[str, Any] = {}
        if self.settings.enable_ui:
            # Imported here: `runtime jobs` imports this module and needs no templates.
            from runtime.ui import build_dashboard

            ui_routes, ui_state = build_dashboard(
                self.client, self.app.channels, self.settings.api_keys
            )
        mounted = self._graphql_handlers()
        with _graphql_warnings(bool(mounted)):
            app = self._build_http_app(mounted, ui_routes, ui_state)
        self._http = _AsgiServer(RequestMetricsMiddleware(_traced(app), self.metrics), "http")
        self.http_port = await self._http.start(
            self.settings.http_host,
            self.settings.http_port,
            self.settings.reuse_port,
            ws_max_size=self.settings.max_body_size,  # GraphQL's WebSocket: as a body
        )

    def _build_http_app(
        self, mounted: list[Any], ui_routes: list[Any], ui_state: dict[str, Any]
    ) -> Litestar:
        assert self.client is not None
        return build_http_app(
            self.app.routes.CONTROLLERS,
            self.client,
            self.readiness,
            metrics=self.metrics,
            channels=[channel.name for channel in self.app.channels],
            payload_models=[channel.payload_model for channel in self.app.channels],
            api_keys=self.settings.api_keys,
            max_body_size=self.settings.max_body_size,
            title=f"Channelkit: {self.app.package}",
            resources=self.resources,
            extra_routes=ui_routes,
            extra_state=ui_state,
            mounted=mounted,
        )

    def _graphql_handlers(self) -> list[Any]:
        """/graphql and GraphiQL's assets, unless ENABLE_GRAPHQL is false (or the package
        predates GraphQL: regenerate it). Imported only then: strawberry is not loaded by
        processes that do not serve GraphQL."""
        assert self.client is not None
        if not self.settings.enable_graphql:
            return []
        name = f"{self.app.package}.graphql_schema"
        try:
            module = importlib.import_module(name)
        except ModuleNotFoundError as error:
            if error.name != name:
                raise
            logger.warning(
                "%s has no graphql_schema module: run `runtime generate` to serve GraphQL",
                self.app.package,
            )
            return []
        from runtime.graphql.app import graphql_handlers

        return graphql_handlers(
            module.SCHEMA,
            self.client,
            api_keys=self.settings.api_keys,
            title=self.app.package,
        )

    async def _start_metrics(self, port: int) -> None:
        """/metrics and /health on a port of their own: for worker-only processes."""
        assert self.client is not None
        app = build_metrics_app(
            self.metrics, self.client, [c.name for c in self.app.channels], self.readiness
        )
        self._metrics_server = _AsgiServer(app, "metrics")
        self.metrics_port = await self._metrics_server.start(self.settings.http_host, port)

    def _start_process_heartbeat(self, workers_for: Sequence[Channel[Any, Any]]) -> None:
        """This process in the registry of live ones (the dashboard, `runtime workers`)."""
        assert self.client is not None
        workers = self.workers
        self.heartbeat = ProcessHeartbeat(
            self.client.redis,
            self.settings.key_prefix,
            workers.consumer if workers is not None else consumer_name(),
            app=self.app.package,
            worker_channels=[channel.name for channel in workers_for],
            http=f"{self.settings.http_host}:{self.http_port}" if self.http_port else "",
            grpc=f"{self.settings.grpc_host}:{self.grpc_port}" if self.grpc_port else "",
            running_jobs=(lambda: workers.running) if workers is not None else None,
        )
        self.heartbeat.start()

    async def stop(self) -> None:
        """Stop accepting, let running jobs finish (up to the shutdown timeout), clean up."""
        if self.heartbeat is not None:
            await self.heartbeat.stop()
        if self._http is not None:
            await self._http.stop()
        if self._grpc is not None:
            await self._grpc.stop(grace=min(5.0, self.settings.shutdown_timeout))
        if self.scheduler is not None:
            await self.scheduler.stop()
        if self.workers is not None:
            clean = await self.workers.stop()
            if not clean:
                logger.warning(
                    "shutdown timeout: unfinished jobs left unacknowledged for other processes"
                )
        if self._metrics_server is not None:
            await self._metrics_server.stop()
        try:
            await self._resources_stack.aclose()
        except Exception:
            logger.exception("the resources factory failed while closing")
        if self.client is not None:
            await self.client.close()
        if self.embedded is not None:
            self.embedded.stop()  # last: every outcome has been recorded
        if self._data_lock is not None:
            self._data_lock.release()


def _traced(app: Litestar) -> Any:
    """The app, behind the W3C trace context middleware when OpenTelemetry is installed."""
    return TraceContextMiddleware(app) if tracing.ENABLED else app


def _graphql_warnings(mounted: bool) -> contextlib.AbstractContextManager[None]:
    if not mounted:
        return contextlib.nullcontext()
    from runtime.graphql.app import strawberry_route_warnings_ignored

    return strawberry_route_warnings_ignored()


def _without_password(url: str) -> str:
    from urllib.parse import urlsplit, urlunsplit

    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = parts.netloc.replace(f":{parts.password}@", ":***@")
    return urlunsplit(parts._replace(netloc=netloc))
