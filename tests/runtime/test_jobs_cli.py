"""`runtime jobs list|show|retry|discard|counts` against a running `runtime serve`'s Redis.

The server is the test project's (conftest `serve`); the commands run as users run them,
`python -m runtime jobs ...` in the project folder, with the server's Redis and key prefix.
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
from redis.asyncio import Redis

from runtime.engine.keys import ChannelKeys
from tests.runtime.conftest import APP, ServeFactory, clean_env

pytestmark = pytest.mark.timeout(120)

Jobs = Callable[..., Awaitable[subprocess.CompletedProcess[str]]]


@pytest.fixture
def jobs(probe_project: Path, redis_url: str, key_prefix: str) -> Jobs:
    """Run `python -m runtime jobs ARGS` in the project folder with the server's Redis."""

    async def run(
        *args: str, env: dict[str, str] | None = None, cwd: Path | None = None
    ) -> subprocess.CompletedProcess[str]:
        environ = clean_env() | {
            "REDIS_URL": redis_url,
            "CHANNELKIT_KEY_PREFIX": key_prefix,
            "CHANNELKIT_APP": APP,
        }
        environ.update(env or {})
        return await asyncio.to_thread(
            subprocess.run,
            [sys.executable, "-m", "runtime", "jobs", *args],
            cwd=cwd or probe_project,
            env=environ,
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )

    return run


async def poison(redis: Redis, key_prefix: str, channel: str, job_id: str) -> None:
    """A message whose payload the channel's model rejects: it fails at once, for good."""
    data: dict[str, Any] = {
        "task_id": job_id,
        "task_name": f"channelkit.{channel}",
        "labels": {},
        "labels_types": None,
        "args": [],
        "kwargs": {"payload": {"id": ""}},
    }
    await redis.xadd(ChannelKeys(key_prefix, channel).stream, {"data": json.dumps(data)})


async def wait_state(redis: Redis, key_prefix: str, channel: str, job_id: str, state: str) -> None:
    key = ChannelKeys(key_prefix, channel).job(job_id)
    deadline = time.monotonic() + 10
    while (await redis.hget(key, "state")) != state.encode():
        if time.monotonic() > deadline:
            pytest.fail(f"job {job_id} not {state} after 10 s: {await redis.hgetall(key)}")
        await asyncio.sleep(0.02)


def json_of(result: subprocess.CompletedProcess[str]) -> Any:
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


