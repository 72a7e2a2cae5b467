"""GraphQL at /graphql, from outside: the reference app served by `runtime serve` (its own
process, API keys on) and a real GraphQL client (gql over httpx) that first fetches the
schema by introspection, so every document here is also checked against the served
schema on the client's side."""

from __future__ import annotations

import asyncio
import subprocess
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
import uvicorn
from gql import Client as GraphQLClient
from gql import GraphQLRequest, gql
from gql.client import AsyncClientSession
from gql.transport.exceptions import TransportQueryError, TransportServerError
from gql.transport.httpx import HTTPXAsyncTransport
from pydantic import BaseModel
from redis.asyncio import Redis

from runtime.engine.client import Client
from runtime.engine.metrics import Metrics
from runtime.graphql.app import (
    MAX_ALIASES,
    graphql_handlers,
    strawberry_route_warnings_ignored,
)
from runtime.http.app import build_http_app
from runtime.testing import running_app
from tests.conftest import ROOT, delete_keys, new_prefix
from tests.runtime.conftest import (
    STOP_TIMEOUT,
    clean_env,
    free_port,
    start_serve_blocking,
    wait_ready_blocking,
)

API_KEY = "graphql-secret"


@dataclass
class Served:
    url: str
    prefix: str
    redis_url: str


class _Invalid(BaseModel):
    """An sms payload the channel's model rejects: its job fails at once (payload_invalid)."""

    to: str
    body: str


