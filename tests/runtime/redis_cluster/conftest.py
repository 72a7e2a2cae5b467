"""The runtime's behaviour suite against real Redis topologies started for the session:
a Redis Cluster of 3 primaries and 3 replicas (`redis_cluster`) and a master, a replica
and 3 Sentinels (`redis_sentinel`), both from tests/redis_topologies.py, stopped by pid.

Here `redis_url` is the cluster's `redis+cluster://` URL, so every fixture built on it
(`redis`, `key_prefix`, `serve`, `probe`, the delivery `shared` processes) runs on the
cluster; the tests imported into this folder's modules run again, unchanged, on it.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.conftest import SESSION_ROOT, delete_keys
from tests.redis_topologies import RedisClusterNodes, SentinelSet


@pytest.fixture(scope="session")
def redis_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisClusterNodes]:
    nodes = RedisClusterNodes(tmp_path_factory.mktemp("redis-cluster")).start()
    try:
        yield nodes
    finally:
        nodes.stop()


@pytest.fixture(scope="session")
def redis_sentinel(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SentinelSet]:
    found = SentinelSet(tmp_path_factory.mktemp("redis-sentinel")).start()
    try:
        yield found
    finally:
        found.stop()


@pytest.fixture(scope="session")
def redis_url(redis_cluster: RedisClusterNodes) -> Iterator[str]:
    """The cluster's URL; at the end, no key of this session may be left on it."""
    url = redis_cluster.url
    yield url
    leaked = delete_keys(url, SESSION_ROOT + "*")
    if leaked:
        pytest.fail(f"{len(leaked)} key(s) left on the Redis Cluster: {leaked[:5]}")
