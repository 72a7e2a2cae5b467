"""The jobEvents subscription over WebSockets, from outside: the reference app served by
`runtime serve` (its own process, API keys on) and a real GraphQL client (gql over
websockets, both subprotocols); and, for what only the serving process can see (that an
unsubscribe closes the engine's subscription, an unreachable Redis), the GraphQL app on
uvicorn in this test's event loop."""

from __future__ import annotations

import asyncio
import json
import subprocess
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import uvicorn
import websockets
from gql import Client as GraphQLClient
from gql import GraphQLRequest, gql
from gql.client import AsyncClientSession
from gql.transport.exceptions import (
    TransportConnectionFailed,
    TransportQueryError,
    TransportServerError,
)
from gql.transport.httpx import HTTPXAsyncTransport
from gql.transport.websockets import WebsocketsTransport
from pydantic import BaseModel
from redis.asyncio import Redis
from websockets.typing import Subprotocol

from runtime.engine.client import Client, JobRequest
from runtime.engine.events import EVENT_TYPES, GAP
from runtime.engine.metrics import Metrics
from runtime.graphql.app import graphql_handlers, strawberry_route_warnings_ignored
from runtime.graphql.types import GraphQLJobEventType
from runtime.http.app import build_http_app
from tests.conftest import ROOT, delete_keys, new_prefix
from tests.runtime.conftest import (
    STOP_TIMEOUT,
    clean_env,
    free_port,
    start_serve_blocking,
    wait_ready_blocking,
)
from tests.runtime.ui.test_ui_browser import _chromium, _unavailable

API_KEY = "graphql-ws-secret"
TRANSPORT_WS = WebsocketsTransport.GRAPHQLWS_SUBPROTOCOL  # graphql-transport-ws
LEGACY_WS = WebsocketsTransport.APOLLO_SUBPROTOCOL  # graphql-ws
JOB_EVENTS = gql(
    """
    subscription Events($channel: ChannelName!, $jobId: String, $after: String) {
      jobEvents(channel: $channel, jobId: $jobId, after: $after) {
        id channel event jobId atMs data gap { missed after resumedAt }
      }
    }
    """
)
ENQUEUE_SMS = gql(
    """
    mutation($jobId: String!) {
      enqueueSms(payload: {to: "+14155550100", body: "followed"}, jobId: $jobId) { id }
    }
    """
)


@dataclass
class Served:
    http_url: str
    ws_url: str
    prefix: str
    redis_url: str
    log: Path


