"""What `runtime serve` logs says what went wrong, and only that: a handler blocking the
event loop is named with its job; a request the client got wrong is no traceback.

Real processes of the reliability project (test_reliability_support.py) on the
session's Redis.
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
from redis.asyncio import Redis

from tests.runtime.conftest import Probe
from tests.runtime.delivery_conftest import select, wait_events
from tests.runtime.test_reliability_support import (
    BLOCKED,
    TRACEBACK,
    Fleet,
    lines_with,
    reliability_project,
    running_fleet,
    wait_log,
    wait_until,
)

pytestmark = [pytest.mark.slow, pytest.mark.timeout(60)]


@pytest.fixture(scope="session")
def rproject(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return reliability_project(tmp_path_factory)


@pytest.fixture
async def fleet(
    rproject: Path, redis_url: str, key_prefix: str, tmp_path: Path, redis: Redis
) -> AsyncIterator[Fleet]:
    async with running_fleet(rproject, redis_url, redis_url, key_prefix, tmp_path) as found:
        yield found


async def _blocked_report(
    fleet: Fleet, redis: Redis, channel: str, later: float
) -> tuple[str, str]:
    """Run one job of `channel` (time.sleep(1.5) in its handler, then `later` s awaited);
    returns its id and the process's one report of the blocked loop."""
    serve = await fleet.start(api=True, workers=channel)
    probe = Probe(redis, fleet.probe_prefix, fleet.key_prefix)
    async with httpx.AsyncClient(base_url=serve.http_url, timeout=10) as http:
        response = await http.post(
            f"/channels/{channel}/jobs", json={"id": "b1", "seconds": 1.5, "later": later}
        )
        assert response.status_code == 202, response.text
        job_id = str(response.json()["id"])
        await wait_events(probe, lambda seen: bool(select(seen, "start", channel)), within=15)
        names = f"channel '{channel}' (its handler)"
        output = await wait_log(serve, names, within=10)
        await wait_until(lambda: _completed(http, channel, job_id), f"{job_id} completed", 15)
    # One report for the job's block. (A busy machine may add one for the start-up itself,
    # while the HTTP app is built with no job running: a true report of its own.)
    (line,) = [line for line in lines_with(output, BLOCKED) if names in line]
    print(f"\n{line}")
    blocked = re.search(r"blocked for (\d+\.\d) s", line)
    assert blocked is not None
    assert float(blocked.group(1)) >= 1.0
    assert serve.process.returncode is None
    return job_id, line


async def _completed(http: httpx.AsyncClient, channel: str, job_id: str) -> bool:
    response = await http.get(f"/channels/{channel}/jobs/{job_id}")
    return response.status_code == 200 and response.json()["state"] == "completed"


async def test_a_handler_blocking_the_loop_is_named_with_its_job(
    fleet: Fleet, redis: Redis
) -> None:
    """`blocking` calls time.sleep(1.5) in an async handler, then awaits for another
    second (the job still runs when the loop is free again): the process reports the
    blocked loop, naming the channel and the job id."""
    job_id, line = await _blocked_report(fleet, redis, "blocking", later=1.0)
    assert f"channel 'blocking' (its handler), job(s) {job_id}" in line


async def test_a_handler_blocking_the_loop_as_its_last_act_is_named_with_its_job(
    fleet: Fleet, redis: Redis
) -> None:
    """`blocking_last` calls time.sleep(1.5) and returns (sync I/O, then done: the usual
    shape of the mistake). The report must still name the job that blocked."""
    job_id, line = await _blocked_report(fleet, redis, "blocking_last", later=0)
    assert f"channel 'blocking_last' (its handler), job(s) {job_id}" in line


async def test_a_job_that_does_not_exist_is_a_404_without_a_traceback(fleet: Fleet) -> None:
    serve = await fleet.start(api=True)
    async with httpx.AsyncClient(base_url=serve.http_url, timeout=10) as http:
        missing = await http.get("/channels/steady/jobs/no-such-job")
        conflict = await http.post("/channels/steady/jobs/no-such-job/retry")
    assert missing.status_code == 404, missing.text
    assert conflict.status_code in (404, 409), conflict.text
    output = serve.output()
    assert "Uncaught exception" not in output, output
    assert TRACEBACK not in output, output
