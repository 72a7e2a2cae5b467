"""Redis trouble converted, at the Client's boundary, into Channelkit's own error.

Callers of `Client` get one error to catch, `RedisUnavailable` (or a subclass such as
`EnqueueError`), that says what was not done and why, with redis-py's error as its cause;
HTTP answers it 503 with the reason, gRPC UNAVAILABLE. Everything redis-py raises when
Redis cannot serve a command now is in `is_unavailable`'s list (the one place that
decides); anything else (a wrong argument, a script bug, CROSSSLOT) is a bug and stays
what it is.

What a failover or a resharding of a Redis Cluster raises, besides connections refused or
closed: `CLUSTERDOWN` and `MASTERDOWN` (no primary for a slot yet), `TRYAGAIN` (a slot
migrating), redis-py's own `ClusterError("TTL exhausted.")` when 16 redirections
(`MOVED`, `ASK`, `TRYAGAIN`) in a row did not reach a node that serves the command,
`SlotNotCoveredError` (its slot map has a hole), and `NOSCRIPT` again after redis-py loaded
a script on the primaries it knew (a promoted replica it did not know yet). Redis 7 also
answers some refusals with codes redis-py leaves as a plain `ResponseError`: `NOREPLICAS`
(`min-replicas-to-write` not met, as on a promoted replica whose own replica is gone),
`BUSY` (a script running past its time limit), `UNBLOCKED` (a blocked command whose node
turned replica).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from redis.exceptions import (
    AskError,
    ClusterError,
    ConnectionError,
    NoScriptError,
    OutOfMemoryError,
    ReadOnlyError,
    ResponseError,
    SlotNotCoveredError,
    TimeoutError,
    TryAgainError,
)

from runtime.engine.connection import closed_transport
from runtime.errors import RedisUnavailable

__all__ = ["UNAVAILABLE", "UNAVAILABLE_REPLIES", "is_unavailable", "redis_errors"]

# What says "Redis cannot serve this now", as opposed to a bug in a command.
UNAVAILABLE: tuple[type[BaseException], ...] = (
    # Refused, reset, closed under a command, no Sentinel master (MasterNotFoundError), a
    # pool at its bound (MaxConnectionsError), LOADING (BusyLoadingError), a cluster node
    # lost (runtime.engine.connection.ClusterUnavailable): all ConnectionError.
    ConnectionError,
    TimeoutError,
    OSError,
    OutOfMemoryError,  # OOM: maxmemory reached under noeviction
    ReadOnlyError,  # READONLY: a former primary, now a replica
    # Redis Cluster: CLUSTERDOWN and MASTERDOWN (ClusterDownError, MasterDownError) and
    # redis-py's "TTL exhausted." after redirections that did not end are ClusterError.
    ClusterError,
    TryAgainError,
    AskError,  # ASK and MOVED (MovedError), when one is handed back instead of followed
    SlotNotCoveredError,  # no RedisError: redis-py's slot map has a hole
    NoScriptError,  # after redis-py's own load: a node it did not know as a primary
)

# Error replies that redis-py raises as a plain ResponseError, by their first word.
UNAVAILABLE_REPLIES = frozenset({"NOREPLICAS", "BUSY", "UNBLOCKED"})


def is_unavailable(error: BaseException) -> bool:
    """True when `error` says Redis cannot serve the command now (it may in a moment)."""
    if isinstance(error, UNAVAILABLE) or closed_transport(error):
        return True
    return isinstance(error, ResponseError) and str(error).split(" ", 1)[0] in UNAVAILABLE_REPLIES


@contextmanager
def redis_errors(
    kind: type[RedisUnavailable] = RedisUnavailable, what: str = "Redis did not answer"
) -> Iterator[None]:
    """Raise `kind` ("<what>: <reason>") for Redis being unreachable or refusing."""
    try:
        yield
    except Exception as error:
        if not is_unavailable(error):
            raise
        reason = str(error) or type(error).__name__
        raise kind(f"{what}: {reason}") from error
