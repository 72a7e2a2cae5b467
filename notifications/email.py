"""The `email` channel: a transactional email, submitted over SMTP to `SMTP_URL`.

The sender is `SMTP_FROM` (default `noreply@localhost`); every To, Cc and Bcc address is
an envelope recipient. Attachments are downloaded when the job runs (see
`notifications._attachments`). The Message-ID is made from the job id, so a retry sends
the same one, and it is the result's `provider_message_id`.

    some recipients refused          sent to the rest; the refused ones are in `rejected`
    all refused, all with 5xx        DeliveryRejected: the job fails for good
    all refused, some with 4xx       ProviderUnavailable: the job is retried
    sender or message refused (5xx)  DeliveryRejected
    4xx, disconnect, timeout         ProviderUnavailable
    credentials refused              ConfigError (retried: an operator can fix SMTP_URL)

Without SMTP_URL the handler logs the message instead and reports a dry run.
"""

from __future__ import annotations

from email.message import EmailMessage

import aiosmtplib

from generated.models.email import EmailPayload, EmailResult
from notifications._attachments import fetch_attachments
from notifications._metadata import for_log
from notifications._mime import body_of, build_message, envelope_recipients, message_id_for
from notifications._result import delivery_result
from notifications.errors import DeliveryRejected, ProviderUnavailable
from notifications.resources import Resources, SmtpPool
from notifications.settings import SmtpSettings, smtp_sender
from runtime.engine.context import JobContext
from runtime.errors import ConfigError

__all__ = ["send_email"]

_SERVER = "SMTP server"


async def send_email(payload: EmailPayload, context: JobContext[Resources]) -> EmailResult:
    """Send one email; without SMTP_URL, log it and report a dry run."""
    settings = SmtpSettings.from_env()
    sender = smtp_sender()
    body = body_of(payload.content)
    message_id = message_id_for(context.job_id, sender.domain)
    recipients = envelope_recipients(payload)
    if settings is None:
        context.logger.info(
            "job %s: SMTP_URL is not set; would send email %s from %s to %s, subject %r, "
            "attachments %s%s:\n%s",
            context.job_id,
            message_id,
            sender,
            ", ".join(recipients),
            payload.subject,
            [str(attachment.url) for attachment in payload.attachments or []],
            for_log(payload),
            body.text or body.html,
        )
        return delivery_result(
            EmailResult, accepted=recipients, message_id=message_id, dry_run=True
        )
    attachments = await fetch_attachments(payload.attachments or [])
    message = build_message(
        payload, body, sender=sender, message_id=message_id, attachments=attachments
    )
    refused = await _submit(context.resources.smtp, settings, message, sender.addr_spec, recipients)
    accepted = [address for address in recipients if address not in refused]
    context.logger.info(
        "job %s: email %s accepted for %s%s%s",
        context.job_id,
        message_id,
        ", ".join(accepted),
        f"; refused: {', '.join(refused)}" if refused else "",
        for_log(payload),
    )
    return delivery_result(
        EmailResult, accepted=accepted, rejected=refused.items(), message_id=message_id
    )


async def _submit(
    pool: SmtpPool,
    settings: SmtpSettings,
    message: EmailMessage,
    sender: str,
    recipients: list[str],
) -> dict[str, str]:
    """Hand the message to the server over a pooled connection; return the refused
    recipients with their reasons."""
    try:
        async with pool.connection(settings) as smtp:
            refused, _ = await smtp.send_message(message, sender=sender, recipients=recipients)
    except aiosmtplib.SMTPRecipientsRefused as error:
        reasons = "; ".join(f"{r.recipient}: {r.code} {r.message}" for r in error.recipients)
        if all(refusal.code >= 500 for refusal in error.recipients):
            raise DeliveryRejected(_SERVER, f"every recipient was refused: {reasons}") from error
        raise ProviderUnavailable(_SERVER, f"every recipient was refused: {reasons}") from error
    except aiosmtplib.SMTPAuthenticationError as error:
        raise ConfigError(
            f"the SMTP server refused the credentials in SMTP_URL: {error.code} {error.message}"
        ) from error
    except aiosmtplib.SMTPResponseException as error:
        reason = f"{type(error).__name__}: {error.code} {error.message}"
        if error.code >= 500:
            raise DeliveryRejected(_SERVER, reason) from error
        raise ProviderUnavailable(_SERVER, reason) from error
    except (aiosmtplib.SMTPException, OSError) as error:
        reason = f"{type(error).__name__} talking to {settings.host}:{settings.port}: {error}"
        raise ProviderUnavailable(_SERVER, reason) from error
    except ValueError as error:
        # aiosmtplib's refusal of an address it cannot encode for this server
        raise DeliveryRejected(_SERVER, str(error)) from error
    return {address: f"{response.code} {response.message}" for address, response in refused.items()}
