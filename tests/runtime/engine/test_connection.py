"""REDIS_URL forms read by runtime.engine.connection (no server needed: parsing and the
clients it builds; the servers' side is in tests/runtime/redis_cluster/)."""

from __future__ import annotations

import pytest
from redis.asyncio import Redis, RedisCluster

from runtime.engine.connection import connect, is_cluster, parse_redis_url, redacted
from runtime.errors import ConfigError


def test_single_redis_urls_stay_redis_py_s() -> None:
    for url in ("redis://localhost:6379/2", "rediss://u:p@host:6380/0", "unix:///tmp/r.sock"):
        assert parse_redis_url(url).kind == "single"


def test_a_cluster_url_lists_its_seed_nodes_with_user_password_and_tls() -> None:
    target = parse_redis_url(
        "rediss+cluster://app:s%40cret@10.0.0.1:7000,10.0.0.2:7001,[::1]:7002/?ssl_cert_reqs=none"
    )
    assert target.kind == "cluster"
    assert target.nodes == (("10.0.0.1", 7000), ("10.0.0.2", 7001), ("::1", 7002))
    assert target.options["username"] == "app"
    assert target.options["password"] == "s@cret"
    assert target.options["ssl"] is True
    assert target.options["ssl_cert_reqs"] == "none"
    assert "s@cret" not in target.shown
    assert "s%40cret" not in target.shown


def test_a_sentinel_url_names_the_master_and_db() -> None:
    target = parse_redis_url(
        "redis+sentinel://:pw@s1:26379,s2:26379/mymaster/3?sentinel_password=spw"
    )
    assert target.kind == "sentinel"
    assert target.nodes == (("s1", 26379), ("s2", 26379))
    assert target.master == "mymaster"
    assert target.options["db"] == 3
    assert target.options["password"] == "pw"
    assert target.sentinel_options == {"password": "spw"}
    assert "spw" not in target.shown
    assert ":pw@" not in target.shown


@pytest.mark.parametrize(
    ("url", "problem"),
    [
        ("redis+sentinel://s1:26379", "no master name"),
        ("redis+sentinel://s1:26379/", "no master name"),
        ("redis+sentinel://s1:26379/m/x", "not a number"),
        ("redis+cluster://n1:7000/3", "only database 0"),
        ("redis+cluster://n1", "has no port"),
        ("redis+cluster://n1:x", "not a number"),
        ("redis+cluster://n1:7000,,n2:7001", "empty host"),
        ("redis+cluster://n1:7000/?sentinel_password=x", "redis+sentinel"),
        ("http://n1:7000", "expected redis://"),
    ],
)
def test_bad_urls_are_config_errors_naming_redis_url(url: str, problem: str) -> None:
    with pytest.raises(ConfigError, match="REDIS_URL") as caught:
        parse_redis_url(url)
    assert problem in str(caught.value)


def test_passwords_never_reach_messages() -> None:
    with pytest.raises(ConfigError) as caught:
        parse_redis_url("redis+cluster://user:hunter2@n1:7000/5")
    assert "hunter2" not in str(caught.value)
    assert redacted("redis://user:hunter2@h:1/0") == "redis://user:***@h:1/0"


async def test_connect_builds_the_client_of_each_kind() -> None:
    single = connect("redis://127.0.0.1:1/0")
    cluster = connect("redis+cluster://127.0.0.1:1,127.0.0.1:2/")
    sentinel = connect("redis+sentinel://127.0.0.1:1/mymaster/2")
    try:
        assert isinstance(single, Redis)
        assert not is_cluster(single)
        assert isinstance(cluster, RedisCluster)
        assert is_cluster(cluster)
        assert isinstance(sentinel, Redis)
        assert not is_cluster(sentinel)
        assert sentinel.connection_pool.connection_kwargs["db"] == 2
    finally:
        for client in (single, cluster, sentinel):
            await client.aclose()
