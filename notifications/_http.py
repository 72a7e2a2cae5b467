"""POST a message to an HTTP provider and sort its answer into sent, retry or fail.

    2xx                      sent; the message id is taken from the JSON answer
    408, 429, 5xx, network   ProviderUnavailable: the job is retried
    other 4xx                DeliveryRejected: the job fails for good
    anything else (3xx)      ProviderUnavailable

The request goes through the process's pooled client for the provider
(`notifications.resources`), so jobs reuse kept-alive connections.
"""

from __future__ import annotations

import json
from typing import Any

import httpx

from notifications.errors import DeliveryRejected, ProviderUnavailable
from notifications.settings import ProviderSettings

__all__ = ["post_json"]

_RETRIED_CLIENT_ERRORS = frozenset({408, 429})
_SHOWN_BODY_CHARS = 500


async def post_json(
    client: httpx.AsyncClient,
    provider: ProviderSettings,
    body: dict[str, Any],
    *,
    idempotency_key: str,
) -> str | None:
    """Send `body`; return the provider's message id, if its answer names one.

    `idempotency_key` goes out as the Idempotency-Key header: pass the job id, which a
    retry keeps, so a provider that honours the header sends a retried message once.
    """
    headers = {"Accept": "application/json", "Idempotency-Key": idempotency_key}
    if provider.token:
        headers["Authorization"] = f"Bearer {provider.token}"
    try:
        response = await client.post(provider.url, json=body, headers=headers)
    except httpx.HTTPError as error:
        reason = f"{type(error).__name__} on POST {provider.url}: {error}"
        raise ProviderUnavailable(provider.name, reason) from error
    status = response.status_code
    if response.is_success:
        return _message_id(response)
    reason = f"HTTP {status} {response.reason_phrase}: {_excerpt(response.text)}"
    if 400 <= status < 500 and status not in _RETRIED_CLIENT_ERRORS:
        raise DeliveryRejected(provider.name, reason)
    raise ProviderUnavailable(provider.name, reason)


def _message_id(response: httpx.Response) -> str | None:
    """`id` or `message_id` at the top level, or `messages[0].id` (WhatsApp Cloud API)."""
    try:
        answer = response.json()
    except (json.JSONDecodeError, UnicodeDecodeError):
        return None
    if not isinstance(answer, dict):
        return None
    for key in ("message_id", "id"):
        value = answer.get(key)
        if isinstance(value, str | int) and not isinstance(value, bool) and str(value):
            return str(value)
    messages = answer.get("messages")
    if isinstance(messages, list) and messages and isinstance(messages[0], dict):
        value = messages[0].get("id")
        if isinstance(value, str) and value:
            return value
    return None


def _excerpt(text: str) -> str:
    text = " ".join(text.split())
    if len(text) <= _SHOWN_BODY_CHARS:
        return text or "(empty body)"
    return text[:_SHOWN_BODY_CHARS] + "…"
