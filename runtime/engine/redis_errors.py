"""Redis trouble converted, at the Client's boundary, into Channelkit's own error.

redis-py raises a ConnectionError, a TimeoutError, or a ResponseError carrying Redis's
reason (OOM, READONLY, LOADING, MASTERDOWN, BUSY; on a cluster CLUSTERDOWN, TRYAGAIN);
callers of `Client` get one error to catch, `RedisUnavailable` (or a subclass such as
`EnqueueError`), that says what was not done and why, with redis-py's error as its cause.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from redis.exceptions import (
    BusyLoadingError,
    ClusterDownError,
    ConnectionError,
    MasterDownError,
    OutOfMemoryError,
    ReadOnlyError,
    TimeoutError,
    TryAgainError,
)

from runtime.errors import RedisUnavailable

__all__ = ["UNAVAILABLE", "redis_errors"]

# What says "Redis cannot serve this now", as opposed to a bug in a command.
UNAVAILABLE = (
    ConnectionError,
    TimeoutError,
    BusyLoadingError,
    MasterDownError,
    OutOfMemoryError,
    ReadOnlyError,
    OSError,
    # Redis Cluster: a failover under way (no primary for a slot yet), a slot migrating.
    ClusterDownError,
    TryAgainError,
)


@contextmanager
def redis_errors(
    kind: type[RedisUnavailable] = RedisUnavailable, what: str = "Redis did not answer"
) -> Iterator[None]:
    """Raise `kind` ("<what>: <reason>") for Redis being unreachable or refusing."""
    try:
        yield
    except UNAVAILABLE as error:
        reason = str(error) or type(error).__name__
        raise kind(f"{what}: {reason}") from error
