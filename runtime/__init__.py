"""Channelkit's runtime: serves a generated package and gives handlers what they use.

Handlers import `JobContext` and `PermanentError`; services that enqueue straight into
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
    "JobStateConflict",
    "Keep",
    "Limiter",
    "PermanentError",
    "RedisUnavailable",
    "Retention",
    "Retry",
    "Stalled",
    "UnknownChannelError",
]

if TYPE_CHECKING:
    from runtime.engine.client import Client


def __getattr__(name: str) -> Any:
    # Client pulls in redis; the generator imports runtime.errors and does not need it.
    if name == "Client":
        from runtime.engine.client import Client

        return Client
    raise AttributeError(f"module 'runtime' has no attribute {name!r}")