@pytest.fixture(scope="module")
def served(redis_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    """The reference app (every channel's worker; handlers log instead of sending)."""
    prefix = new_prefix("graphql-")
    folder = tmp_path_factory.mktemp("graphql")
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
        yield Served(url, prefix, redis_url)
    finally:
        _stop(process)
        delete_keys(redis_url, f"{prefix}*")


def _stop(process: subprocess.Popen[bytes]) -> None:
    process.terminate()
    try:
        process.wait(STOP_TIMEOUT)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


@pytest.fixture
async def session(served: Served) -> AsyncIterator[AsyncClientSession]:
    transport = HTTPXAsyncTransport(
        url=f"{served.url}/graphql", headers={"Authorization": f"Bearer {API_KEY}"}, timeout=10
    )
    client = GraphQLClient(transport=transport, fetch_schema_from_transport=True)
    async with client as connected:
        yield connected


ENQUEUE_SMS = gql(
    """
    mutation Sms($payload: SmsPayloadInput!, $jobId: String) {
      enqueueSms(payload: $payload, jobId: $jobId) { id channel }
    }
    """
)
JOB = gql(
    """
    query Job($channel: ChannelName!, $id: ID!) {
      job(channel: $channel, id: $id) {
        id channel state attempts payload result
        error { type message attempt }
      }
    }
    """
)


async def _job(session: AsyncClientSession, channel: str, job_id: str) -> dict[str, Any] | None:
    result = await _run(session, JOB, {"channel": channel, "id": job_id})
    job: dict[str, Any] | None = result["job"]
    return job


async def _until_state(
    session: AsyncClientSession, channel: str, job_id: str, state: str
) -> dict[str, Any]:
    deadline = time.monotonic() + 20
    while True:
        job = await _job(session, channel, job_id)
        if job is not None and job["state"] == state:
            return job
        if time.monotonic() > deadline:
            pytest.fail(f"job {job_id} not {state}: {job}")
        await asyncio.sleep(0.05)


async def _error_of(session: AsyncClientSession, document: str, **variables: Any) -> Any:
    with pytest.raises(TransportQueryError) as raised:
        await _run(session, gql(document), variables)
    assert raised.value.errors
    return raised.value.errors[0]


async def test_an_enqueued_sms_runs_and_is_read_back(session: AsyncClientSession) -> None:
    payload = {"to": "+14155550100", "body": "hello over GraphQL", "priority": "HIGH"}
    result = await _run(session, ENQUEUE_SMS, {"payload": payload})
    enqueued = result["enqueueSms"]
    assert enqueued["channel"] == "sms"

    job = await _until_state(session, "SMS", enqueued["id"], "COMPLETED")
    assert job["attempts"] == 1
    assert job["result"]["dry_run"] is True


async def _delayed(session: AsyncClientSession, channel: str, payload: dict[str, Any]) -> Any:
    """Enqueue `payload` a minute ahead and return the payload stored (kept while delayed)."""
    name = channel.capitalize()
    result = await _run(
        session,
        gql(
            f"mutation($p: {name}PayloadInput!, $d: Long) "
            f"{{ enqueue{name}(payload: $p, delayMs: $d) {{ id }} }}"
        ),
        {"p": payload, "d": 60_000},
    )
    job = await _until_state(session, channel.upper(), result[f"enqueue{name}"]["id"], "DELAYED")
    return job["payload"]


async def test_the_stored_payload_is_the_json_an_http_client_would_send(
    session: AsyncClientSession,
) -> None:
    """An enum becomes its JSON value; GraphQL's camelCase names become the JSON names."""
    stored = await _delayed(
        session,
        "sms",
        {"to": "+14155550100", "body": "later", "senderId": "Shop", "priority": "HIGH"},
    )
    assert stored == {
        "to": "+14155550100",
        "body": "later",
        "sender_id": "Shop",
        "priority": "high",
    }


async def test_nested_inputs_a_one_of_and_a_const_become_the_json_payload(
    session: AsyncClientSession,
) -> None:
    """email: a list of objects, a @oneOf content (its `type` const filled in by the
    server), a map as JSON, a renamed field (replyTo); whatsapp: a list of unions."""
    email = {
        "to": [{"email": "ada@example.com", "name": "Ada"}],
        "subject": "Reset",
        "content": {"template": {"templateId": "password-reset", "variables": {"code": "42"}}},
        "replyTo": "help@example.com",
        "metadata": {"user": "u-1"},
    }
    assert await _delayed(session, "email", email) == {
        "to": [{"email": "ada@example.com", "name": "Ada"}],
        "subject": "Reset",
        "content": {
            "type": "template",
            "template_id": "password-reset",
            "variables": {"code": "42"},
        },
        "reply_to": "help@example.com",
        "metadata": {"user": "u-1"},
    }

    whatsapp = {
        "to": "+447700900123",
        "template": {
            "name": "order_shipped",
            "language": "en",
            "parameters": [
                {"textParameter": {"text": "Ada"}},
                {
                    "currencyParameter": {
                        "currency": {"fallbackValue": "$5", "code": "USD", "amount1000": 5000}
                    }
                },
            ],
        },
    }
    stored = await _delayed(session, "whatsapp", whatsapp)
    assert stored["template"]["parameters"] == [
        {"text": "Ada"},
        {"currency": {"fallback_value": "$5", "code": "USD", "amount_1000": 5000}},
    ]


async def test_an_invalid_payload_names_each_field_and_enqueues_nothing(
    session: AsyncClientSession,
) -> None:
    before = await _total(session, "EMAIL")
    error = await _error_of(
        session,
        "mutation($p: EmailPayloadInput!) { enqueueEmail(payload: $p) { id } }",
        p={
            "to": [{"email": "not an address"}],
            "subject": "",
            "content": {"inline": {"text": "hi"}},
        },
    )
    assert error["extensions"]["code"] == "BAD_USER_INPUT"
    paths = [item["path"] for item in error["extensions"]["fields"]]
    assert paths == [["payload", "to", 0, "email"], ["payload", "subject"]]
    assert "payload.to[0].email" in error["message"]
    assert await _total(session, "EMAIL") == before


async def test_a_bad_field_inside_a_union_branch_is_named_by_its_graphql_path(
    session: AsyncClientSession,
) -> None:
    error = await _error_of(
        session,
        "mutation($p: WhatsappPayloadInput!) { enqueueWhatsapp(payload: $p) { id } }",
        p={
            "to": "+447700900123",
            "template": {
                "name": "x",
                "language": "en",
                "parameters": [{"textParameter": {"text": ""}}],
            },
        },
    )
    assert [item["path"] for item in error["extensions"]["fields"]] == [
        ["payload", "template", "parameters", 0, "textParameter", "text"]
    ]


async def test_a_batch_is_all_or_nothing(session: AsyncClientSession) -> None:
    batch = gql(
        "mutation($p: [SmsPayloadInput!]!) { enqueueSmsBatch(payloads: $p) { ids channel } }"
    )
    good = {"to": "+14155550100", "body": "one"}
    result = await _run(session, batch, {"p": [good, good]})
    assert len(result["enqueueSmsBatch"]["ids"]) == 2

    before = await _total(session, "SMS")
    with pytest.raises(TransportQueryError) as raised:
        await _run(session, batch, {"p": [good, {"to": "12", "body": "x"}]})
    [error] = raised.value.errors or []
    assert [item["path"] for item in error["extensions"]["fields"]] == [["payloads", 1, "to"]]
    assert await _total(session, "SMS") == before

    error = await _error_of(
        session,
        "mutation($p: [SmsPayloadInput!]!) { enqueueSmsBatch(payloads: $p) { ids } }",
        p=[],
    )
    assert "a batch holds 1 to 1000 payloads; got 0" in error["message"]


async def test_failed_jobs_page_retry_and_discard(
    session: AsyncClientSession, served: Served
) -> None:
    async with Client.from_url(served.redis_url, prefix=served.prefix) as client:
        for job_id in ("gql-bad-1", "gql-bad-2", "gql-bad-3"):
            await client.enqueue("sms", _Invalid(to="nope", body=""), job_id=job_id)
    for job_id in ("gql-bad-1", "gql-bad-2", "gql-bad-3"):
        await _until_state(session, "SMS", job_id, "FAILED")

    page = gql(
        """
        query($offset: Int!) {
          jobs(channel: SMS, offset: $offset, limit: 2) {
            items { id state error { type } } offset limit total hasMore
          }
        }
        """
    )
    first = (await _run(session, page, {"offset": 0}))["jobs"]
    assert (len(first["items"]), first["hasMore"]) == (2, True)
    assert first["total"] >= 3
    assert {item["error"]["type"] for item in first["items"]} == {"payload_invalid"}
    rest = (await _run(session, page, {"offset": 2}))["jobs"]
    listed = {item["id"] for item in first["items"] + rest["items"]}
    assert {"gql-bad-1", "gql-bad-2"} <= listed | {"gql-bad-3"}

    retried = await session.execute(
        gql('mutation { retryJob(channel: SMS, id: "gql-bad-1") { id state failures } }')
    )
    assert retried["retryJob"]["id"] == "gql-bad-1"
    assert retried["retryJob"]["failures"] == 0

    discarded = await session.execute(gql('mutation { discardJob(channel: SMS, id: "gql-bad-2") }'))
    assert discarded["discardJob"] is True
    assert await _job(session, "SMS", "gql-bad-2") is None

    missing = await _error_of(session, 'mutation { discardJob(channel: SMS, id: "never") }')
    assert missing["extensions"]["code"] == "NOT_FOUND"
    assert "no job never" in missing["message"]

    result = await _run(
        session,
        ENQUEUE_SMS,
        {"payload": {"to": "+14155550100", "body": "ok"}, "jobId": "gql-done-1"},
    )
    await _until_state(session, "SMS", result["enqueueSms"]["id"], "COMPLETED")
    conflict = await _error_of(
        session, 'mutation { retryJob(channel: SMS, id: "gql-done-1") { id } }'
    )
    assert conflict["extensions"]["code"] == "CONFLICT"


async def test_an_unknown_channel_or_field_is_refused_by_the_schema(served: Served) -> None:
    async with httpx.AsyncClient(base_url=served.url, headers=_auth()) as http:
        response = await http.post(
            "/graphql", json={"query": '{ job(channel: NOPE, id: "1") { id } }'}
        )
    [error] = response.json()["errors"]
    assert "NOPE" in error["message"]


async def test_documents_over_the_limits_are_refused_with_the_limit_named(
    served: Served,
) -> None:
    aliases = " ".join(
        f"a{i}: channelCounts(channel: SMS) {{ waiting }}" for i in range(MAX_ALIASES + 1)
    )
    tokens = "{ channelCounts(channel: SMS) { " + "waiting " * 6000 + "} }"
    async with httpx.AsyncClient(base_url=served.url, headers=_auth()) as http:
        too_many_aliases = (await http.post("/graphql", json={"query": f"{{ {aliases} }}"})).json()
        too_long = (await http.post("/graphql", json={"query": tokens})).json()
    assert too_many_aliases["errors"][0]["message"] == (
        f"{MAX_ALIASES + 1} aliases found. Allowed: {MAX_ALIASES}"
    )
    assert "more than 5000 tokens" in too_long["errors"][0]["message"]
    assert "data" not in too_long or too_long["data"] is None


async def test_a_body_nested_too_deep_is_refused_before_any_parser_sees_it(
    served: Served,
) -> None:
    """strawberry parses the body with json.loads, which a 100,000-deep body would make
    raise RecursionError: the HTTP app's depth bound comes first."""
    deep = b"[" * 100_000 + b"]" * 100_000
    body = b'{"query": "{ channelCounts(channel: SMS) { waiting } }", "variables": ' + deep + b"}"
    async with httpx.AsyncClient(base_url=served.url, headers=_auth()) as http:
        response = await http.post(
            "/graphql", content=body, headers={"content-type": "application/json"}
        )
    assert response.status_code == 422
    assert response.json()["detail"] == "invalid request: body: nests deeper than 64 levels"


async def test_api_keys_apply_and_the_graphiql_page_is_served_without_a_cdn(
    served: Served,
) -> None:
    transport = HTTPXAsyncTransport(url=f"{served.url}/graphql", timeout=10)
    with pytest.raises(TransportServerError) as raised:
        async with GraphQLClient(transport=transport) as session:
            await session.execute(gql("{ channelCounts(channel: SMS) { waiting } }"))
    assert raised.value.code == 401

    async with httpx.AsyncClient(base_url=served.url) as http:
        page = await http.get("/graphql", headers={"accept": "text/html"})
        assert page.status_code == 200
        assert "text/html" in page.headers["content-type"]
        scripts = [
            "/graphql/assets/react.production.min.js",
            "/graphql/assets/react-dom.production.min.js",
            "/graphql/assets/graphiql.min.js",
            "/graphql/assets/graphiql.min.css",
        ]
        for path in scripts:
            assert path in page.text
            asset = await http.get(path)
            assert asset.status_code == 200, path
            assert len(asset.content) > 1000
        assert "unpkg" not in page.text
        assert "https://" not in page.text
        query = await http.get(
            "/graphql", params={"query": "{ channelCounts(channel: SMS) { waiting } }"}
        )
        assert query.status_code == 401  # a query by GET needs the key too


@pytest.fixture
async def graphql_without_redis() -> AsyncIterator[str]:
    """The reference app's GraphQL on uvicorn (a real socket), with a Client whose Redis
    port has nobody listening."""
    from generated.graphql_schema import SCHEMA

    async def ready() -> None:
        return None

    dead = free_port()  # bound, then closed: nothing listens there
    client = Client(Redis.from_url(f"redis://127.0.0.1:{dead}/0", socket_connect_timeout=1))
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
        yield f"http://127.0.0.1:{port}/graphql"
    finally:
        server.should_exit = True
        await task
        await client.close()


async def test_redis_down_is_an_unavailable_error_not_a_traceback(
    graphql_without_redis: str, caplog: pytest.LogCaptureFixture
) -> None:
    transport = HTTPXAsyncTransport(url=graphql_without_redis, timeout=10)
    async with GraphQLClient(transport=transport) as session:
        with pytest.raises(TransportQueryError) as raised:
            await session.execute(
                gql('mutation { enqueueSms(payload: {to: "+14155550100", body: "x"}) { id } }')
            )
        [error] = raised.value.errors or []
        assert error["extensions"] == {"code": "UNAVAILABLE", "retryAfter": 1}
        assert "was not enqueued" in error["message"]
        with pytest.raises(TransportQueryError) as raised:
            await session.execute(gql("{ channelCounts(channel: SMS) { waiting } }"))
        [error] = raised.value.errors or []
        assert error["extensions"]["code"] == "UNAVAILABLE"
    assert not [r for r in caplog.records if r.exc_info], "a traceback was logged"


async def _run(
    session: AsyncClientSession, request: GraphQLRequest, variables: dict[str, Any]
) -> dict[str, Any]:
    """`request` with `variables` (gql 4 takes them on the request)."""
    return await session.execute(GraphQLRequest(request, variable_values=variables))


async def _total(session: AsyncClientSession, channel: str) -> int:
    result = await _run(
        session,
        gql(
            "query($c: ChannelName!) { channelCounts(channel: $c) "
            "{ waiting active delayed completed failed } }"
        ),
        {"c": channel},
    )
    counts = result["channelCounts"]
    return sum(
        int(counts[state]) for state in ("waiting", "active", "delayed", "completed", "failed")
    )


def _auth() -> dict[str, str]:
    return {"Authorization": f"Bearer {API_KEY}"}


async def test_enable_graphql_false_serves_no_graphql(redis_url: str) -> None:
    async with running_app(
        redis_url=redis_url, enable_graphql=False, enable_workers=False, enable_grpc=False
    ) as app:
        assert app.http is not None
        response = await app.http.post("/graphql", json={"query": "{ __typename }"})
        assert response.status_code == 404
        assert (await app.http.get("/health/live")).status_code == 200
