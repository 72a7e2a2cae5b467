"""The `push` channel: a notification to device tokens, POSTed as JSON to `PUSH_PROVIDER_URL`.

The request body is the payload as JSON (`device_tokens`, `title`, `body`, `data`,
`priority`, and `ttl_seconds`, `badge`, `metadata` when set). The provider takes all
tokens in one request; every token counts as accepted once it answers 2xx.
"""

from __future__ import annotations

from generated.models.push import PushPayload, PushResult
from notifications._http import post_json
from notifications._metadata import for_log
from notifications._result import delivery_result
from notifications.resources import Resources
from notifications.settings import ProviderSettings
from runtime.engine.context import JobContext

__all__ = ["send_push"]


async def send_push(payload: PushPayload, context: JobContext[Resources]) -> PushResult:
    """Send one notification to every device token; without PUSH_PROVIDER_URL, log it."""
    body = payload.model_dump(mode="json", exclude_none=True)
    tokens = [str(token) for token in body["device_tokens"]]
    provider = ProviderSettings.from_env("PUSH")
    if provider is None:
        context.logger.info(
            "job %s: PUSH_PROVIDER_URL is not set; would push %r / %r to %d device(s)%s",
            context.job_id,
            body["title"],
            body["body"],
            len(tokens),
            for_log(payload),
        )
        return delivery_result(PushResult, accepted=tokens, dry_run=True)
    message_id = await post_json(
        context.resources.http.for_provider(provider),
        provider,
        body,
        idempotency_key=context.job_id,
    )
    context.logger.info(
        "job %s: push to %d device(s) accepted as %s%s",
        context.job_id,
        len(tokens),
        message_id,
        for_log(payload),
    )
    return delivery_result(PushResult, accepted=tokens, message_id=message_id)
