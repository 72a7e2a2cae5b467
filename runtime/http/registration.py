"""Route registration that stays linear in the number of routes.

Litestar's `Router.register` looks up each path it adds in `route_handler_method_map`, a
property that rebuilds the map of every route already registered each time it is read:
registering R routes costs O(R²). Each channel brings its own controller (about sixteen
routes), so 100 channels spent seconds there and 500 channels minutes, before the
process could answer /health/ready. These classes answer that lookup from a map kept as
routes are registered (a Router) or built once per `register` call (the app, which
registers a handful of routers). Within one call the map cannot go stale: the paths one
value registers are distinct.
"""

from __future__ import annotations

from typing import Any

from litestar import Litestar, Router
from litestar.routes import HTTPRoute, WebSocketRoute
from litestar.types import ControllerRouterHandler

__all__ = ["IndexedApp", "IndexedRouter"]


def _method_map(routes: list[Any], into: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """`Router.route_handler_method_map`'s entries for `routes`, added to `into`."""
    for route in routes:
        entry = into.setdefault(route.path, {})
        if isinstance(route, HTTPRoute):
            for handler in route.route_handlers:
                for method in handler.http_methods:
                    entry[method] = handler
        else:
            entry["websocket" if isinstance(route, WebSocketRoute) else "asgi"] = (
                route.route_handler
            )
    return into


class IndexedRouter(Router):
    """A Router whose path → handlers map grows with each registration."""

    __slots__ = ("_index",)
    _index: dict[str, dict[str, Any]] | None

    @property
    def route_handler_method_map(self) -> dict[str, Any]:
        index: dict[str, dict[str, Any]] | None = getattr(self, "_index", None)
        if index is None:
            index = self._index = _method_map(self.routes, {})
        return index

    def register(self, value: ControllerRouterHandler) -> list[Any]:
        index = self.route_handler_method_map
        routes = super().register(value)
        # A route that merged handlers into an existing path carries them all.
        _method_map(routes, index)
        return routes


class IndexedApp(Litestar):
    """The Litestar app, its path → handlers map built once per `register` call."""

    __slots__ = ("_frozen",)
    _frozen: dict[str, dict[str, Any]] | None

    @property
    def route_handler_method_map(self) -> dict[str, Any]:
        frozen: dict[str, dict[str, Any]] | None = getattr(self, "_frozen", None)
        return frozen if frozen is not None else _method_map(self.routes, {})

    def register(self, value: ControllerRouterHandler) -> None:  # type: ignore[override]
        # (Litestar's own signature: the app's register returns nothing)
        self._frozen = _method_map(self.routes, {})
        try:
            super().register(value)
        finally:
            self._frozen = None
