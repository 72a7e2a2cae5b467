"""The reference app end to end: a job posted to the HTTP API is mailed by a worker."""

from __future__ import annotations

import pytest

from runtime.testing import running_app
from tests.notifications.servers import SmtpServer


async def test_email_posted_to_the_api_reaches_the_smtp_server(
    monkeypatch: pytest.MonkeyPatch, smtp_server: SmtpServer, redis_url: str
) -> None:
    monkeypatch.setenv("SMTP_URL", smtp_server.url)
    monkeypatch.setenv("SMTP_FROM", "shop@example.com")
    payload = {
        "to": [{"email": "ada@example.com"}],
        "subject": "Welcome",
        "content": {"type": "template", "template_id": "welcome", "variables": {"name": "Ada"}},
    }

    async with running_app(redis_url=redis_url) as app:
        assert app.http is not None
        response = await app.http.post("/channels/email/jobs", json=payload)
        assert response.status_code == 202, response.text
        await app.drain("email")

    [mail] = smtp_server.messages
    assert mail.rcpt_tos == ["ada@example.com"]
    assert mail.message["Subject"] == "Welcome"
    assert mail.message["Message-ID"] == f"<{response.json()['id']}@example.com>"
    assert (
        str(mail.message.get_content()).replace("\r\n", "\n") == "Template welcome\n\nname: Ada\n"
    )
