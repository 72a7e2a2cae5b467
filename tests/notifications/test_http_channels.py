"""notifications.sms, .push and .whatsapp against a real local HTTP server.

What the three share (auth header, idempotency key, how answers map to retry or fail) is
tested once for each; what each sends is tested in its own section below.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import pytest
from pydantic import BaseModel

from generated.models.push import PushPayload
from generated.models.sms import SmsPayload
from generated.models.whatsapp import WhatsappPayload
from notifications.errors import DeliveryRejected, ProviderUnavailable
from notifications.push import send_push
from notifications.resources import Resources
from notifications.sms import send_sms
from notifications.whatsapp import send_whatsapp
from runtime.engine.context import JobContext
from runtime.errors import ConfigError, PermanentError
from tests.notifications.servers import HttpServer, free_port, job_context

SMS = {"to": "+447700900123", "body": "Your code is 913204", "sender_id": "Shop"}
PUSH = {"device_tokens": ["tok-a", "tok-b"], "title": "Order shipped", "body": "On its way"}
WHATSAPP = {
    "to": "+5511987654321",
    "template": {
        "name": "order_shipped",
        "language": "pt_BR",
        "parameters": [
            {"text": "Ada"},
            {"currency": {"fallback_value": "R$12,34", "code": "BRL", "amount_1000": 12340}},
            {"date_time": {"fallback_value": "25 de fevereiro"}},
        ],
    },
}


@dataclass(frozen=True)
class Channel:
    name: str
    prefix: str
    send: Callable[[Any, JobContext[Resources]], Awaitable[Any]]
    payload: BaseModel
    recipients: list[str]


CHANNELS = [
    Channel("sms", "SMS", send_sms, SmsPayload.model_validate(SMS), ["+447700900123"]),
    Channel("push", "PUSH", send_push, PushPayload.model_validate(PUSH), ["tok-a", "tok-b"]),
    Channel(
        "whatsapp",
        "WHATSAPP",
        send_whatsapp,
        WhatsappPayload.model_validate(WHATSAPP),
        ["+5511987654321"],
    ),
]
each_channel = pytest.mark.parametrize("channel", CHANNELS, ids=lambda channel: channel.name)


def configure(
    monkeypatch: pytest.MonkeyPatch, server: HttpServer, prefix: str, token: str | None = None
) -> None:
    monkeypatch.setenv(f"{prefix}_PROVIDER_URL", server.url(f"/v1/{prefix.lower()}"))
    if token:
        monkeypatch.setenv(f"{prefix}_PROVIDER_TOKEN", token)


# --- shared behaviour -------------------------------------------------------------------


@each_channel
async def test_posts_json_with_bearer_token_and_job_id_as_idempotency_key(
    channel: Channel, monkeypatch: pytest.MonkeyPatch, http_server: HttpServer, resources: Resources
) -> None:
    configure(monkeypatch, http_server, channel.prefix, token="s3cret")
    http_server.reply_json(201, {"id": "msg-123", "status": "queued"})

    result = await channel.send(
        channel.payload, job_context(resources, channel.name, job_id="job-42")
    )

    [request] = http_server.requests
    assert request.method == "POST"
    assert request.path == f"/v1/{channel.name}"
    assert request.headers["authorization"] == "Bearer s3cret"
    assert request.headers["idempotency-key"] == "job-42"
    assert request.headers["content-type"] == "application/json"
    assert isinstance(request.json(), dict)
    assert result.provider_message_id == "msg-123"
    assert result.accepted == channel.recipients
    assert result.rejected == []
    assert result.dry_run is False
    assert result.sent_at.tzinfo is not None


@each_channel
async def test_no_token_sends_no_authorization_header(
    channel: Channel, monkeypatch: pytest.MonkeyPatch, http_server: HttpServer, resources: Resources
) -> None:
    configure(monkeypatch, http_server, channel.prefix)

    result = await channel.send(channel.payload, job_context(resources, channel.name))

    [request] = http_server.requests
    assert "authorization" not in request.headers
    assert result.provider_message_id is None  # the answer `{}` names no message


@each_channel
@pytest.mark.parametrize("status", [400, 401, 404, 422])
async def test_client_error_fails_the_job_for_good(
    channel: Channel,
    status: int,
    monkeypatch: pytest.MonkeyPatch,
    http_server: HttpServer,
    resources: Resources,
) -> None:
    configure(monkeypatch, http_server, channel.prefix)
    http_server.reply_json(status, {"error": "invalid destination"})

    with pytest.raises(DeliveryRejected, match=rf"HTTP {status}.*invalid destination") as caught:
        await channel.send(channel.payload, job_context(resources, channel.name))

    assert isinstance(caught.value, PermanentError)
    assert len(http_server.requests) == 1


@each_channel
@pytest.mark.parametrize("status", [408, 429, 500, 502, 503])
async def test_server_error_timeout_and_throttling_are_retried(
    channel: Channel,
    status: int,
    monkeypatch: pytest.MonkeyPatch,
    http_server: HttpServer,
    resources: Resources,
) -> None:
    configure(monkeypatch, http_server, channel.prefix)
    http_server.reply_text(status, "try again later")

    with pytest.raises(ProviderUnavailable, match=rf"HTTP {status}.*try again later") as caught:
        await channel.send(channel.payload, job_context(resources, channel.name))

    assert not isinstance(caught.value, PermanentError)
    assert len(http_server.requests) == 1


@each_channel
async def test_unreachable_provider_is_retried(
    channel: Channel, monkeypatch: pytest.MonkeyPatch, resources: Resources
) -> None:
    monkeypatch.setenv(f"{channel.prefix}_PROVIDER_URL", f"http://127.0.0.1:{free_port()}/send")

    with pytest.raises(ProviderUnavailable, match="ConnectError") as caught:
        await channel.send(channel.payload, job_context(resources, channel.name))

    assert not isinstance(caught.value, PermanentError)


@each_channel
async def test_a_url_that_is_not_http_is_a_config_error(
    channel: Channel, monkeypatch: pytest.MonkeyPatch, resources: Resources
) -> None:
    monkeypatch.setenv(f"{channel.prefix}_PROVIDER_URL", "ftp://provider.example/send")

    with pytest.raises(ConfigError, match=f"{channel.prefix}_PROVIDER_URL"):
        await channel.send(channel.payload, job_context(resources, channel.name))


@each_channel
async def test_unconfigured_logs_the_message_and_reports_a_dry_run(
    channel: Channel, caplog: pytest.LogCaptureFixture, resources: Resources
) -> None:
    with caplog.at_level(logging.INFO, logger=f"tests.notifications.{channel.name}"):
        result = await channel.send(
            channel.payload, job_context(resources, channel.name, job_id="j7")
        )

    [record] = caplog.records
    assert record.getMessage().startswith(f"job j7: {channel.prefix}_PROVIDER_URL is not set")
    assert result.dry_run is True
    assert result.accepted == channel.recipients
    assert result.provider_message_id is None


# --- sms --------------------------------------------------------------------------------


async def test_sms_sends_the_payload_as_json(
    monkeypatch: pytest.MonkeyPatch,
    http_server: HttpServer,
    caplog: pytest.LogCaptureFixture,
    resources: Resources,
) -> None:
    configure(monkeypatch, http_server, "SMS")
    payload = SmsPayload.model_validate({**SMS, "metadata": {"user_id": "42"}})

    with caplog.at_level(logging.INFO, logger="tests.notifications.sms"):
        await send_sms(payload, job_context(resources, "sms"))

    assert caplog.records[0].getMessage().endswith('accepted as None metadata {"user_id": "42"}')
    assert http_server.requests[0].json() == {
        "to": "+447700900123",
        "body": "Your code is 913204",
        "sender_id": "Shop",
        "priority": "normal",
        "metadata": {"user_id": "42"},
    }


async def test_sms_dry_run_logs_recipient_and_text(
    caplog: pytest.LogCaptureFixture, resources: Resources
) -> None:
    with caplog.at_level(logging.INFO, logger="tests.notifications.sms"):
        await send_sms(SmsPayload.model_validate(SMS), job_context(resources, "sms"))

    assert "+447700900123: 'Your code is 913204'" in caplog.records[0].getMessage()


# --- push -------------------------------------------------------------------------------


async def test_push_sends_the_payload_with_defaults_as_json(
    monkeypatch: pytest.MonkeyPatch, http_server: HttpServer, resources: Resources
) -> None:
    configure(monkeypatch, http_server, "PUSH")
    http_server.reply_json(200, {"message_id": 987654321})
    payload = PushPayload.model_validate(
        {**PUSH, "data": {"order": "A-17"}, "priority": "high", "ttl_seconds": 3600, "badge": 0}
    )

    result = await send_push(payload, job_context(resources, "push"))

    assert http_server.requests[0].json() == {
        "device_tokens": ["tok-a", "tok-b"],
        "title": "Order shipped",
        "body": "On its way",
        "data": {"order": "A-17"},
        "priority": "high",
        "ttl_seconds": 3600,
        "badge": 0,
    }
    assert result.provider_message_id == "987654321"


async def test_push_fills_in_schema_defaults(
    monkeypatch: pytest.MonkeyPatch, http_server: HttpServer, resources: Resources
) -> None:
    configure(monkeypatch, http_server, "PUSH")

    await send_push(PushPayload.model_validate(PUSH), job_context(resources, "push"))

    sent = http_server.requests[0].json()
    assert sent["priority"] == "normal"
    assert sent["data"] == {}
    assert "ttl_seconds" not in sent


# --- whatsapp ---------------------------------------------------------------------------


async def test_whatsapp_sends_a_cloud_api_template_message(
    monkeypatch: pytest.MonkeyPatch, http_server: HttpServer, resources: Resources
) -> None:
    configure(monkeypatch, http_server, "WHATSAPP", token="EAAG")
    http_server.reply_json(
        200,
        {
            "messaging_product": "whatsapp",
            "contacts": [{"input": "+5511987654321", "wa_id": "5511987654321"}],
            "messages": [{"id": "wamid.HBgLNTUxMTk4NzY1NDMyMRUCABIYFjNFQjA"}],
        },
    )

    result = await send_whatsapp(
        WhatsappPayload.model_validate(WHATSAPP), job_context(resources, "whatsapp")
    )

    assert http_server.requests[0].json() == {
        "messaging_product": "whatsapp",
        "recipient_type": "individual",
        "to": "+5511987654321",
        "type": "template",
        "template": {
            "name": "order_shipped",
            "language": {"code": "pt_BR"},
            "components": [
                {
                    "type": "body",
                    "parameters": [
                        {"type": "text", "text": "Ada"},
                        {
                            "type": "currency",
                            "currency": {
                                "fallback_value": "R$12,34",
                                "code": "BRL",
                                "amount_1000": 12340,
                            },
                        },
                        {"type": "date_time", "date_time": {"fallback_value": "25 de fevereiro"}},
                    ],
                }
            ],
        },
    }
    assert result.provider_message_id == "wamid.HBgLNTUxMTk4NzY1NDMyMRUCABIYFjNFQjA"


async def test_whatsapp_template_without_parameters_has_no_components(
    monkeypatch: pytest.MonkeyPatch, http_server: HttpServer, resources: Resources
) -> None:
    configure(monkeypatch, http_server, "WHATSAPP")
    payload = WhatsappPayload.model_validate(
        {"to": "+14155550100", "template": {"name": "hello_world", "language": "en_US"}}
    )

    await send_whatsapp(payload, job_context(resources, "whatsapp"))

    assert http_server.requests[0].json()["template"] == {
        "name": "hello_world",
        "language": {"code": "en_US"},
        "components": [],
    }


@pytest.mark.parametrize(
    "parameter",
    [
        {"text": "Ada", "currency": {"fallback_value": "$1", "code": "USD", "amount_1000": 1000}},
        {"text": "Ada", "extra": "x"},
        {},
    ],
    ids=["two-kinds", "unknown-key", "empty"],
)
def test_whatsapp_parameter_must_be_exactly_one_kind(parameter: dict[str, Any]) -> None:
    template = {"name": "t", "language": "en", "parameters": [parameter]}

    with pytest.raises(ValueError, match="parameters"):
        WhatsappPayload.model_validate({"to": "+14155550100", "template": template})
