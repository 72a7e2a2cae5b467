"""The `whatsapp` channel: a template message, POSTed to `WHATSAPP_PROVIDER_URL`.

The request body is the WhatsApp Cloud API's "send a template message" shape, so the URL
may be Meta's own `https://graph.facebook.com/v21.0/<phone-number-id>/messages` (with the
access token in WHATSAPP_PROVIDER_TOKEN) or a BSP that speaks the same API:

    {"messaging_product": "whatsapp", "recipient_type": "individual", "to": "+4477...",
     "type": "template",
     "template": {"name": "order_shipped", "language": {"code": "en"},
                  "components": [{"type": "body", "parameters": [
                      {"type": "text", "text": "Ada"},
                      {"type": "currency", "currency": {...}},
                      {"type": "date_time", "date_time": {...}}]}]}}

Each payload parameter carries exactly one of `text`, `currency` or `date_time`; that key
becomes the parameter's `type`. The message id comes from `messages[0].id`.
"""

from __future__ import annotations

from typing import Any

from generated.models.whatsapp import WhatsappPayload, WhatsappResult
from notifications._http import post_json
from notifications._metadata import for_log
from notifications._result import delivery_result
from notifications.resources import Resources
from notifications.settings import ProviderSettings
from runtime.engine.context import JobContext

__all__ = ["cloud_api_body", "send_whatsapp"]

_PARAMETER_KINDS = ("text", "currency", "date_time")


async def send_whatsapp(payload: WhatsappPayload, context: JobContext[Resources]) -> WhatsappResult:
    """Send one template message; without WHATSAPP_PROVIDER_URL, log it and report a dry run."""
    body = cloud_api_body(payload)
    to = str(body["to"])
    provider = ProviderSettings.from_env("WHATSAPP")
    if provider is None:
        context.logger.info(
            "job %s: WHATSAPP_PROVIDER_URL is not set; would send WhatsApp template %s to %s: %s%s",
            context.job_id,
            body["template"]["name"],
            to,
            body["template"],
            for_log(payload),
        )
        return delivery_result(WhatsappResult, accepted=[to], dry_run=True)
    message_id = await post_json(
        context.resources.http.for_provider(provider),
        provider,
        body,
        idempotency_key=context.job_id,
    )
    context.logger.info(
        "job %s: WhatsApp to %s accepted as %s%s", context.job_id, to, message_id, for_log(payload)
    )
    return delivery_result(WhatsappResult, accepted=[to], message_id=message_id)


def cloud_api_body(payload: WhatsappPayload) -> dict[str, Any]:
    """The payload as a WhatsApp Cloud API `POST /<phone-number-id>/messages` request."""
    data = payload.model_dump(mode="json", exclude_none=True)
    template = data["template"]
    parameters = [_parameter(parameter) for parameter in template.get("parameters") or []]
    components = [{"type": "body", "parameters": parameters}] if parameters else []
    return {
        "messaging_product": "whatsapp",
        "recipient_type": "individual",
        "to": data["to"],
        "type": "template",
        "template": {
            "name": template["name"],
            "language": {"code": template["language"]},
            "components": components,
        },
    }


def _parameter(parameter: dict[str, Any]) -> dict[str, Any]:
    # The schema's oneOf makes exactly one of the kinds present.
    kind = next(kind for kind in _PARAMETER_KINDS if kind in parameter)
    return {"type": kind, kind: parameter[kind]}
