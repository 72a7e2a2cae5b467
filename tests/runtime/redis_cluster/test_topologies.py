"""What only a cluster or a Sentinel set shows: channels spread over the primaries, scripts
loaded again after NOSCRIPT, a URL of the wrong kind refused at startup, readiness of a
cluster that lost a slot's primary, a Sentinel failover under a serving process."""

from __future__ import annotations

import asyncio
import contextlib
import sys
import time
from pathlib import Path

import httpx
import pytest
from pydantic import BaseModel
from redis.asyncio import Redis, RedisCluster

from runtime.engine.client import Client
from runtime.engine.connection import check_redis, connect
from runtime.engine.keys import ChannelKeys
from runtime.errors import ConfigError, RedisUnavailable
from runtime.testing import running_app
from tests.redis_topologies import RedisClusterNodes, SentinelSet
from tests.runtime.conftest import (
    APP,
    Probe,
    ServeFactory,
    clean_env,
    die_with_parent,
    free_port,
)

pytestmark = [pytest.mark.timeout(120)]

REFERENCE_CHANNELS = ("email", "push", "sms", "whatsapp")


class Job(BaseModel):
    id: str


async def test_the_suite_here_runs_on_a_cluster_and_channels_spread_over_its_primaries(
    redis: Redis, redis_cluster: RedisClusterNodes, key_prefix: str
) -> None:
    assert isinstance(redis, RedisCluster), "tests/runtime/redis_cluster/ must run on a cluster"
    owners = {
        channel: redis_cluster.node_of(ChannelKeys(key_prefix, channel).stream).address
        for channel in REFERENCE_CHANNELS
    }
    print(f"channel → primary: {owners}")
    assert len(set(owners.values())) >= 2, owners


async def test_scripts_are_loaded_again_after_every_primary_flushed_them(
    redis: Redis, redis_url: str, key_prefix: str
) -> None:
    """EVALSHA answered NOSCRIPT (a promoted replica, a flushed primary): redis-py loads
    the script on every primary and calls it again."""
    async with Client.from_url(redis_url, prefix=key_prefix) as client:
        first = await client.enqueue("fast", Job(id="a"))
        assert await redis.script_flush()
        second = await client.enqueue("fast", Job(id="b"))
        info = await client.job("fast", second)
    assert first != second
    assert info is not None
    assert info.state == "waiting"


async def test_counts_of_channels_on_several_primaries_read_per_channel(
    redis_url: str, key_prefix: str
) -> None:
    """What /metrics reads: every channel's depths at once, channels on different
    primaries, one of them never consumed (XPENDING answers NOGROUP there)."""
    async with Client.from_url(redis_url, prefix=key_prefix) as client:
        await client.enqueue("email", Job(id="a"))
        await client.enqueue("push", Job(id="b"), delay_ms=60_000)
        counts = {found.channel: found for found in await client.counts_many(REFERENCE_CHANNELS)}
    assert counts["email"].waiting == 1
    assert counts["push"].delayed == 1
    assert (counts["sms"].waiting, counts["whatsapp"].waiting) == (0, 0)


async def _serve_exit(project: Path, redis_url: str, log: Path) -> tuple[int, str]:
    """Run `runtime serve` with REDIS_URL; its exit code and output (it must exit)."""
    environ = clean_env() | {
        "CHANNELKIT_APP": APP,
        "REDIS_URL": redis_url,
        "HTTP_PORT": str(free_port()),
        "GRPC_PORT": str(free_port()),
    }
    with log.open("wb") as output:
        process = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "runtime",
            "serve",
            cwd=project,
            env=environ,
            stdout=output,
            stderr=output,
            preexec_fn=die_with_parent,
        )
    try:
        code = await asyncio.wait_for(process.wait(), 60)
    finally:
        with contextlib.suppress(ProcessLookupError):
            process.kill()
    return code, _read(log)


def _read(log: Path) -> str:
    return log.read_text(errors="replace")


def _wrong_urls(cluster: RedisClusterNodes, sentinel: SentinelSet) -> dict[str, str]:
    """REDIS_URLs of the wrong kind, and what the error says."""
    sentinels = ",".join(node.address for node in sentinel.sentinels)
    dead = free_port()
    return {
        f"redis://{cluster.nodes[0].address}/0": "points at a Redis Cluster node",
        f"redis+cluster://{sentinel.replica.address}/": "not in cluster mode",
        f"redis://{sentinel.sentinels[0].address}/0": "points at a Redis Sentinel",
        f"redis+sentinel://{sentinels}/nosuchmaster": "monitor no master named 'nosuchmaster'",
        f"redis+sentinel://{sentinels}": "no master name",
        f"redis+sentinel://127.0.0.1:{dead}/mymaster": "no Sentinel answered",
        f"redis+cluster://127.0.0.1:{dead}/": "the Redis Cluster did not answer",
    }


