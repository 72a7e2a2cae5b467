"""Where the handlers deliver to, read from the environment each time a job runs.

Each `from_env` returns None when its variable is unset or empty: the handler then logs
the message it would have sent instead of sending it, so the service runs unconfigured.

    SMTP_URL                smtp://user:pass@host:port, smtps://... for implicit TLS;
                            query: starttls=true|false, timeout=<seconds>
    SMTP_FROM               the sender, `noreply@example.com` or `Example <noreply@...>`
    SMS_PROVIDER_URL        JSON endpoint of the SMS provider; SMS_PROVIDER_TOKEN: bearer token
    PUSH_PROVIDER_URL       likewise for push;      PUSH_PROVIDER_TOKEN
    WHATSAPP_PROVIDER_URL   likewise for WhatsApp;  WHATSAPP_PROVIDER_TOKEN
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from email.headerregistry import Address
from email.utils import parseaddr
from urllib.parse import parse_qsl, unquote, urlsplit

from runtime.errors import ConfigError

__all__ = ["DEFAULT_SENDER", "ProviderSettings", "SmtpSettings", "smtp_sender"]

DEFAULT_SENDER = "noreply@localhost"

_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off"}


@dataclass(frozen=True, slots=True)
class SmtpSettings:
    """An SMTP server to submit mail to, built from `SMTP_URL` by `from_url`."""

    host: str
    """Host name or address of the server."""
    port: int
    """`smtp://` defaults to 25, `smtps://` to 465."""
    username: str | None = None
    """Log in with this user (percent-decoded from the URL) when set."""
    password: str | None = field(default=None, repr=False)
    """The password for `username`, percent-decoded; never shown in repr."""
    use_tls: bool = False
    """TLS from the first byte (`smtps://`)."""
    start_tls: bool | None = None
    """`?starttls=true`: require STARTTLS; `false`: never; unset: upgrade when offered."""
    timeout: float = 30.0
    """Seconds for each network operation (`?timeout=`)."""

    @classmethod
    def from_url(cls, url: str) -> SmtpSettings:
        """Parse `smtp://user:pass@host:port?starttls=true`; ConfigError says what is wrong."""
        parts = urlsplit(url)
        if parts.scheme not in ("smtp", "smtps"):
            raise ConfigError(
                f"SMTP_URL must start with smtp:// or smtps://, got {parts.scheme or 'no'} scheme"
            )
        if not parts.hostname:
            raise ConfigError("SMTP_URL has no host: expected smtp://[user:pass@]host[:port]")
        try:
            port = parts.port
        except ValueError:
            raise ConfigError(f"SMTP_URL has an invalid port in {parts.netloc!r}") from None
        use_tls = parts.scheme == "smtps"
        start_tls: bool | None = None
        timeout = 30.0
        for key, value in parse_qsl(parts.query, keep_blank_values=True):
            if key == "starttls":
                start_tls = _flag(key, value)
            elif key == "timeout":
                timeout = _seconds(key, value)
            else:
                raise ConfigError(
                    f"unknown SMTP_URL parameter {key!r}; known parameters: starttls, timeout"
                )
        if use_tls and start_tls:
            raise ConfigError("SMTP_URL: smtps:// already uses TLS; drop starttls=true")
        return cls(
            host=parts.hostname,
            port=port or (465 if use_tls else 25),
            username=unquote(parts.username) if parts.username else None,
            password=unquote(parts.password) if parts.password is not None else None,
            use_tls=use_tls,
            start_tls=start_tls,
            timeout=timeout,
        )

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> SmtpSettings | None:
        url = (os.environ if environ is None else environ).get("SMTP_URL", "").strip()
        return cls.from_url(url) if url else None


def smtp_sender(environ: Mapping[str, str] | None = None) -> Address:
    """`SMTP_FROM` as an address with optional display name; `noreply@localhost` if unset."""
    raw = (os.environ if environ is None else environ).get("SMTP_FROM", "").strip()
    name, addr = parseaddr(raw or DEFAULT_SENDER)
    if "@" not in addr:
        raise ConfigError(f"SMTP_FROM must be an email address, got {raw!r}")
    return Address(display_name=name, addr_spec=addr)


@dataclass(frozen=True, slots=True)
class ProviderSettings:
    """An HTTP provider that takes a message as a JSON POST."""

    name: str
    """Used in log lines and errors, e.g. `sms provider`."""
    url: str
    """The endpoint, from `<PREFIX>_PROVIDER_URL`."""
    token: str | None = field(default=None, repr=False)
    """Sent as `Authorization: Bearer <token>`, from `<PREFIX>_PROVIDER_TOKEN`."""
    timeout: float = 10.0
    """Seconds for connecting, and for each read and write."""

    @classmethod
    def from_env(
        cls, prefix: str, environ: Mapping[str, str] | None = None
    ) -> ProviderSettings | None:
        """`from_env("SMS")` reads SMS_PROVIDER_URL and SMS_PROVIDER_TOKEN."""
        env = os.environ if environ is None else environ
        url = env.get(f"{prefix}_PROVIDER_URL", "").strip()
        if not url:
            return None
        scheme = urlsplit(url).scheme
        if scheme not in ("http", "https"):
            raise ConfigError(f"{prefix}_PROVIDER_URL must be an http:// or https:// URL: {url!r}")
        token = env.get(f"{prefix}_PROVIDER_TOKEN", "").strip() or None
        return cls(name=f"{prefix.lower()} provider", url=url, token=token)


def _flag(key: str, value: str) -> bool:
    lowered = value.lower()
    if lowered in _TRUE:
        return True
    if lowered in _FALSE:
        return False
    raise ConfigError(f"SMTP_URL parameter {key}={value!r} must be true or false")


def _seconds(key: str, value: str) -> float:
    try:
        seconds = float(value)
    except ValueError:
        seconds = 0.0
    if not seconds > 0:
        raise ConfigError(f"SMTP_URL parameter {key}={value!r} must be a positive number")
    return seconds
