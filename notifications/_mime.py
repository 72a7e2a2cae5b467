"""Build the MIME message for an email payload.

Inline content becomes text/plain, text/html, or multipart/alternative with both.
Template content has no template store behind it: `render_template` writes a plain-text
body that names the template and lists each variable as `name: value`, and the message
carries the template id in an X-Template-Id header. Attachments turn the message into
multipart/mixed. Bcc recipients appear in no header; they are only envelope recipients.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from email.headerregistry import Address
from email.message import EmailMessage
from email.utils import formatdate, make_msgid

from generated.models.email import EmailPayload, InlineContent, Recipient, TemplateContent
from notifications._attachments import FetchedAttachment
from notifications._metadata import metadata_of
from notifications.errors import DeliveryRejected

__all__ = [
    "Body",
    "body_of",
    "build_message",
    "envelope_recipients",
    "message_id_for",
    "render_template",
]

_UNSAFE_IN_MESSAGE_ID = re.compile(r"[^A-Za-z0-9!#$%&'*+/=?^_`{|}~.-]+")


@dataclass(frozen=True, slots=True)
class Body:
    """The text and HTML parts of a message; at least one is set."""

    text: str | None
    html: str | None
    template_id: str | None
    """Set for template content: sent as the X-Template-Id header."""


def body_of(content: InlineContent | TemplateContent) -> Body:
    """The parts to send; DeliveryRejected for inline content with neither text nor html."""
    if isinstance(content, TemplateContent):
        text = render_template(content.template_id, content.variables or {})
        return Body(text=text, html=None, template_id=content.template_id)
    if not content.text and not content.html:
        raise DeliveryRejected("the email channel", "inline content needs text, html or both")
    return Body(text=content.text, html=content.html, template_id=None)


def render_template(template_id: str, variables: Mapping[str, str]) -> str:
    """`Template <id>`, a blank line, then `name: value` per variable in the given order."""
    lines = [f"Template {template_id}", ""]
    lines.extend(f"{name}: {value}" for name, value in variables.items())
    return "\n".join(lines) + "\n"


def message_id_for(job_id: str, domain: str) -> str:
    """`<job-id@domain>`: a retried job sends the same Message-ID, so receivers can
    recognise the duplicate should an earlier attempt have got through after all."""
    token = _UNSAFE_IN_MESSAGE_ID.sub("-", job_id).strip(".-")
    return f"<{token}@{domain}>" if token else make_msgid(domain=domain)


def build_message(
    payload: EmailPayload,
    body: Body,
    *,
    sender: Address,
    message_id: str,
    attachments: Sequence[FetchedAttachment] = (),
) -> EmailMessage:
    message = EmailMessage()
    message["From"] = sender
    message["To"] = _addresses(payload.to)
    if payload.cc:
        message["Cc"] = _addresses(payload.cc)
    if payload.reply_to:
        message["Reply-To"] = payload.reply_to
    message["Subject"] = payload.subject
    message["Date"] = formatdate(usegmt=True)
    message["Message-ID"] = message_id
    if body.template_id:
        message["X-Template-Id"] = body.template_id
    metadata = metadata_of(payload)
    if metadata:
        message["X-Metadata"] = json.dumps(metadata, sort_keys=True)
    if body.text:
        message.set_content(body.text)
        if body.html:
            message.add_alternative(body.html, subtype="html")
    elif body.html:
        message.set_content(body.html, subtype="html")
    for attachment in attachments:
        maintype, _, subtype = attachment.content_type.partition("/")
        message.add_attachment(
            attachment.data, maintype=maintype, subtype=subtype, filename=attachment.filename
        )
    return message


def envelope_recipients(payload: EmailPayload) -> list[str]:
    """Every To, Cc and Bcc address once, in that order (addresses compared ignoring case)."""
    seen: set[str] = set()
    addresses: list[str] = []
    for recipient in [*payload.to, *(payload.cc or []), *(payload.bcc or [])]:
        if recipient.email.lower() not in seen:
            seen.add(recipient.email.lower())
            addresses.append(recipient.email)
    return addresses


def _addresses(recipients: Sequence[Recipient]) -> tuple[Address, ...]:
    return tuple(
        Address(display_name=recipient.name or "", addr_spec=recipient.email)
        for recipient in recipients
    )
