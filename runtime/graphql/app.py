"""The GraphQL schema's limits, its Litestar controller at /graphql, GraphiQL's assets.

- Limits, refused before execution with an error naming the limit: operation depth
  (`MAX_DEPTH`), tokens in the document (`MAX_TOKENS`: payloads belong in variables),
  aliases (`MAX_ALIASES`).
- API keys: the same bearer check as the HTTP API (runtime.auth). Every operation needs
  a key; the GraphiQL page (a GET without a query) and its assets do not, as a browser
  loads them without one. A missing or wrong key is a 401, as over HTTP.
- WebSockets (subscriptions, graphql-transport-ws and the older graphql-ws, on the same
  path): the key comes in the upgrade request's `Authorization` header (a wrong one is
  refused at the handshake) or, as browsers cannot set headers on a WebSocket, in the
  `connection_init` payload, `{"Authorization": "Bearer <key>"}`; without either the
  connection is refused (graphql-transport-ws: close 4403; graphql-ws: connection_error)
  before any operation runs. `connection_init` must come within `WS_INIT_TIMEOUT`.
  Pages on another origin may not open one (strawberry checks `Origin`).
  A subscription sent over HTTP is refused (BAD_REQUEST) saying where it is served.
- GraphiQL is strawberry's page with its scripts and styles served from this package
  (`ASSETS_PATH`), not from a CDN: it works offline.
- Errors the resolvers raise with a code (runtime.graphql.resolvers.ERROR_CODES) are
  answers, not server faults: they are not logged with a traceback.
"""

from __future__ import annotations

import contextlib
import json
import warnings
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from datetime import timedelta
from functools import partial
from pathlib import Path
from typing import Any

import strawberry
from graphql import GraphQLError
from litestar import Request, WebSocket
from litestar.connection import ASGIConnection
from litestar.datastructures import CacheControlHeader
from litestar.exceptions import (
    LitestarDeprecationWarning,
    NotAuthorizedException,
    WebSocketDisconnect,
)
from litestar.handlers.base import BaseRouteHandler
from litestar.static_files import create_static_files_router
from strawberry.exceptions import ConnectionRejectionError
from strawberry.extensions import (
    MaxAliasesLimiter,
    MaxTokensLimiter,
    QueryDepthLimiter,
    SchemaExtension,
)
from strawberry.http.exceptions import WebSocketDisconnected
from strawberry.litestar import make_graphql_controller
from strawberry.litestar.controller import LitestarWebSocketAdapter
from strawberry.schema.config import StrawberryConfig
from strawberry.types import ExecutionContext
from strawberry.types.graphql import OperationType
from strawberry.types.unset import UNSET, UnsetType

from runtime.auth import ApiKeys
from runtime.engine.client import Client
from runtime.graphql.types import SCALARS

__all__ = [
    "ASSETS_PATH",
    "GRAPHQL_PATH",
    "MAX_ALIASES",
    "MAX_DEPTH",
    "MAX_TOKENS",
    "WS_INIT_TIMEOUT",
    "WS_KEEP_ALIVE_S",
    "ChannelkitSchema",
    "build_graphql_schema",
    "graphql_handlers",
    "strawberry_route_warnings_ignored",
]

GRAPHQL_PATH = "/graphql"
ASSETS_PATH = "/graphql/assets"
MAX_DEPTH = 10  # Job -> errors -> fields is 3: room for fragments, none for abuse
MAX_TOKENS = 5_000  # a document's tokens; a batch's payloads go in variables
MAX_ALIASES = 30
WS_INIT_TIMEOUT = timedelta(seconds=10)  # upgrade to connection_init, as HEAD_TIMEOUT_S
WS_KEEP_ALIVE_S = 15.0  # graphql-ws `ka` messages (graphql-transport-ws: the client pings)
_REFUSED = "missing or wrong API key: send 'Authorization: Bearer <key>'"
_ASSETS = Path(__file__).parent / "assets"
_CACHE = CacheControlHeader(max_age=86_400, public=True)


