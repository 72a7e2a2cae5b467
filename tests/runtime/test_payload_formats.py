"""String formats (`email`, `uri`, `date-time`, `uuid`) accept and reject the same values
on every path: the Python producer, HTTP and gRPC (the generated model on the decoded
JSON), and the worker (the envelope decoding the stream entry's bytes); the generated
`Email` gives pydantic `EmailStr`'s verdicts and normalised values; over real HTTP, a
valid value is enqueued (202) and an invalid one is a 422 naming the field."""

from __future__ import annotations

import asyncio
import json
import uuid
from pathlib import Path
from typing import Annotated, Any

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydantic import EmailStr, Field, ValidationError, create_model

from runtime.engine.client import encode_job
from runtime.engine.email_format import _PLAIN_ADDRESS, Email
from runtime.engine.envelope import envelope_model
from runtime.engine.model import Payload
from tests.conftest import delete_keys, new_prefix
from tests.runtime.conftest import (
    clean_env,
    free_port,
    generate_project,
    import_from_project,
    kill,
    spawn_serve,
)

APP = "formats_app"
CHANNEL = "formats"
SCHEMA = {
    "type": "object",
    "additionalProperties": False,
    "properties": {
        "email": {"type": "string", "format": "email", "maxLength": 254},
        "uri": {"type": "string", "format": "uri"},
        "date_time": {"type": "string", "format": "date-time"},
        "uuid": {"type": "string", "format": "uuid"},
    },
}

# (field, value, valid?) — the verdicts are those of the JSON Schema formats as pydantic
# checks them (email through email-validator's rules).
TABLE: list[tuple[str, Any, bool]] = [
    ("email", "ada@example.com", True),
    ("email", "Ada.Lovelace+news@Mail.Example.CO.UK", True),
    ("email", "POSTMASTER@example.com", True),
    ("email", "o'brien@example.ie", True),
    ("email", "jörg@bücher.example", True),
    ("email", "a@xn--bcher-kva.example", True),
    ("email", "Ada <ada@example.com>", True),
    ("email", " ada@example.com ", True),
    ("email", "ada@example", False),
    ("email", "ada@localhost", False),
    ("email", "ada@host.test", False),
    ("email", "ada@printer.local", False),
    ("email", "ada@ab--cd.example", False),
    ("email", "ada..b@example.com", False),
    ("email", ".ada@example.com", False),
    ("email", "ada@-example.com", False),
    ("email", "ada@example.123", False),
    ("email", '"a b"@example.com', False),
    ("email", "ada@example.com\n", False),
    ("email", "a" * 250 + "@example.com", False),
    ("email", "ada@" + "b" * 64 + ".example", False),
    ("email", "no-at-sign", False),
    ("email", 7, False),
    ("uri", "https://shop.example.com/orders/1?x=1#top", True),
    ("uri", "mailto:ada@example.com", True),
    ("uri", "ftp://files.example.com/a.txt", True),
    ("uri", "not a uri", False),
    ("uri", "/relative/path", False),
    ("uri", "", False),
    ("date_time", "2026-11-30T17:42:05Z", True),
    ("date_time", "2026-11-30T17:42:05.123+02:00", True),
    ("date_time", "2026-11-30", False),
    ("date_time", "2026-11-30T17:42:05", False),  # RFC 3339 needs the offset
    ("date_time", "2026-13-30T17:42:05Z", False),
    ("date_time", "yesterday", False),
    ("uuid", "6f1c2a9e-3b7d-4c51-9a0e-2d8b4f6a1c37", True),
    ("uuid", "6F1C2A9E3B7D4C519A0E2D8B4F6A1C37", True),
    ("uuid", "6f1c2a9e-3b7d-4c51-9a0e", False),
    ("uuid", "not-a-uuid", False),
]


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory) -> Path:
    source = tmp_path_factory.mktemp("formats-source")
    (source / "formats_handlers.py").write_text(
        "async def handle(payload: object) -> None:\n    return None\n"
    )
    config = {
        "version": 1,
        "channels": {CHANNEL: {"handler": "formats_handlers:handle", "payload": SCHEMA}},
    }
    (source / "channels.yaml").write_text(json.dumps(config))
    return generate_project(source, tmp_path_factory.mktemp("formats") / "project", APP)


