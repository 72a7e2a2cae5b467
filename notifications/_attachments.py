"""Download an email's attachments by URL, with a size cap, before the message is built.

What each outcome of the download does to the job:

    2xx                                  attached
    other 4xx, too large, not http(s)    DeliveryRejected: the URL will not get better
    408, 429, 5xx, network errors        ProviderUnavailable: the job is retried
"""

from __future__ import annotations

import mimetypes
from collections.abc import Sequence
from dataclasses import dataclass

import httpx

from generated.models.email import Attachment
from notifications.errors import DeliveryRejected, ProviderUnavailable

__all__ = ["MAX_ATTACHMENT_BYTES", "FetchedAttachment", "fetch_attachments"]

MAX_ATTACHMENT_BYTES = 10 * 1024 * 1024
"""The most one attachment may weigh; the schema's description promises the same."""

_SOURCE = "attachment server"
_RETRIED_CLIENT_ERRORS = frozenset({408, 429})


@dataclass(frozen=True, slots=True)
class FetchedAttachment:
    filename: str
    content_type: str
    """`maintype/subtype`, without parameters."""
    data: bytes


async def fetch_attachments(
    attachments: Sequence[Attachment], *, http_timeout: float = 30.0
) -> list[FetchedAttachment]:
    """Download every attachment, in order, over one client."""
    if not attachments:
        return []
    async with httpx.AsyncClient(timeout=http_timeout, follow_redirects=True) as client:
        return [await _fetch(client, attachment) for attachment in attachments]


async def _fetch(client: httpx.AsyncClient, attachment: Attachment) -> FetchedAttachment:
    url = str(attachment.url)
    name = attachment.filename
    if httpx.URL(url).scheme not in ("http", "https"):
        raise DeliveryRejected(_SOURCE, f"attachment {name!r}: {url} is not an http(s) URL")
    try:
        async with client.stream("GET", url) as response:
            status = response.status_code
            if not response.is_success:
                reason = f"attachment {name!r}: GET {url} answered HTTP {status}"
                if 400 <= status < 500 and status not in _RETRIED_CLIENT_ERRORS:
                    raise DeliveryRejected(_SOURCE, reason)
                raise ProviderUnavailable(_SOURCE, reason)
            declared = response.headers.get("Content-Length", "")
            if declared.isdigit() and int(declared) > MAX_ATTACHMENT_BYTES:
                raise _too_large(name, url)
            chunks: list[bytes] = []
            size = 0
            async for chunk in response.aiter_bytes():
                size += len(chunk)
                if size > MAX_ATTACHMENT_BYTES:
                    raise _too_large(name, url)
                chunks.append(chunk)
            header_type = response.headers.get("Content-Type", "")
    except httpx.HTTPError as error:
        reason = f"attachment {name!r}: {type(error).__name__} on GET {url}: {error}"
        raise ProviderUnavailable(_SOURCE, reason) from error
    return FetchedAttachment(
        filename=name,
        content_type=_content_type(attachment.content_type, header_type, name),
        data=b"".join(chunks),
    )


def _content_type(declared: str | None, header: str, filename: str) -> str:
    """The payload's type, else the server's, else a guess from the name, else bytes."""
    for candidate in (declared, header.split(";", 1)[0].strip().lower()):
        if candidate and "/" in candidate:
            return candidate
    guessed, _ = mimetypes.guess_type(filename)
    return guessed or "application/octet-stream"


def _too_large(name: str, url: str) -> DeliveryRejected:
    limit = MAX_ATTACHMENT_BYTES // (1024 * 1024)
    return DeliveryRejected(_SOURCE, f"attachment {name!r} at {url} is larger than {limit} MiB")