class _SubscriptionsOverWebSockets(SchemaExtension):
    """A subscription sent over HTTP is refused with an error that says where it is
    served: strawberry would run it as a query and fail on its stream ("Cannot return
    null for non-nullable field"), with a traceback in the log."""

    def on_execute(self) -> Iterator[None]:
        context = self.execution_context
        over_http = isinstance(context.context, dict) and "request" in context.context
        if over_http and context.operation_type is OperationType.SUBSCRIPTION:
            raise GraphQLError(
                f"subscriptions are served over a WebSocket at {GRAPHQL_PATH} "
                "(graphql-transport-ws or graphql-ws), not over HTTP",
                extensions={"code": "BAD_REQUEST"},
            )
        yield


class ChannelkitSchema(strawberry.Schema):
    """A schema that logs only unexpected errors (a resolver raised something without a
    code): a bad payload, an unknown job, Redis being down, a document over a limit or
    not valid is an answer to the client, not a traceback (or the document) in the log."""

    def process_errors(
        self, errors: list[GraphQLError], execution_context: ExecutionContext | None = None
    ) -> None:
        unexpected = [
            error
            for error in errors
            if error.original_error is not None and not (error.extensions or {}).get("code")
        ]
        if unexpected:
            super().process_errors(unexpected, execution_context)


def build_graphql_schema(
    *, query: type[Any], mutation: type[Any], subscription: type[Any] | None = None
) -> ChannelkitSchema:
    """The package's schema with the limits above (a `subscription` slots in when the job
    event stream exists)."""
    return ChannelkitSchema(
        query=query,
        mutation=mutation,
        subscription=subscription,
        extensions=[
            _SubscriptionsOverWebSockets,
            partial(QueryDepthLimiter, max_depth=MAX_DEPTH),
            partial(MaxTokensLimiter, max_token_count=MAX_TOKENS),
            partial(MaxAliasesLimiter, max_alias_count=MAX_ALIASES),
        ],
        config=StrawberryConfig(scalar_map=SCALARS),
    )


_GRAPHIQL = """<!doctype html>
<html lang="en">
  <head>
    <meta charset="utf-8" />
    <title>GraphiQL: {title}</title>
    <style>
      body {{ margin: 0; height: 100vh; }}
      #graphiql {{ height: 100vh; }}
    </style>
    <link rel="stylesheet" href="{assets}/graphiql.min.css" />
    <script src="{assets}/react.production.min.js"></script>
    <script src="{assets}/react-dom.production.min.js"></script>
    <script src="{assets}/graphiql.min.js"></script>
  </head>
  <body>
    <div id="graphiql">Loading...</div>
    <script>
      const ws = (location.protocol === "https:" ? "wss://" : "ws://") + location.host;
      // subscriptions over graphql-transport-ws; the headers editor's values go in the
      // connection_init payload (an API key included)
      const fetcher = GraphiQL.createFetcher({{ url: "{path}", subscriptionUrl: ws + "{path}" }});
      const root = ReactDOM.createRoot(document.getElementById("graphiql"));
      root.render(
        React.createElement(GraphiQL, {{
          fetcher: fetcher,
          defaultEditorToolsVisibility: true,
          isHeadersEditorEnabled: true,
          shouldPersistHeaders: true,
          defaultHeaders: {default_headers},
        }}),
      );
    </script>
  </body>
</html>
"""


@contextmanager
def strawberry_route_warnings_ignored() -> Iterator[None]:
    """Wrap the building of a Litestar app that mounts `graphql_handlers`: strawberry's
    controller (0.341) declares its dependencies without `NamedDependency`, which Litestar
    2.25 reports with a deprecation warning per route; nothing of ours to change."""
    with warnings.catch_warnings():
        warnings.filterwarnings(
            "ignore",
            message=r".*Inferred dependency field '(custom_context|context|context_ws|root_value"
            r"|response)'",
            category=LitestarDeprecationWarning,
        )
        yield