async def test_list_show_retry_discard_and_counts(
    serve: ServeFactory, jobs: Jobs, redis: Redis, key_prefix: str
) -> None:
    server = await serve()
    async with httpx.AsyncClient(base_url=server.http_url, timeout=10) as http:
        response = await http.post("/channels/fast/jobs", json={"id": "fine"})
    assert response.status_code == 202, response.text
    good = response.json()["id"]
    await poison(redis, key_prefix, "fast", "bad-1")
    await wait_state(redis, key_prefix, "fast", good, "completed")
    await wait_state(redis, key_prefix, "fast", "bad-1", "failed")

    counts = await jobs("counts")
    assert counts.returncode == 0, counts.stderr
    header, *rows = counts.stdout.splitlines()
    assert header.split() == [
        "CHANNEL",
        "WAITING",
        "ACTIVE",
        "DELAYED",
        "COMPLETED",
        "FAILED",
        "CANCELLED",
        "LIMITER",
    ]
    assert [row.split()[:6] for row in rows] == [
        ["fast", "0", "0", "0", "1", "1"],
        ["other", "0", "0", "0", "0", "0"],
        ["provider", "0", "0", "0", "0", "0"],
        ["slow", "0", "0", "0", "0", "0"],
    ]
    [fast] = json_of(await jobs("counts", "fast", "--json"))
    assert (fast["channel"], fast["completed"], fast["failed"]) == ("fast", 1, 1)

    listed = await jobs("list", "fast")
    assert listed.returncode == 0, listed.stderr
    header, row = listed.stdout.splitlines()
    assert header.split()[:4] == ["ID", "STATE", "ATTEMPTS", "FAILURES"]
    assert row.split()[:4] == ["bad-1", "failed", "0", "1"]
    assert "payload_invalid: id: String should have at least 1 character" in row

    body = json_of(await jobs("list", "fast", "--state", "completed", "--json"))
    assert (body["channel"], body["state"]) == ("fast", "completed")
    assert [job["id"] for job in body["jobs"]] == [good]
    assert body["jobs"][0]["enqueued_at"].endswith("+00:00")
    empty = await jobs("list", "fast", "--state", "delayed")
    assert (empty.returncode, empty.stdout) == (0, "no delayed jobs in channel 'fast'\n")

    shown = await jobs("show", "fast", "bad-1")
    assert shown.returncode == 0, shown.stderr
    assert "state     failed\n" in shown.stdout
    assert 'payload   {"id": ""}\n' in shown.stdout
    assert "errors (1, oldest first):" in shown.stdout
    detail = json_of(await jobs("show", "fast", "bad-1", "--json"))
    assert detail["error"]["type"] == "payload_invalid"
    assert detail["payload"] == {"id": ""}

    missing = await jobs("show", "fast", "nope")
    assert missing.returncode == 1
    assert "no job nope in channel 'fast'" in missing.stderr

    not_failed = await jobs("retry", "fast", good)
    assert not_failed.returncode == 1
    assert "is completed; only failed or cancelled jobs can be retried" in not_failed.stderr

    retried = await jobs("retry", "fast", "bad-1")
    assert (retried.returncode, retried.stdout) == (
        0,
        "job bad-1 in 'fast' will run again (waiting)\n",
    )
    await wait_state(redis, key_prefix, "fast", "bad-1", "failed")  # invalid still
    assert len(json_of(await jobs("show", "fast", "bad-1", "--json"))["errors"]) == 2

    discarded = await jobs("discard", "fast", "bad-1")
    assert (discarded.returncode, discarded.stdout) == (0, "job bad-1 in 'fast' discarded\n")
    assert (await jobs("show", "fast", "bad-1")).returncode == 1
    assert (await jobs("discard", "fast", "bad-1")).returncode == 1
    [fast] = json_of(await jobs("counts", "fast", "--json"))
    assert fast["failed"] == 0


async def test_unknown_channel_and_bad_flags_are_usage_errors(jobs: Jobs) -> None:
    unknown = await jobs("list", "fax")
    assert unknown.returncode == 2
    assert "unknown channel 'fax'; channels declared: fast, other, provider, slow" in unknown.stderr
    bad_limit = await jobs("list", "fast", "--limit", "0")
    assert bad_limit.returncode == 2
    assert "expected 1 to 500, got 0" in bad_limit.stderr
    no_action = await jobs()
    assert no_action.returncode == 2


async def test_without_redis_url_it_says_what_it_needs(jobs: Jobs, tmp_path: Path) -> None:
    result = await jobs("counts", env={"REDIS_URL": ""}, cwd=tmp_path)
    assert result.returncode == 2
    assert "the Redis that `runtime serve` uses" in result.stderr
    assert ".channelkit/redis.sock" in result.stderr

    unreachable = await jobs("counts", env={"REDIS_URL": "redis://:pw@127.0.0.1:1/0"})
    assert unreachable.returncode == 2
    assert "error: Redis at redis://:***@127.0.0.1:1/0: " in unreachable.stderr


async def test_the_embedded_redis_socket_is_found(
    serve: ServeFactory, jobs: Jobs, tmp_path: Path
) -> None:
    data = tmp_path / "data"
    await serve(env={"REDIS_URL": None, "CHANNELKIT_DATA_DIR": str(data)})
    assert (data / "redis.sock").is_socket()
    result = await jobs("counts", "--json", env={"REDIS_URL": "", "CHANNELKIT_DATA_DIR": str(data)})
    assert [c["channel"] for c in json_of(result)] == ["fast", "other", "provider", "slow"]
