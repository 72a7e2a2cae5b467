"""Channelkit's runtime: serves a generated package and gives handlers what they use.

Handlers import `JobContext`, `PermanentError` and `RetryAfter`; services that enqueue straight into
Redis use `Client` with the generated `channels.<name>.enqueue` functions.
"""

from typing import TYPE_CHECKING, Any

from runtime.engine.channel import Backoff, Channel, Keep, Limiter, Retention, Retry, Stalled
from runtime.engine.context import JobContext
from runtime.errors import (
    ChannelkitError,
    ConfigError,
    EnqueueError,
    JobNotFound,
    JobOperationError,
    JobStateConflict,
    PermanentError,
    RedisUnavailable,
    RetryAfter,
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
    "JobNotFound",
    "JobOperationError",
    "JobRequest",
    "JobStateConflict",
    "Keep",
    "Limiter",
    "PermanentError",
    "RedisUnavailable",
    "Retention",
    "Retry",
    "RetryAfter",
    "Stalled",
    "UnknownChannelError",
]

if TYPE_CHECKING:
    from runtime.engine.client import Client, JobRequest


def __getattr__(name: str) -> Any:
    # Client pulls in redis; the generator imports runtime.errors and does not need it.
    if name in ("Client", "JobRequest"):
        from runtime.engine import client

        return getattr(client, name)
    raise AttributeError(f"module 'runtime' has no attribute {name!r}")
