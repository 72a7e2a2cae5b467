"""Errors the notification handlers raise on purpose.

    runtime.errors.ChannelkitError
    └── NotificationError
        ├── DeliveryRejected (also PermanentError)  the server or provider refused the message
        │                                           for good: the job fails now, never retried
        └── ProviderUnavailable                     the server or provider could not take the
                                                    message now (5xx, 408, 429, SMTP 4xx,
                                                    network): the job is retried

A setting that cannot work (a malformed `SMTP_URL`) is a `runtime.errors.ConfigError`.
"""

from __future__ import annotations

from runtime.errors import ChannelkitError, PermanentError

__all__ = ["DeliveryRejected", "NotificationError", "ProviderUnavailable"]


class NotificationError(ChannelkitError):
    """The root of the errors raised by the notification handlers."""


class DeliveryRejected(NotificationError, PermanentError):
    """The message can never be delivered as it is: bad address, rejected by the provider."""

    def __init__(self, provider: str, reason: str) -> None:
        self.provider = provider
        self.reason = reason
        super().__init__(f"{provider} rejected the message: {reason}")


class ProviderUnavailable(NotificationError):
    """The server or provider could not take the message now; a later attempt may succeed."""

    def __init__(self, provider: str, reason: str) -> None:
        self.provider = provider
        self.reason = reason
        super().__init__(f"{provider} is unavailable: {reason}")
