"""notifications.settings: SMTP_URL, SMTP_FROM and the provider variables."""

from __future__ import annotations

import pytest

from notifications.settings import ProviderSettings, SmtpSettings, smtp_sender
from runtime.errors import ConfigError


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("smtp://mail.example.com", SmtpSettings(host="mail.example.com", port=25)),
        (
            "smtps://u%40corp:p%3Aw@mail.example.com",
            SmtpSettings(
                host="mail.example.com",
                port=465,
                username="u@corp",
                password="p:w",
                use_tls=True,
            ),
        ),
        (
            "smtp://apikey:@smtp.example.com:587?starttls=true&timeout=5",
            SmtpSettings(
                host="smtp.example.com",
                port=587,
                username="apikey",
                password="",
                start_tls=True,
                timeout=5.0,
            ),
        ),
        (
            "smtp://127.0.0.1:1025?starttls=false",
            SmtpSettings(host="127.0.0.1", port=1025, start_tls=False),
        ),
    ],
)
def test_smtp_url(url: str, expected: SmtpSettings) -> None:
    assert SmtpSettings.from_url(url) == expected


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("http://mail.example.com", "must start with smtp:// or smtps://, got http scheme"),
        ("mail.example.com:25", "must start with smtp:// or smtps://"),
        ("smtp://", "SMTP_URL has no host"),
        ("smtp://mail.example.com:port", "invalid port"),
        ("smtp://mail.example.com?startls=true", "unknown SMTP_URL parameter 'startls'"),
        ("smtp://mail.example.com?starttls=maybe", "starttls='maybe' must be true or false"),
        ("smtp://mail.example.com?timeout=-1", "timeout='-1' must be a positive number"),
        ("smtps://mail.example.com?starttls=true", "smtps:// already uses TLS"),
    ],
)
def test_bad_smtp_url_says_what_is_wrong(url: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message.replace("?", r"\?")):
        SmtpSettings.from_url(url)


def test_password_is_not_in_repr() -> None:
    assert "hunter2" not in repr(SmtpSettings.from_url("smtp://u:hunter2@h"))


def test_smtp_env_is_read_when_asked() -> None:
    assert SmtpSettings.from_env({}) is None
    assert SmtpSettings.from_env({"SMTP_URL": "  "}) is None
    assert SmtpSettings.from_env({"SMTP_URL": "smtp://h:2525"}) == SmtpSettings(host="h", port=2525)


@pytest.mark.parametrize(
    ("value", "name", "address"),
    [
        (None, "", "noreply@localhost"),
        ("alerts@example.com", "", "alerts@example.com"),
        ("Example Shop <shop@example.com>", "Example Shop", "shop@example.com"),
    ],
)
def test_smtp_from(value: str | None, name: str, address: str) -> None:
    sender = smtp_sender({} if value is None else {"SMTP_FROM": value})

    assert (sender.display_name, sender.addr_spec) == (name, address)


def test_smtp_from_must_be_an_address() -> None:
    with pytest.raises(ConfigError, match="SMTP_FROM must be an email address"):
        smtp_sender({"SMTP_FROM": "Example Shop"})


def test_provider_settings() -> None:
    env = {"SMS_PROVIDER_URL": "https://sms.example/v1/messages", "SMS_PROVIDER_TOKEN": "t0k"}

    settings = ProviderSettings.from_env("SMS", env)

    assert settings == ProviderSettings(
        name="sms provider", url="https://sms.example/v1/messages", token="t0k"
    )
    assert "t0k" not in repr(settings)
    assert ProviderSettings.from_env("PUSH", env) is None
    assert ProviderSettings.from_env(
        "SMS", {"SMS_PROVIDER_URL": "https://x", "SMS_PROVIDER_TOKEN": ""}
    ) == (ProviderSettings(name="sms provider", url="https://x"))
