"""A body that is not one JSON object of unique keys, within a sane depth, is refused
with a 4xx naming the problem, and nothing is enqueued."""

from __future__ import annotations

import httpx
import pytest

from runtime.http.body import MAX_DEPTH

SMS = b'{"to": "+14155550100", "body": "hello"}'


@pytest.mark.parametrize(
    ("content", "content_type", "status", "message"),
    [
        (b"[" * 100_000 + b"]" * 100_000, "application/json", 422, "nests deeper than"),
        (b"[" * (MAX_DEPTH + 1) + b"]" * (MAX_DEPTH + 1), "application/json", 422, "nests"),
        (b"", "application/json", 422, "a JSON body is required"),
        (b"  ", "application/json", 422, "a JSON body is required"),
        (SMS, "text/plain", 415, "send Content-Type: application/json"),
        (SMS, "", 415, "send Content-Type: application/json"),
        (
            b'{"to": "+14155550100", "body": "a", "body": "b"}',
            "application/json",
            422,
            "key 'body' appears twice",
        ),
        (b'{"to": ', "application/json", 422, "not valid JSON"),
    ],
)
async def test_a_bad_body_is_refused_before_anything_is_enqueued(
    http_without_redis: httpx.AsyncClient,
    content: bytes,
    content_type: str,
    status: int,
    message: str,
) -> None:
    # Redis is unreachable here: a request that got past the check would be a 503.
    headers = {"content-type": content_type} if content_type else {}
    response = await http_without_redis.post("/channels/sms/jobs", content=content, headers=headers)
    assert response.status_code == status, response.text
    error = response.json()["errors"][0]
    assert error["field"] == "body"
    assert message in error["message"]


async def test_a_json_media_type_with_parameters_passes_the_check(
    http_without_redis: httpx.AsyncClient,
) -> None:
    response = await http_without_redis.post(
        "/channels/sms/jobs",
        content=SMS,
        headers={"content-type": "application/json; charset=utf-8"},
    )
    assert response.status_code == 503, response.text  # reached Redis, which is down


@pytest.mark.parametrize("key", ["ключ-1", "café", "with space"])
async def test_an_idempotency_key_outside_visible_ascii_is_refused(
    http_without_redis: httpx.AsyncClient, key: str
) -> None:
    response = await http_without_redis.post(
        "/channels/sms/jobs",
        content=SMS,
        # raw bytes: what a client sending a UTF-8 key puts on the wire
        headers=[(b"content-type", b"application/json"), (b"idempotency-key", key.encode())],
    )
    assert response.status_code == 422, response.text
    assert response.json()["errors"][0]["field"] == "idempotency_key"
