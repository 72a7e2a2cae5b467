"""notifications.email against a real SMTP server (aiosmtpd) and a real HTTP server."""

from __future__ import annotations

import logging
from email.message import EmailMessage
from typing import Any

import pytest

from generated.models.email import EmailPayload
from notifications.email import send_email
from notifications.errors import DeliveryRejected, ProviderUnavailable
from notifications.resources import Resources
from runtime.errors import ConfigError, PermanentError
from tests.notifications.servers import HttpServer, SmtpServer, free_port, job_context


def email(**fields: Any) -> EmailPayload:
    payload: dict[str, Any] = {
        "to": [{"email": "ada@example.com", "name": "Ada Lovelace"}],
        "subject": "Your invoice",
        "content": {"type": "inline", "text": "Hello Ada", "html": "<p>Hello <b>Ada</b></p>"},
    }
    payload.update(fields)
    return EmailPayload.model_validate(payload)


def parts(message: EmailMessage) -> dict[str, str]:
    """content type -> decoded text of every text part that is not an attachment."""
    return {
        part.get_content_type(): str(part.get_content()).replace("\r\n", "\n")
        for part in message.walk()
        if part.get_content_maintype() == "text" and not part.is_attachment()
    }


@pytest.fixture
def smtp_env(monkeypatch: pytest.MonkeyPatch, smtp_server: SmtpServer) -> SmtpServer:
    monkeypatch.setenv("SMTP_URL", smtp_server.url)
    monkeypatch.setenv("SMTP_FROM", "Example Shop <shop@example.com>")
    return smtp_server


async def test_delivers_text_and_html_to_every_recipient(
    smtp_env: SmtpServer, resources: Resources
) -> None:
    payload = email(
        cc=[{"email": "bob@example.com"}],
        bcc=[{"email": "audit@example.com"}, {"email": "ADA@example.com"}],
        reply_to="support@example.com",
        metadata={"user_id": "42", "campaign": "invoices"},
    )

    result = await send_email(payload, job_context(resources, "email", job_id="7f3a"))

    [mail] = smtp_env.messages
    assert mail.mail_from == "shop@example.com"
    assert mail.rcpt_tos == ["ada@example.com", "bob@example.com", "audit@example.com"]
    message = mail.message
    assert message["From"] == "Example Shop <shop@example.com>"
    assert message["To"] == "Ada Lovelace <ada@example.com>"
    assert message["Cc"] == "bob@example.com"
    assert message["Bcc"] is None
    assert message["Reply-To"] == "support@example.com"
    assert message["Subject"] == "Your invoice"
    assert message["Message-ID"] == "<7f3a@example.com>"
    assert message["X-Metadata"] == '{"campaign": "invoices", "user_id": "42"}'
    assert message.get_content_type() == "multipart/alternative"
    assert parts(message) == {"text/plain": "Hello Ada\n", "text/html": "<p>Hello <b>Ada</b></p>\n"}
    assert result.provider_message_id == "<7f3a@example.com>"
    assert result.accepted == ["ada@example.com", "bob@example.com", "audit@example.com"]
    assert result.rejected == []
    assert result.dry_run is False


async def test_html_only_is_a_single_html_part(smtp_env: SmtpServer, resources: Resources) -> None:
    await send_email(
        email(content={"type": "inline", "html": "<h1>Hi</h1>"}), job_context(resources, "email")
    )

    [mail] = smtp_env.messages
    assert mail.message.get_content_type() == "text/html"
    assert parts(mail.message) == {"text/html": "<h1>Hi</h1>\n"}


async def test_non_ascii_subject_and_name_are_encoded(
    smtp_env: SmtpServer, resources: Resources
) -> None:
    payload = email(to=[{"email": "zoe@example.com", "name": "Zoë Ørsted"}], subject="Grüße 👋")

    await send_email(payload, job_context(resources, "email"))

    [mail] = smtp_env.messages
    assert mail.message["Subject"] == "Grüße 👋"
    assert mail.message["To"] == "Zoë Ørsted <zoe@example.com>"


async def test_template_renders_variables_into_a_text_body(
    smtp_env: SmtpServer, resources: Resources
) -> None:
    content = {
        "type": "template",
        "template_id": "password-reset",
        "variables": {"name": "Ada", "code": "913 204"},
    }

    await send_email(email(content=content), job_context(resources, "email"))

    [mail] = smtp_env.messages
    assert mail.message["X-Template-Id"] == "password-reset"
    assert parts(mail.message) == {
        "text/plain": "Template password-reset\n\nname: Ada\ncode: 913 204\n"
    }


async def test_attachments_are_downloaded_and_attached(
    smtp_env: SmtpServer, http_server: HttpServer, resources: Resources
) -> None:
    pdf = b"%PDF-1.7 fake invoice"
    attachments = [
        {"url": http_server.serve_file("/files/1", pdf, "application/octet-stream; x=y"),
         "filename": "invoice.pdf", "content_type": "application/pdf"},
        {"url": http_server.serve_file("/files/2", b"a,b\n1,2\n", "text/csv; charset=utf-8"),
         "filename": "rows.csv"},
        {"url": http_server.serve_file("/files/3", b"\x89PNG", ""), "filename": "logo.png"},
    ]  # fmt: skip

    await send_email(email(attachments=attachments), job_context(resources, "email"))

    [mail] = smtp_env.messages
    assert mail.message.get_content_type() == "multipart/mixed"
    found = [
        (part.get_filename(), part.get_content_type(), part.get_payload(decode=True))
        for part in mail.message.iter_attachments()
    ]
    assert found == [
        ("invoice.pdf", "application/pdf", pdf),
        ("rows.csv", "text/csv", b"a,b\n1,2\n"),
        ("logo.png", "image/png", b"\x89PNG"),
    ]
    assert parts(mail.message) == {
        "text/plain": "Hello Ada\n",
        "text/html": "<p>Hello <b>Ada</b></p>\n",
    }
    assert [request.path for request in http_server.requests] == [
        "/files/1",
        "/files/2",
        "/files/3",
    ]


