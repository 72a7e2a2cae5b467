"""Route registration kept linear (runtime.http.registration) routes exactly as
Litestar's own: the same paths, methods and handlers, handlers of one path merged."""

from __future__ import annotations

from litestar import Controller, Litestar, Router, get, post
from litestar.testing import TestClient

from runtime.http.registration import IndexedApp, IndexedRouter


def _controller(n: int) -> type[Controller]:
    class Jobs(Controller):
        path = f"/channels/c{n}"

        @post("/jobs", sync_to_thread=False)
        def enqueue(self) -> str:
            return f"enqueued on c{n}"

        @get("/counts", sync_to_thread=False)
        def counts(self) -> str:
            return f"counts of c{n}"

    return Jobs


class _Listing(Controller):
    """Another controller on a path the first ones use: its handler is merged in."""

    path = "/channels/c1"

    @get("/jobs", sync_to_thread=False)
    def listing(self) -> str:
        return "listing c1"


def _handlers() -> list[type[Controller]]:
    return [*(_controller(n) for n in range(50)), _Listing]


def _table(router: Router) -> dict[str, dict[str, str]]:
    """What Litestar itself derives from the routes (its property, not the index)."""
    own = Router.route_handler_method_map.fget(router)  # type: ignore[attr-defined]
    return {
        path: {method: handler.handler_name for method, handler in entry.items()}
        for path, entry in own.items()
    }


def test_an_indexed_router_maps_what_a_router_does() -> None:
    plain = Router(path="/", route_handlers=_handlers())
    indexed = IndexedRouter(path="/", route_handlers=_handlers())
    assert _table(indexed) == _table(plain)
    names = {
        path: {method: handler.handler_name for method, handler in entry.items()}
        for path, entry in indexed.route_handler_method_map.items()
    }
    assert names == _table(plain)
    assert {"GET", "POST"} <= set(names["/channels/c1/jobs"])  # merged, not replaced


def test_an_indexed_app_answers_every_route() -> None:
    app = IndexedApp(route_handlers=[IndexedRouter(path="/", route_handlers=_handlers())])
    plain = Litestar(route_handlers=[Router(path="/", route_handlers=_handlers())])
    assert sorted(route.path for route in app.routes) == sorted(r.path for r in plain.routes)
    with TestClient(app) as client:
        assert client.post("/channels/c7/jobs").text == "enqueued on c7"
        assert client.get("/channels/c49/counts").text == "counts of c49"
        assert client.get("/channels/c1/jobs").text == "listing c1"
        assert client.post("/channels/c1/jobs").text == "enqueued on c1"
        assert client.delete("/channels/c1/jobs").status_code == 405
