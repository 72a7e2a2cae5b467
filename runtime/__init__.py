"""Channelkit's runtime: serves a generated package and gives handlers what they use.

Handlers import `JobContext` and `PermanentError`; services that enqueue straight into
Redis use `Client` with the generated `channels.<name>.enqueue` functions.
"""

from runtime.channel import Backoff, Channel, Keep, Limiter, Retention, Retry, Stalled
from runtime.client import Client
from runtime.context import JobContext
from runtime.errors import (
    ChannelkitError,
    ConfigError,
    EnqueueError,
    PermanentError,
    UnknownChannelError,
)

__all__ = [
    "Backoff",
    "Channel",
    "ChannelkitError",
    "Client",
    "ConfigError",
    "EnqueueError",
    "JobContext",
    "Keep",
    "Limiter",
    "PermanentError",
    "Retention",
    "Retry",
    "Stalled",
    "UnknownChannelError",
]