def _api_key_guard(
    keys: Sequence[str],
) -> Callable[[ASGIConnection[Any, Any, Any, Any], BaseRouteHandler], None]:
    api_keys = ApiKeys(keys)

    def guard(connection: ASGIConnection[Any, Any, Any, Any], _: BaseRouteHandler) -> None:
        is_get = isinstance(connection, Request) and connection.method == "GET"
        if is_get and "query" not in connection.query_params:
            return  # the GraphiQL page: no data in it
        header = connection.headers.get("authorization")
        if isinstance(connection, WebSocket) and header is None:
            return  # the key may come in connection_init: _connection_init_allowed
        if not api_keys.allows(header):
            raise NotAuthorizedException(detail=_REFUSED, headers={"WWW-Authenticate": "Bearer"})

    return guard


class _WebSocketAdapter(LitestarWebSocketAdapter):
    """strawberry's, for a client gone before the server's last word (graphql-ws's
    connection_terminate, a tab closed while events go out): what is sent to it is
    dropped, and closing it is done. The server raises an OSError there (as ASGI has it),
    which strawberry would let through, from the task of each running operation, as a
    logged traceback. The connection's end, which the receiving side sees next, then
    cancels the operations as usual."""

    _gone = False

    async def send_json(self, message: Mapping[str, object]) -> None:
        if self._gone:
            return
        try:
            await super().send_json(message)
        except (OSError, WebSocketDisconnected):
            self._gone = True

    async def close(self, code: int, reason: str) -> None:
        self._gone = True  # nothing more is sent after a close, by either side
        with contextlib.suppress(OSError, WebSocketDisconnect):
            await super().close(code, reason)


def _connection_init_allowed(api_keys: ApiKeys, context: dict[str, Any]) -> bool:
    """A WebSocket's key: its upgrade request's header (which the guard checked), else the
    `Authorization` entry of the connection_init payload (any case, as header names)."""
    socket = context["socket"]
    assert isinstance(socket, WebSocket)
    if socket.headers.get("authorization") is not None:
        return True
    params = context.get("connection_params") or {}
    value = next((v for k, v in params.items() if str(k).lower() == "authorization"), None)
    return isinstance(value, str) and api_keys.allows(value)


def graphql_handlers(
    schema: strawberry.Schema, client: Client, *, api_keys: Sequence[str] = (), title: str = ""
) -> list[Any]:
    """The route handlers to mount on the app: the controller at GRAPHQL_PATH (queries by
    GET and POST, GraphiQL for a browser) and GraphiQL's assets at ASSETS_PATH."""

    async def context() -> dict[str, Any]:
        return {"client": client}

    base = make_graphql_controller(
        schema,
        path=GRAPHQL_PATH,
        context_getter=context,
        graphql_ide="graphiql",
        keep_alive=True,
        keep_alive_interval=WS_KEEP_ALIVE_S,
        connection_init_wait_timeout=WS_INIT_TIMEOUT,
    )
    keys = ApiKeys(api_keys) if api_keys else None
    page = _GRAPHIQL.format(
        title=title or "Channelkit",
        assets=ASSETS_PATH,
        path=GRAPHQL_PATH,
        default_headers='\'{"Authorization": "Bearer <key>"}\'' if api_keys else '""',
    )

    class GraphQLController(base):  # type: ignore[valid-type,misc]
        guards = [_api_key_guard(api_keys)] if api_keys else []
        include_in_schema = False  # not part of the OpenAPI document
        websocket_adapter_class = _WebSocketAdapter

        @property
        def graphql_ide_html(self) -> str:
            return page

        async def on_ws_connect(self, context: Any) -> UnsetType | dict[str, object] | None:
            if keys is not None and not _connection_init_allowed(keys, context):
                raise ConnectionRejectionError({"message": _REFUSED})
            acknowledged: UnsetType = UNSET  # connection_ack without a payload
            return acknowledged

        def decode_json(self, data: str | bytes) -> object:
            # A WebSocket message is parsed here (an HTTP body is bounded before, by the
            # app): one nested too deep for json.loads is refused as not JSON (close
            # 4400), not a RecursionError's traceback.
            try:
                return super().decode_json(data)
            except RecursionError:
                raise json.JSONDecodeError("nests too deep", str(data)[:100], 0) from None

    assets = create_static_files_router(
        path=ASSETS_PATH,
        directories=[_ASSETS],
        name="graphql-assets",
        cache_control=_CACHE,
        include_in_schema=False,
    )
    return [GraphQLController, assets]
