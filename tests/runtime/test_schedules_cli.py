"""`runtime schedules` as users run it (`python -m runtime schedules ...` in the project
folder, on the server's Redis), and three `runtime serve` processes ticking one
schedule: exactly one job per tick."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
from redis.asyncio import Redis

from runtime.engine.clock import now_ms
from tests.runtime.conftest import APP, ServeFactory, clean_env

pytestmark = pytest.mark.timeout(150)

Schedules = Callable[..., Awaitable[subprocess.CompletedProcess[str]]]


@pytest.fixture
def schedules(probe_project: Path, redis_url: str, key_prefix: str) -> Schedules:
    async def run(*args: str) -> subprocess.CompletedProcess[str]:
        environ = clean_env() | {
            "REDIS_URL": redis_url,
            "CHANNELKIT_KEY_PREFIX": key_prefix,
            "CHANNELKIT_APP": APP,
        }
        return await asyncio.to_thread(
            subprocess.run,
            [sys.executable, "-m", "runtime", "schedules", *args],
            cwd=probe_project,
            env=environ,
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )

    return run


def json_of(result: subprocess.CompletedProcess[str]) -> Any:
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


async def test_set_list_show_pause_resume_remove(schedules: Schedules) -> None:
    created = json_of(
        await schedules(
            "set", "fast", "nightly", "--cron", "30 2 * * *", "--timezone", "Europe/Berlin",
            "--payload", '{"id": "n"}', "--catch-up", "skip", "--json",
        )
    )  # fmt: skip
    assert created["cron"] == "30 2 * * *"
    assert created["catch_up"] == "skip"
    assert created["next_run"] is not None
    listed = await schedules("list", "fast")
    assert listed.returncode == 0, listed.stderr
    assert "nightly" in listed.stdout
    assert "Europe/Berlin" in listed.stdout
    assert json_of(await schedules("pause", "fast", "nightly", "--json"))["paused"] is True
    shown = await schedules("show", "fast", "nightly")
    assert "paused:       True" in shown.stdout
    assert json_of(await schedules("resume", "fast", "nightly", "--json"))["paused"] is False
    removed = await schedules("remove", "fast", "nightly")
    assert removed.returncode == 0, removed.stderr
    missing = await schedules("show", "fast", "nightly")
    assert missing.returncode == 1
    assert "no schedule 'nightly' in channel 'fast'" in missing.stderr


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("--cron", "0 25 * * *", "--payload", '{"id": "x"}'), "cron: bad cron expression"),
        (
            ("--cron", "0 8 * * *", "--timezone", "Berlin", "--payload", '{"id": "x"}'),
            "timezone: unknown time zone 'Berlin'",
        ),
        (("--every-ms", "1000", "--payload", '{"nope": 1}'), "--payload id: Field required"),
        (("--every-ms", "1000", "--payload", "{"), "--payload: not JSON"),
    ],
)
async def test_bad_input_exits_2_naming_the_field(
    schedules: Schedules, args: tuple[str, ...], message: str
) -> None:
    result = await schedules("set", "fast", "bad", *args)
    assert result.returncode == 2, result.stdout
    assert message in result.stderr
    assert (await schedules("show", "fast", "bad")).returncode == 1


async def test_three_serve_processes_enqueue_one_job_per_tick(
    serve: ServeFactory, schedules: Schedules, redis: Redis, key_prefix: str
) -> None:
    servers = [await serve(), await serve(), await serve()]
    began = now_ms()
    set_up = await schedules(
        "set", "fast", "tick", "--every-ms", "1000", "--payload", '{"id": "t"}'
    )
    assert set_up.returncode == 0, set_up.stderr
    await asyncio.sleep(4.5)
    for server in servers:
        await server.stop()
    ended = now_ms()
    pattern = f"{key_prefix}:{{fast}}:job:schedule:tick:*"
    ticks = sorted(
        [int(key.rsplit(b":", 1)[1]) async for key in redis.scan_iter(match=pattern, count=1000)]
    )
    # Every whole second from the first tick after the schedule was created: none missing.
    assert len(ticks) >= 3
    assert ticks == list(range(ticks[0], ticks[-1] + 1, 1000))
    assert began <= ticks[0] <= now_ms()
    assert ticks[-1] <= ended
    shown = json_of(await schedules("show", "fast", "tick", "--json"))
    # `enqueued` counts jobs created: a tick taken twice would count twice.
    assert shown["enqueued"] == len(ticks)
