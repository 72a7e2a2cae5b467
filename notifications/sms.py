"""The `sms` channel: a text message, POSTed as JSON to `SMS_PROVIDER_URL`.

The request body is the payload as JSON (`to`, `body`, and `sender_id`, `priority`,
`metadata` when set); the provider answers with the message's `id` or `message_id`.
"""

from __future__ import annotations

from generated.models.sms import SmsPayload, SmsResult
from notifications._http import post_json
from notifications._metadata import for_log
from notifications._result import delivery_result
from notifications.resources import Resources
from notifications.settings import ProviderSettings
from runtime.engine.context import JobContext

__all__ = ["send_sms"]


async def send_sms(payload: SmsPayload, context: JobContext[Resources]) -> SmsResult:
    """Send one text message; without SMS_PROVIDER_URL, log it and report a dry run."""
    body = payload.model_dump(mode="json", exclude_none=True)
    to = str(body["to"])
    provider = ProviderSettings.from_env("SMS")
    if provider is None:
        context.logger.info(
            "job %s: SMS_PROVIDER_URL is not set; would send SMS to %s: %r%s",
            context.job_id,
            to,
            body["body"],
            for_log(payload),
        )
        return delivery_result(SmsResult, accepted=[to], dry_run=True)
    message_id = await post_json(
        context.resources.http.for_provider(provider),
        provider,
        body,
        idempotency_key=context.job_id,
    )
    context.logger.info(
        "job %s: SMS to %s accepted as %s%s", context.job_id, to, message_id, for_log(payload)
    )
    return delivery_result(SmsResult, accepted=[to], message_id=message_id)