@pytest.fixture(scope="module")
def served(redis_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    """The reference app (every channel's worker; handlers log instead of sending)."""
    prefix = new_prefix("graphql-ws-")
    folder = tmp_path_factory.mktemp("graphql-ws")
    http_port = free_port()
    environ = clean_env() | {
        "REDIS_URL": redis_url,
        "CHANNELKIT_KEY_PREFIX": prefix,
        "CHANNELKIT_DATA_DIR": str(folder / "data"),
        "HTTP_PORT": str(http_port),
        "GRPC_PORT": str(free_port()),
        "SHUTDOWN_TIMEOUT": "5",
        "API_KEYS": API_KEY,
    }
    log = folder / "serve.log"
    process = start_serve_blocking(ROOT, environ, log)
    url = f"http://127.0.0.1:{http_port}"
    try:
        wait_ready_blocking(process, url, lambda: log.read_text(errors="replace"))
        yield Served(url, f"ws://127.0.0.1:{http_port}/graphql", prefix, redis_url, log)
    finally:
        process.terminate()
        try:
            process.wait(STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        delete_keys(redis_url, f"{prefix}*")


def _ws(
    url: str,
    subprotocol: str = TRANSPORT_WS,
    *,
    init: dict[str, Any] | None = None,
    headers: dict[str, str] | None = None,
) -> GraphQLClient:
    transport = WebsocketsTransport(
        url=url, subprotocols=[subprotocol], init_payload=init, headers=headers
    )
    return GraphQLClient(transport=transport, fetch_schema_from_transport=False)


def _no_traceback(served: Served) -> None:
    """Clients that leave (graphql-ws's connection_terminate, a closed socket) or are
    refused are no server fault: nothing is logged with a traceback."""
    log = served.log.read_text(errors="replace")
    assert "Traceback" not in log, log


def _bearer(key: str = API_KEY) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


async def _events_until(
    session: AsyncClientSession, variables: dict[str, Any], last: str, job_id: str | None = None
) -> list[dict[str, Any]]:
    """The subscription's events up to and including the first of type `last` (of job
    `job_id`, when given); then it unsubscribes."""
    found: list[dict[str, Any]] = []
    async with asyncio.timeout(20):
        stream = session.subscribe(GraphQLRequest(JOB_EVENTS, variable_values=variables))
        async for result in stream:
            event: dict[str, Any] = result["jobEvents"]
            found.append(event)
            if event["event"] == last and job_id in (None, event["jobId"]):
                break
    return found


async def _latest_event_id(served: Served, channel: str) -> str:
    """Where the channel's events stand now, read with the engine's own Client."""
    async with Client.from_url(served.redis_url, prefix=served.prefix) as client:
        return str(await client.event_hub.reader(channel).latest())


async def _enqueue_sms(served: Served, job_id: str) -> None:
    transport = HTTPXAsyncTransport(url=f"{served.http_url}/graphql", headers=_bearer())
    async with GraphQLClient(transport=transport) as http:
        result = await http.execute(GraphQLRequest(ENQUEUE_SMS, variable_values={"jobId": job_id}))
    assert result["enqueueSms"]["id"] == job_id


@pytest.mark.parametrize(
    ("subprotocol", "key_in"),
    [(TRANSPORT_WS, "connection_init"), (LEGACY_WS, "header")],
)
async def test_a_job_is_followed_from_waiting_to_completed_and_resumed_after_an_id(
    served: Served, subprotocol: str, key_in: str
) -> None:
    """Subscribe to one job's events, enqueue it over GraphQL: WAITING, ACTIVE, COMPLETED,
    nothing of other jobs; subscribing again after the first id gives the rest."""
    job_id = f"followed-{subprotocol}"
    auth = {"init": _bearer()} if key_in == "connection_init" else {"headers": _bearer()}
    # from where the channel stands now: what the enqueue below appends comes after it,
    # however soon the server runs the subscription
    after = await _latest_event_id(served, "sms")
    variables = {"channel": "SMS", "jobId": job_id, "after": after}
    async with _ws(served.ws_url, subprotocol, **auth) as session:
        watching = asyncio.ensure_future(_events_until(session, variables, "COMPLETED"))
        await _enqueue_sms(served, "not-followed-" + subprotocol)
        await _enqueue_sms(served, job_id)
        events = await watching

        assert [e["event"] for e in events] == ["WAITING", "ACTIVE", "COMPLETED"]
        assert {(e["channel"], e["jobId"]) for e in events} == {("sms", job_id)}
        assert events[0]["data"] == {"priority": 5}
        assert events[1]["data"] == {"attempt": 1}
        assert all(e["gap"] is None for e in events)
        seqs = [int(e["id"].split("-")[1]) for e in events]
        assert seqs == sorted(seqs)
        assert [int(e["id"].split("-")[0]) for e in events] == [e["atMs"] for e in events]

        resumed = await _events_until(session, variables | {"after": events[0]["id"]}, "COMPLETED")
        assert resumed == events[1:]
    _no_traceback(served)


async def test_after_0_replays_the_channel_from_the_oldest_event_kept(served: Served) -> None:
    """Every job's events, in order, from the first the channel appended (nothing was
    trimmed: no gap)."""
    await _enqueue_sms(served, "oldest-1")
    async with _ws(served.ws_url, init=_bearer()) as session:
        events = await _events_until(
            session, {"channel": "SMS", "after": "0"}, "WAITING", "oldest-1"
        )
    seqs = [int(e["id"].split("-")[1]) for e in events]
    assert seqs == list(range(1, len(events) + 1))
    assert "GAP" not in {e["event"] for e in events}


async def test_bad_arguments_are_one_error_naming_each(served: Served) -> None:
    async with _ws(served.ws_url, init=_bearer()) as session:
        with pytest.raises(TransportQueryError) as raised:
            await _events_until(
                session, {"channel": "SMS", "after": "yesterday", "jobId": ""}, "COMPLETED"
            )
    [error] = raised.value.errors or []
    assert error["extensions"]["code"] == "BAD_USER_INPUT"
    fields = {item["field"]: item["message"] for item in error["extensions"]["fields"]}
    assert set(fields) == {"after", "jobId"}
    assert "'yesterday' is not one this server gave" in fields["after"]
    assert error["message"].startswith("invalid input: after: event id 'yesterday'")


async def test_an_unknown_channel_is_refused_by_the_schema(served: Served) -> None:
    async with _ws(served.ws_url, init=_bearer()) as session:
        with pytest.raises(TransportQueryError) as raised:
            await session.execute(gql("subscription { jobEvents(channel: NOPE) { id } }"))
    assert "NOPE" in str(raised.value)


async def test_a_subscription_over_http_is_told_where_it_is_served(served: Served) -> None:
    transport = HTTPXAsyncTransport(url=f"{served.http_url}/graphql", headers=_bearer())
    async with GraphQLClient(transport=transport) as http:
        with pytest.raises(TransportQueryError) as raised:
            await http.execute(gql("subscription { jobEvents(channel: SMS) { id } }"))
    [error] = raised.value.errors or []
    assert error["extensions"] == {"code": "BAD_REQUEST"}
    assert error["message"].startswith("subscriptions are served over a WebSocket at /graphql")
    _no_traceback(served)


async def test_api_keys_apply_to_the_websocket(served: Served) -> None:
    """No key: refused at connection_init (graphql-transport-ws closes with 4403,
    graphql-ws answers connection_error); a wrong key in the upgrade request's header:
    refused at the handshake (403); a wrong one in connection_init: as no key."""
    subscription = gql("subscription { jobEvents(channel: SMS) { id } }")
    async with asyncio.timeout(20):  # a connection let in would wait for an event
        with pytest.raises(TransportConnectionFailed):
            async with _ws(served.ws_url) as session:
                await session.execute(subscription)
        with pytest.raises(TransportServerError, match="missing or wrong API key"):
            async with _ws(served.ws_url, LEGACY_WS) as session:
                await session.execute(subscription)
        with pytest.raises(TransportConnectionFailed, match="Connect failed"):
            async with _ws(served.ws_url, headers=_bearer("wrong")) as session:
                await session.execute(subscription)
        with pytest.raises(TransportConnectionFailed):
            async with _ws(served.ws_url, init=_bearer("wrong")) as session:
                await session.execute(subscription)

    # the close code and reason a browser's graphql-ws client sees
    async with websockets.connect(
        served.ws_url, subprotocols=[Subprotocol(TRANSPORT_WS)]
    ) as socket:
        await socket.send('{"type": "connection_init", "payload": {}}')
        with pytest.raises(websockets.ConnectionClosed) as closed:
            await socket.recv()
    assert closed.value.rcvd is not None
    assert (closed.value.rcvd.code, closed.value.rcvd.reason) == (4403, "Forbidden")
    _no_traceback(served)


async def test_a_message_nested_too_deep_closes_the_socket_as_not_json(served: Served) -> None:
    """json.loads raises RecursionError on it: refused like any message that is not JSON
    (4400), not a traceback."""
    deep = "[" * 100_000 + "]" * 100_000
    async with websockets.connect(
        served.ws_url, subprotocols=[Subprotocol(TRANSPORT_WS)], max_size=None
    ) as socket:
        await socket.send('{"type": "connection_init", "payload": ' + deep + "}")
        with pytest.raises(websockets.ConnectionClosed) as closed:
            await socket.recv()
    assert closed.value.rcvd is not None
    assert closed.value.rcvd.code == 4400
    _no_traceback(served)


async def test_a_client_gone_before_the_servers_last_word_is_no_server_fault(
    served: Served,
) -> None:
    """graphql-ws: `stop`, `connection_terminate` and the close frame in one write (what
    gql sends when it leaves, only faster): the server, still stopping the subscription,
    closes a connection already gone; that is no traceback in the log."""
    start = {
        "type": "start",
        "id": "1",
        "payload": {"query": "subscription { jobEvents(channel: SMS) { id } }"},
    }
    for _ in range(3):
        async with websockets.connect(
            served.ws_url, subprotocols=[Subprotocol(LEGACY_WS)], additional_headers=_bearer()
        ) as socket:
            await socket.send(json.dumps({"type": "connection_init"}))
            assert json.loads(await socket.recv())["type"] == "connection_ack"
            await socket.send(json.dumps(start))
            await asyncio.sleep(0.2)  # the subscription runs
            socket.protocol.send_text(json.dumps({"type": "stop", "id": "1"}).encode())
            socket.protocol.send_text(json.dumps({"type": "connection_terminate"}).encode())
            socket.protocol.send_close(1000)
            socket.transport.write(b"".join(socket.protocol.data_to_send()))
            async with asyncio.timeout(10):
                await socket.wait_closed()
    # graphql-transport-ws: the socket closed while the server replays a backlog to it
    async with Client.from_url(served.redis_url, prefix=served.prefix) as client:
        backlog = [JobRequest(_Sms(to="+14155550100", body="x"), delay_ms=60_000)] * 300
        await client.enqueue_many("sms", backlog)
    replay = {"query": 'subscription { jobEvents(channel: SMS, after: "0") { id } }'}
    for _ in range(3):
        async with websockets.connect(
            served.ws_url, subprotocols=[Subprotocol(TRANSPORT_WS)]
        ) as socket:
            await socket.send(json.dumps({"type": "connection_init", "payload": _bearer()}))
            assert json.loads(await socket.recv())["type"] == "connection_ack"
            await socket.send(json.dumps({"id": "1", "type": "subscribe", "payload": replay}))
            assert json.loads(await socket.recv())["type"] == "next"
    await asyncio.sleep(0.5)  # what the server does next, it does meanwhile
    _no_traceback(served)


async def test_a_message_over_max_body_size_closes_the_socket(served: Served) -> None:
    """runtime serve bounds a WebSocket message as it bounds a body (MAX_BODY_SIZE, 1 MiB)."""
    async with websockets.connect(
        served.ws_url, subprotocols=[Subprotocol(TRANSPORT_WS)], max_size=None
    ) as socket:
        await socket.send('{"type": "connection_init", "payload": {"x": "' + "y" * 2**20 + '"}}')
        with pytest.raises(websockets.ConnectionClosed) as closed:
            await socket.recv()
    assert closed.value.rcvd is not None
    assert closed.value.rcvd.code == 1009  # message too big


async def test_graphiql_runs_a_subscription_with_the_key_from_its_headers_editor(
    served: Served,
) -> None:
    """The IDE's bundled graphql-ws client, pointed at the page's own host, sends the
    headers editor's values in connection_init (Debian's chromium, as the dashboard's
    browser test; skipped without it unless CHANNELKIT_REQUIRE_BROWSER is set)."""
    executable = _chromium()
    if executable is None:
        _unavailable("chromium is not installed (Debian: apt-get install chromium)")
    try:
        from playwright.async_api import async_playwright
    except ImportError:
        _unavailable("the playwright package is not installed (pip install playwright)")
    await _enqueue_sms(served, "in-graphiql")
    query = 'subscription { jobEvents(channel: SMS, jobId: "in-graphiql", after: "0") { event } }'
    async with async_playwright() as driver:
        browser = await driver.chromium.launch(
            executable_path=executable, headless=True, args=["--no-sandbox"]
        )
        try:
            page = await browser.new_page()
            await page.goto(f"{served.http_url}/graphql", wait_until="networkidle")
            editors = ".graphiql-query-editor .CodeMirror, .graphiql-editor-tool .CodeMirror"
            await page.wait_for_selector(".graphiql-query-editor .CodeMirror")
            await page.get_by_role("button", name="Headers").click()
            # the query editor, then the variables' and the headers' (GraphiQL 3.8)
            await page.evaluate(
                "([selector, texts]) => document.querySelectorAll(selector).forEach("
                "(editor, i) => texts[i] !== null && editor.CodeMirror.setValue(texts[i]))",
                [editors, [query, None, json.dumps(_bearer())]],
            )
            # GraphiQL parses the query 100 ms after an edit (and stores it): only then does
            # it know the operation is a subscription, for its WebSocket
            await page.wait_for_function(
                "query => localStorage.getItem('graphiql:query') === query", arg=query
            )
            await page.click(".graphiql-execute-button")
            result = "document.querySelector('.result-window .CodeMirror').CodeMirror.getValue()"
            await page.wait_for_function(f"{result}.includes('COMPLETED')", timeout=20_000)
        finally:
            await browser.close()
    _no_traceback(served)


def test_the_event_type_enum_is_every_engine_event_and_gap() -> None:
    """A new engine event needs its JobEventType value, or it could not be sent."""
    assert [member.value for member in GraphQLJobEventType] == [*EVENT_TYPES, GAP]


# The GraphQL app in this test's event loop: its Client's event hub can be watched.


class _Sms(BaseModel):
    to: str
    body: str


@dataclass
class InProcess:
    ws_url: str
    client: Client


async def _serve_graphql(client: Client) -> AsyncIterator[str]:
    from generated.graphql_schema import SCHEMA

    async def ready() -> None:
        return None

    handlers = graphql_handlers(SCHEMA, client)
    with strawberry_route_warnings_ignored():
        app = build_http_app(
            [], client, ready, metrics=Metrics(), channels=["sms"], mounted=handlers
        )
    port = free_port()
    server = uvicorn.Server(
        uvicorn.Config(app, host="127.0.0.1", port=port, log_config=None, lifespan="on")
    )
    task = asyncio.create_task(server.serve())
    try:
        async with asyncio.timeout(10):
            while not server.started:
                assert not task.done(), "uvicorn did not start"
                await asyncio.sleep(0.01)
        yield f"ws://127.0.0.1:{port}/graphql"
    finally:
        server.should_exit = True
        await task


@pytest.fixture
async def in_process(redis_url: str) -> AsyncIterator[InProcess]:
    prefix = new_prefix("graphql-ws-in-")
    client = Client.from_url(redis_url, prefix=prefix)
    try:
        async for url in _serve_graphql(client):
            yield InProcess(url, client)
    finally:
        await client.close()
        delete_keys(redis_url, f"{prefix}*")


def _event_tasks() -> list[asyncio.Task[Any]]:
    """The engine's reads of channels' events (runtime.engine.events names them: the
    shared read of every watched channel, or one per channel on a cluster)."""
    return [
        task
        for task in asyncio.all_tasks()
        if task.get_name().partition(":")[0] == "channelkit-events" and not task.done()
    ]


async def _until(condition: Any, what: str) -> None:
    deadline = time.monotonic() + 10
    while not condition():
        if time.monotonic() > deadline:
            pytest.fail(f"not {what} within 10 s")
        await asyncio.sleep(0.01)


async def test_an_unsubscribe_ends_the_engine_subscription(in_process: InProcess) -> None:
    """From now on (no `after`): once the server follows the channel, an enqueue arrives;
    when the client unsubscribes (the connection stays open), the channel's read ends."""
    transport = WebsocketsTransport(url=in_process.ws_url, subprotocols=[TRANSPORT_WS])
    async with GraphQLClient(transport=transport) as session:
        stream = session.subscribe(GraphQLRequest(JOB_EVENTS, variable_values={"channel": "SMS"}))
        first = asyncio.ensure_future(anext(stream))
        await _until(lambda: bool(_event_tasks()), "following the channel")
        await in_process.client.enqueue("sms", _Sms(to="+14155550100", body="x"), job_id="j1")
        async with asyncio.timeout(10):
            event = (await first)["jobEvents"]
        assert (event["event"], event["jobId"]) == ("WAITING", "j1")
        await stream.aclose()  # gql sends `complete`
        await _until(lambda: not _event_tasks(), "stopped following the channel")
        # the connection still serves
        again = await _events_until(session, {"channel": "SMS", "after": "0"}, "WAITING")
        assert again == [event]
    await _until(lambda: not _event_tasks(), "stopped following the channel")


async def test_a_client_that_goes_away_ends_the_engine_subscription(
    in_process: InProcess,
) -> None:
    """The socket closes without a word (a browser tab closed): the same."""
    async with websockets.connect(
        in_process.ws_url, subprotocols=[Subprotocol(TRANSPORT_WS)]
    ) as socket:
        await socket.send(json.dumps({"type": "connection_init"}))
        assert json.loads(await socket.recv())["type"] == "connection_ack"
        query = "subscription { jobEvents(channel: SMS) { event jobId } }"
        await socket.send(json.dumps({"id": "1", "type": "subscribe", "payload": {"query": query}}))
        await _until(lambda: bool(_event_tasks()), "following the channel")
        await in_process.client.enqueue("sms", _Sms(to="+14155550100", body="x"), job_id="j2")
        message = json.loads(await asyncio.wait_for(socket.recv(), 10))
        assert message["payload"]["data"]["jobEvents"] == {"event": "WAITING", "jobId": "j2"}
    await _until(lambda: not _event_tasks(), "stopped following the channel")


async def test_redis_unreachable_at_subscribe_time_is_an_unavailable_error() -> None:
    dead = free_port()  # bound, then closed: nothing listens there
    client = Client(Redis.from_url(f"redis://127.0.0.1:{dead}/0", socket_connect_timeout=1))
    try:
        async for url in _serve_graphql(client):
            async with _ws(url) as session:
                with pytest.raises(TransportQueryError) as raised:
                    await _events_until(session, {"channel": "SMS"}, "COMPLETED")
                [error] = raised.value.errors or []
                assert error["extensions"] == {"code": "UNAVAILABLE", "retryAfter": 1}
                with pytest.raises(TransportQueryError) as raised:  # with `after` too
                    await _events_until(session, {"channel": "SMS", "after": "0"}, "WAITING")
                assert (raised.value.errors or [{}])[0]["extensions"]["code"] == "UNAVAILABLE"
            assert not _event_tasks()
    finally:
        await client.close()