async def test_the_startup_check_refuses_a_redis_url_of_the_wrong_kind_naming_the_setting(
    redis_cluster: RedisClusterNodes, redis_sentinel: SentinelSet
) -> None:
    for url, expected in _wrong_urls(redis_cluster, redis_sentinel).items():
        with pytest.raises((ConfigError, RedisUnavailable)) as caught:
            await _check(url)
        assert "REDIS_URL" in str(caught.value), url
        assert expected in str(caught.value), f"{url}: {caught.value}"


async def _check(url: str) -> None:
    client = connect(url)
    try:
        await check_redis(client)
    finally:
        await client.aclose()


async def test_serve_exits_2_with_one_line_for_a_redis_url_of_the_wrong_kind(
    probe_project: Path,
    redis_cluster: RedisClusterNodes,
    redis_sentinel: SentinelSet,
    tmp_path: Path,
) -> None:
    wrong = _wrong_urls(redis_cluster, redis_sentinel)
    cases = {url: wrong[url] for url in list(wrong)[:4:3]}  # a cluster node, a master name
    results = await asyncio.gather(
        *(
            _serve_exit(probe_project, url, tmp_path / f"serve-{index}.log")
            for index, url in enumerate(cases)
        )
    )
    for (url, expected), (code, output) in zip(cases.items(), results, strict=True):
        assert code == 2, f"{url}: exit {code}\n{output}"
        assert "REDIS_URL" in output, output
        assert expected in output, f"{url}:\n{output}"
        assert "Traceback" not in output, output


async def test_ready_reports_a_cluster_that_lost_a_primary_and_recovers(
    tmp_path: Path,
) -> None:
    """Three primaries without replicas: one killed leaves its slots without a primary,
    the cluster's state turns `fail`, readiness is 503 naming it; restarted on its port
    and files, the node serves its slots again and readiness is 200."""
    nodes = RedisClusterNodes(tmp_path / "cluster", primaries=3, replicas=0).start()
    try:
        async with running_app(redis_url=nodes.url, enable_grpc=False, enable_workers=False) as app:
            assert app.http is not None
            up = await app.http.get("/health/ready")
            assert up.status_code == 200, up.text
            lost = nodes.nodes[2]
            lost.stop()
            down = await app.http.get("/health/ready")
            assert down.status_code == 503, down.text
            reason = down.json()["reason"]
            assert "Redis Cluster" in reason, reason
            enqueue = await app.http.post("/channels/sms/jobs", json={})
            assert enqueue.status_code in (422, 503), enqueue.text

            nodes.restart(lost)
            nodes.wait_healthy()
            deadline = time.monotonic() + 20
            while (ready := await app.http.get("/health/ready")).status_code != 200:
                assert time.monotonic() < deadline, ready.text
                await asyncio.sleep(0.2)
            print(f"not ready while a primary was down: {reason}")
    finally:
        nodes.stop()


async def test_a_serving_process_on_sentinel_goes_on_after_a_failover(
    serve: ServeFactory, probe: Probe, redis_sentinel: SentinelSet
) -> None:
    """REDIS_URL names the Sentinels; the handlers record on the cluster (PROBE_REDIS_URL).
    The master is SIGKILLed: once the Sentinels promoted the replica, enqueue and the
    worker carry on against it, and readiness is 200 again."""
    server = await serve({"REDIS_URL": redis_sentinel.url})
    async with httpx.AsyncClient(base_url=server.http_url, timeout=10) as http:
        response = await http.post("/channels/fast/jobs", json={"id": "before"})
        assert response.status_code == 202, response.text
        await probe.wait_for(lambda seen: any(e.startswith("fast:before:") for e in seen))

        killed = time.monotonic()
        promoted_after = redis_sentinel.kill_master_and_wait()
        refused = 0
        while (
            response := await http.post("/channels/fast/jobs", json={"id": "after"})
        ).status_code != 202:
            assert response.status_code == 503, response.text
            refused += 1
            assert time.monotonic() - killed < 30, response.text
            await asyncio.sleep(0.2)
        accepted_after = time.monotonic() - killed
        await probe.wait_for(lambda seen: any(e.startswith("fast:after:") for e in seen), 20)
        ran_after = time.monotonic() - killed
        # Each channel's reader retries a second after an error: all ready within seconds.
        while (ready := await http.get("/health/ready")).status_code != 200:
            assert time.monotonic() - killed < 30, ready.text
            await asyncio.sleep(0.1)
        print(
            f"Sentinel failover: replica promoted {promoted_after:.2f} s after SIGKILL, "
            f"enqueue accepted again after {accepted_after:.2f} s ({refused} 503s), "
            f"the job ran {ran_after:.2f} s after, ready after {time.monotonic() - killed:.2f} s"
        )