def _verdict(validate: Any, value: Any) -> tuple[bool, str]:
    try:
        return True, validate(value)
    except ValidationError as error:
        return False, ";".join(".".join(map(str, e["loc"])) for e in error.errors())


def test_every_path_gives_the_same_verdict(project: Path) -> None:
    model = import_from_project(project, f"{APP}.models.{CHANNEL}").FormatsPayload
    registry = import_from_project(project, f"{APP}.registry")
    envelope = envelope_model(registry.CHANNELS_BY_NAME[CHANNEL])
    job_id = uuid.uuid4().hex

    def producer(payload: dict[str, Any]) -> Any:  # Python producer, HTTP, gRPC
        return model.model_validate(payload).model_dump(mode="json")

    def worker(payload: dict[str, Any]) -> Any:
        message = json.dumps(
            {
                "task_id": job_id,
                "task_name": f"channelkit.{CHANNEL}",
                "labels": {},
                "args": [],
                "kwargs": {"payload": payload},
            }
        )
        return envelope.model_validate_json(message).kwargs.payload.model_dump(mode="json")

    for field, value, valid in TABLE:
        payload = {field: value}
        at_producer = _verdict(producer, payload)
        at_worker = _verdict(worker, payload)
        assert at_producer[0] is valid, (field, value, at_producer)
        assert at_worker[0] is valid, (field, value, at_worker)
        if valid:
            assert at_producer == at_worker, (field, value)
            # What the producer writes, the worker reads back unchanged.
            written = encode_job(CHANNEL, model.model_validate(payload), job_id)
            decoded = envelope.model_validate_json(written).kwargs.payload
            assert decoded.model_dump(mode="json") == at_producer[1]
        else:
            assert at_producer[1] == field
            assert at_worker[1].endswith(f"payload.{field}")


_EMAIL_STR: Any = create_model(
    "WithEmailStr", __base__=Payload, value=(Annotated[EmailStr, Field(max_length=254)], ...)
)
_EMAIL: Any = create_model(
    "WithEmail", __base__=Payload, value=(Annotated[Email, Field(max_length=254)], ...)
)


def _email_outcome(model: Any, value: Any) -> tuple[str, Any]:
    try:
        return "ok", model.model_validate({"value": value}).value
    except ValidationError as error:
        return "error", [(e["type"], e["msg"], e["loc"]) for e in error.errors()]


@pytest.mark.parametrize("value", [value for field, value, _ in TABLE if field == "email"])
def test_email_matches_email_str_on_the_table(value: Any) -> None:
    assert _email_outcome(_EMAIL, value) == _email_outcome(_EMAIL_STR, value)


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.from_regex(_PLAIN_ADDRESS, fullmatch=True) | st.text(max_size=40))
def test_email_matches_email_str_on_generated_addresses(value: str) -> None:
    """Addresses of the shape the fast path takes (and any text): the same outcome."""
    assert _email_outcome(_EMAIL, value) == _email_outcome(_EMAIL_STR, value)


async def test_http_accepts_and_rejects_by_the_table(
    project: Path, redis_url: str, tmp_path: Path
) -> None:
    prefix = new_prefix("formats")
    port = free_port()
    environ = clean_env() | {
        "CHANNELKIT_APP": APP,
        "REDIS_URL": redis_url,
        "CHANNELKIT_KEY_PREFIX": prefix,
        "HTTP_PORT": str(port),
        "GRPC_PORT": str(free_port()),
        "ENABLE_WORKERS": "false",
        "ENABLE_GRPC": "false",
        "SHUTDOWN_TIMEOUT": "5",
    }
    process = await spawn_serve(project, environ, tmp_path / "serve.log")
    try:
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=10) as http:
            for _ in range(300):
                try:
                    if (await http.get("/health/ready")).status_code == 200:
                        break
                except httpx.TransportError:
                    pass
                await asyncio.sleep(0.05)
            for field, value, valid in TABLE:
                response = await http.post(f"/channels/{CHANNEL}/jobs", json={field: value})
                expected = 202 if valid else 422
                assert response.status_code == expected, (field, value, response.text)
                if not valid:
                    assert field in response.text
    finally:
        kill(process)
        await process.wait()
        delete_keys(redis_url, f"{prefix}*")
