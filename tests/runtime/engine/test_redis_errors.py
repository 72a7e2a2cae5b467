"""runtime.engine.redis_errors decides what is Redis refusing for now (RedisUnavailable:
HTTP 503, gRPC UNAVAILABLE) and what is a bug (left as it is: a 500). The errors are
redis-py's own: Redis's error replies parsed by redis-py's parser, and the exceptions its
cluster client raises itself (a real failover and a real NOREPLICAS are in
tests/runtime/redis_cluster/test_failover_answers.py and
tests/runtime/test_http_redis_unavailable.py)."""

from __future__ import annotations

import pytest
from redis._parsers.base import BaseParser
from redis.exceptions import (
    ClusterError,
    DataError,
    RedisClusterException,
    ResponseError,
    SlotNotCoveredError,
)

from runtime.engine.connection import ClusterUnavailable
from runtime.engine.redis_errors import is_unavailable, redis_errors
from runtime.errors import EnqueueError

SCRIPT = "script: 0123abcd, on @user_script:35."


def parse(reply: str) -> ResponseError:
    """The exception redis-py raises for this error reply."""
    error: ResponseError = BaseParser.parse_error(reply)  # type: ignore[no-untyped-call]
    return error


# Error replies as Redis 7 sends them, first word first.
REFUSED_FOR_NOW = [
    "CLUSTERDOWN The cluster is down",
    "CLUSTERDOWN Hash slot not served",
    "MASTERDOWN Link with MASTER is down and replica-serve-stale-data is set to 'no'.",
    "TRYAGAIN Multiple keys request during rehashing of slot",
    "ASK 3999 127.0.0.1:6381",
    "MOVED 3999 127.0.0.1:6381",
    "LOADING Redis is loading the dataset in memory",
    "READONLY You can't write against a read only replica.",
    f"OOM command not allowed when used memory > 'maxmemory'. {SCRIPT}",
    f"NOREPLICAS Not enough good replicas to write. {SCRIPT}",
    "BUSY Redis is busy running a script. You can only call SCRIPT KILL or SHUTDOWN NOSAVE.",
    "UNBLOCKED force unblock from blocking operation, instance state changed (master -> replica?)",
    "NOSCRIPT No matching script. Please use EVAL.",
]
BUGS = [
    "WRONGTYPE Operation against a key holding the wrong kind of value",
    f"ERR user_script:12: Script attempted to access nonexistent global variable 'x' {SCRIPT}",
    "ERR wrong number of arguments for 'evalsha' command",
    "CROSSSLOT Keys in request don't hash to the same slot",
    "NOPERM this user has no permissions to run the 'evalsha' command",
    "BUSYGROUP Consumer Group name already exists",
]


@pytest.mark.parametrize("reply", REFUSED_FOR_NOW)
def test_a_refusal_for_now_is_unavailable(reply: str) -> None:
    error = parse(reply)
    assert is_unavailable(error), f"{type(error).__name__}: {reply}"


@pytest.mark.parametrize("reply", BUGS)
def test_a_bug_stays_a_bug(reply: str) -> None:
    error = parse(reply)
    assert not is_unavailable(error), f"{type(error).__name__}: {reply}"


def test_what_the_cluster_client_raises_by_itself() -> None:
    # After 16 redirections in a row (MOVED, ASK, TRYAGAIN), e.g. while a slot migrates.
    assert is_unavailable(ClusterError("TTL exhausted."))
    assert is_unavailable(SlotNotCoveredError('Slot "3999" is not covered by the cluster.'))
    assert is_unavailable(ClusterUnavailable("Redis Cluster: connection closed"))
    assert is_unavailable(ConnectionRefusedError(111, "Connection refused"))
    assert not is_unavailable(
        RedisClusterException("EVALSHA - all keys must map to the same key slot")
    )
    assert not is_unavailable(DataError("Invalid input of type: 'dict'"))


def test_a_write_on_a_transport_closed_under_it_is_unavailable() -> None:
    # uvloop raises this where standard asyncio ignores the write: redis-py closed the
    # connection (a failover) while the command was being sent. Seen in the cluster chaos
    # test as a gRPC UNKNOWN, i.e. what HTTP would answer 500.
    closed = RuntimeError(
        "unable to perform operation on <TCPTransport closed=True reading=False "
        "0x55a5d1bc3bf0>; the handler is closed"
    )
    assert is_unavailable(closed)
    assert not is_unavailable(RuntimeError("Event loop is closed"))


def test_redis_errors_names_what_was_not_done_and_keeps_the_cause() -> None:
    refusal = parse(f"NOREPLICAS Not enough good replicas to write. {SCRIPT}")
    with (
        pytest.raises(EnqueueError) as raised,
        redis_errors(EnqueueError, "job a was not enqueued"),
    ):
        raise refusal
    assert str(raised.value).startswith("job a was not enqueued: NOREPLICAS Not enough good")
    assert raised.value.__cause__ is refusal

    bug = parse("WRONGTYPE Operation against a key holding the wrong kind")
    with pytest.raises(type(bug)) as kept, redis_errors(EnqueueError, "job a was not enqueued"):
        raise bug
    assert kept.value is bug
