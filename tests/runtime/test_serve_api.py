"""`runtime serve` as a process: each way in (HTTP, gRPC, the Python producer) runs the
handler; invalid, unauthenticated and oversized requests are refused and enqueue nothing."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Iterable
from pathlib import Path
from typing import Any

import httpx
import pytest

from runtime.engine.client import Client
from tests.runtime.conftest import (
    APP,
    Probe,
    ServeFactory,
    events_of,
    grpc_calls,
    import_from_project,
)

pytestmark = pytest.mark.timeout(60)


def _call(method: str, payload: dict[str, Any], key: str | None = None) -> dict[str, Any]:
    call: dict[str, Any] = {"method": method, "request": {"payload": payload}}
    if key is not None:
        call["metadata"] = [["authorization", key]]
    return call


async def test_http_enqueue_runs_the_handler(serve: ServeFactory, probe: Probe) -> None:
    server = await serve()
    async with httpx.AsyncClient(base_url=server.http_url, timeout=10) as http:
        response = await http.post("/channels/fast/jobs", json={"id": "via-http"})
    assert response.status_code == 202, response.text
    body = response.json()
    assert body["channel"] == "fast"
    assert body["id"]

    events = await probe.wait_for(lambda seen: bool(events_of(seen, "fast")))
    assert events_of(events, "fast") == [("via-http", server.pid)]


async def test_grpc_enqueue_runs_the_handler(
    serve: ServeFactory, probe: Probe, probe_project: Path
) -> None:
    server = await serve()
    [result] = await grpc_calls(probe_project, server, [_call("EnqueueFast", {"id": "via-grpc"})])
    assert result["code"] == "OK", result
    assert result["reply"]["job_id"]

    events = await probe.wait_for(lambda seen: bool(events_of(seen, "fast")))
    assert events_of(events, "fast") == [("via-grpc", server.pid)]


async def test_python_producer_runs_the_handler(
    serve: ServeFactory, probe: Probe, probe_project: Path, redis_url: str, key_prefix: str
) -> None:
    server = await serve()
    fast = import_from_project(probe_project, f"{APP}.channels.fast")
    models = import_from_project(probe_project, f"{APP}.models.fast")
    async with Client.from_url(redis_url, prefix=key_prefix) as client:
        job_id = await fast.enqueue(client, models.FastPayload(id="via-producer"))
    assert job_id

    events = await probe.wait_for(lambda seen: bool(events_of(seen, "fast")))
    assert events_of(events, "fast") == [("via-producer", server.pid)]


async def test_invalid_payload_is_refused_and_nothing_enqueued(
    serve: ServeFactory, probe: Probe, probe_project: Path
) -> None:
    # No workers, so whatever was enqueued would stay in the stream to be counted.
    server = await serve({"ENABLE_WORKERS": "false"})
    async with httpx.AsyncClient(base_url=server.http_url, timeout=10) as http:
        response = await http.post("/channels/slow/jobs", json={"id": "", "seconds": "soon"})
        assert response.status_code == 422, response.text
        fields = {error["field"] for error in response.json()["errors"]}
        assert fields == {"id", "seconds"}
        assert "seconds" in response.json()["detail"]

        response = await http.post("/channels/slow/jobs", json={"seconds": 1.0, "extra": 1})
        assert response.status_code == 422, response.text
        assert {"id", "extra"} <= {error["field"] for error in response.json()["errors"]}

    too_long, missing = await grpc_calls(
        probe_project,
        server,
        [_call("EnqueueSlow", {"id": "ok", "seconds": 99.0}), _call("EnqueueFast", {})],
    )
    assert too_long["code"] == "INVALID_ARGUMENT", too_long
    assert "seconds" in too_long["details"]
    assert missing["code"] == "INVALID_ARGUMENT", missing
    assert "id" in missing["details"]

    assert await probe.queued("slow") == 0

    # The control: a valid job does land in the same stream.
    async with httpx.AsyncClient(base_url=server.http_url, timeout=10) as http:
        response = await http.post("/channels/slow/jobs", json={"id": "ok", "seconds": 0.0})
    assert response.status_code == 202, response.text
    assert await probe.queued("slow") == 1


async def test_api_keys_guard_http_and_grpc(
    serve: ServeFactory, probe: Probe, probe_project: Path
) -> None:
    server = await serve({"API_KEYS": "k1,k2"})
    job = {"id": "keyed"}
    async with httpx.AsyncClient(base_url=server.http_url, timeout=10) as http:
        response = await http.post("/channels/fast/jobs", json=job)
        assert response.status_code == 401, response.text
        assert response.headers.get("www-authenticate") == "Bearer"
        wrong = {"Authorization": "Bearer k3"}
        response = await http.post("/channels/fast/jobs", json=job, headers=wrong)
        assert response.status_code == 401, response.text
        basic = {"Authorization": "Basic k1"}
        response = await http.post("/channels/fast/jobs", json=job, headers=basic)
        assert response.status_code == 401, response.text
        right = {"Authorization": "Bearer k2"}
        response = await http.post("/channels/fast/jobs", json=job, headers=right)
        assert response.status_code == 202, response.text
        assert (await http.get("/health/live")).status_code == 200
        assert (await http.get("/health/ready")).status_code == 200

    payload = {"id": "keyed-grpc"}
    results = await grpc_calls(
        probe_project,
        server,
        [
            _call("EnqueueFast", payload),
            _call("EnqueueFast", payload, key="k1"),
            _call("EnqueueFast", payload, key="Bearer k3"),
            _call("EnqueueFast", payload, key="Bearer k1"),
        ],
    )
    assert [result["code"] for result in results] == ["UNAUTHENTICATED"] * 3 + ["OK"], results

    events = await probe.wait_for(lambda seen: len(events_of(seen, "fast")) == 2)
    assert sorted(job for job, _ in events_of(events, "fast")) == ["keyed", "keyed-grpc"]


async def test_body_over_the_limit_is_refused(
    serve: ServeFactory, probe: Probe, probe_project: Path
) -> None:
    server = await serve({"MAX_BODY_SIZE": "2048", "ENABLE_WORKERS": "false"})
    big = "x" * 10_000
    async with httpx.AsyncClient(base_url=server.http_url, timeout=10) as http:
        response = await http.post("/channels/fast/jobs", json={"id": big})
        assert response.status_code == 413, response.text
        # Also when the client does not announce the length up front.
        chunks = (part.encode() for part in ('{"id": "', big, '"}'))
        response = await http.post(
            "/channels/fast/jobs",
            content=_aiter(chunks),
            headers={"content-type": "application/json"},
        )
        assert response.status_code == 413, response.text

    [result] = await grpc_calls(probe_project, server, [_call("EnqueueFast", {"id": big})])
    assert result["code"] == "RESOURCE_EXHAUSTED", result

    assert await probe.queued("fast") == 0
    async with httpx.AsyncClient(base_url=server.http_url, timeout=10) as http:
        response = await http.post("/channels/fast/jobs", json={"id": "small"})
    assert response.status_code == 202, response.text
    assert await probe.queued("fast") == 1


async def _aiter(chunks: Iterable[bytes]) -> AsyncIterator[bytes]:
    for chunk in chunks:
        yield chunk


async def test_json_logs_stay_json_and_refused_requests_are_not_errors(
    serve: ServeFactory, probe: Probe
) -> None:
    server = await serve({"LOG_FORMAT": "json", "API_KEYS": "k1", "ENABLE_WORKERS": "false"})
    async with httpx.AsyncClient(base_url=server.http_url, timeout=10) as http:
        assert (await http.post("/channels/fast/jobs", json={"id": "x"})).status_code == 401
        keyed = {"Authorization": "Bearer k1"}
        response = await http.post("/channels/fast/jobs", json={"id": ""}, headers=keyed)
        assert response.status_code == 422
        response = await http.post("/channels/nope/jobs", json={"id": "x"}, headers=keyed)
        assert response.status_code == 404
    assert await server.stop() == 0

    lines = [line for line in server.output().splitlines() if line.strip()]
    records = []
    for line in lines:
        try:
            records.append(json.loads(line))
        except json.JSONDecodeError:
            pytest.fail(f"LOG_FORMAT=json wrote a line that is not JSON: {line!r}")
    assert any(record["message"].startswith("ready:") for record in records)
    errors = [record for record in records if record["level"] in ("error", "critical")]
    assert errors == []