async def test_missing_attachment_fails_permanently_and_sends_nothing(
    smtp_env: SmtpServer, http_server: HttpServer, resources: Resources
) -> None:
    payload = email(attachments=[{"url": http_server.url("/gone"), "filename": "x.pdf"}])

    with pytest.raises(DeliveryRejected, match=r"'x.pdf'.*HTTP 404") as caught:
        await send_email(payload, job_context(resources, "email"))

    assert isinstance(caught.value, PermanentError)
    assert smtp_env.messages == []


async def test_refused_recipients_are_reported_and_the_rest_delivered(
    smtp_env: SmtpServer, resources: Resources
) -> None:
    smtp_env.refuse["nobody@example.com"] = "550 5.1.1 No such user"
    payload = email(to=[{"email": "ada@example.com"}, {"email": "nobody@example.com"}])

    result = await send_email(payload, job_context(resources, "email"))

    [mail] = smtp_env.messages
    assert mail.rcpt_tos == ["ada@example.com"]
    assert result.accepted == ["ada@example.com"]
    assert result.rejected is not None
    assert [(r.recipient, r.reason) for r in result.rejected] == [
        ("nobody@example.com", "550 5.1.1 No such user")
    ]


async def test_all_recipients_refused_for_good_is_permanent(
    smtp_env: SmtpServer, resources: Resources
) -> None:
    smtp_env.refuse["ada@example.com"] = "550 5.1.1 No such user"

    with pytest.raises(PermanentError, match=r"ada@example.com: 550 5.1.1 No such user"):
        await send_email(email(), job_context(resources, "email"))

    assert smtp_env.messages == []


async def test_all_recipients_refused_for_now_is_retried(
    smtp_env: SmtpServer, resources: Resources
) -> None:
    smtp_env.refuse["ada@example.com"] = "450 4.2.1 Mailbox busy, try later"

    with pytest.raises(ProviderUnavailable, match="450") as caught:
        await send_email(email(), job_context(resources, "email"))

    assert not isinstance(caught.value, PermanentError)


@pytest.mark.parametrize("smtp_server", [{"credentials": ("mailer", "p@ss:w/rd")}], indirect=True)
async def test_logs_in_with_the_credentials_from_the_url(
    monkeypatch: pytest.MonkeyPatch, smtp_server: SmtpServer, resources: Resources
) -> None:
    monkeypatch.setenv("SMTP_URL", f"smtp://mailer:p%40ss%3Aw%2Frd@127.0.0.1:{smtp_server.port}")

    await send_email(email(), job_context(resources, "email"))

    [mail] = smtp_server.messages
    assert mail.login == ("mailer", "p@ss:w/rd")
    assert mail.mail_from == "noreply@localhost"


@pytest.mark.parametrize("smtp_server", [{"credentials": ("mailer", "secret")}], indirect=True)
async def test_wrong_credentials_are_a_config_error(
    monkeypatch: pytest.MonkeyPatch, smtp_server: SmtpServer, resources: Resources
) -> None:
    monkeypatch.setenv("SMTP_URL", f"smtp://mailer:wrong@127.0.0.1:{smtp_server.port}")

    with pytest.raises(ConfigError, match="refused the credentials in SMTP_URL"):
        await send_email(email(), job_context(resources, "email"))

    assert smtp_server.messages == []


async def test_unreachable_server_is_retried(
    monkeypatch: pytest.MonkeyPatch, resources: Resources
) -> None:
    monkeypatch.setenv("SMTP_URL", f"smtp://127.0.0.1:{free_port()}?timeout=5")

    with pytest.raises(ProviderUnavailable) as caught:
        await send_email(email(), job_context(resources, "email"))

    assert not isinstance(caught.value, PermanentError)


async def test_inline_content_without_text_or_html_is_permanent(
    smtp_env: SmtpServer, resources: Resources
) -> None:
    with pytest.raises(PermanentError, match="needs text, html or both"):
        await send_email(email(content={"type": "inline"}), job_context(resources, "email"))

    assert smtp_env.messages == []


async def test_without_smtp_url_it_logs_and_reports_a_dry_run(
    caplog: pytest.LogCaptureFixture, http_server: HttpServer, resources: Resources
) -> None:
    payload = email(attachments=[{"url": http_server.url("/never"), "filename": "a.txt"}])

    with caplog.at_level(logging.INFO, logger="tests.notifications.email"):
        result = await send_email(payload, job_context(resources, "email", job_id="j9"))

    [record] = caplog.records
    logged = record.getMessage()
    assert "SMTP_URL is not set" in logged
    assert "ada@example.com" in logged
    assert "'Your invoice'" in logged
    assert "Hello Ada" in logged
    assert http_server.url("/never") in logged
    assert http_server.requests == []
    assert result.dry_run is True
    assert result.accepted == ["ada@example.com"]
    assert result.provider_message_id == "<j9@localhost>"
