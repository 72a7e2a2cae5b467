"""App resources (channels.yaml `resources:`) in a real `runtime serve` process.

The shop project (tests/runtime/resources_project) names `shop.resources:lifespan`; the
factory and the handler append to the file SHOP_LOG, so the order of enter, jobs and exit
is observable from outside the process.
"""

from __future__ import annotations

import asyncio
import signal
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.runtime.conftest import (
    STARTUP_TIMEOUT,
    Server,
    _wait_ready,
    clean_env,
    free_port,
    generate_project,
    spawn_serve,
)

PROJECT = Path(__file__).resolve().parent / "resources_project"
APP = "shop_generated"


@pytest.fixture(scope="module")
def shop_project(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return generate_project(PROJECT, tmp_path_factory.mktemp("shop") / "project", APP)


async def until(done: Callable[[], bool]) -> None:
    async def check() -> bool:
        return done()

    await until_async(check)


async def until_async(done: Callable[[], Awaitable[bool]]) -> None:
    """Poll `done` until true; fail after STARTUP_TIMEOUT (a hang, not a speed check)."""
    deadline = time.monotonic() + STARTUP_TIMEOUT
    while not await done():
        if time.monotonic() > deadline:
            pytest.fail(f"not done after {STARTUP_TIMEOUT} s")
        await asyncio.sleep(0.02)


def shop_env(redis_url: str, key_prefix: str, log: Path, **extra: str) -> dict[str, str]:
    return clean_env() | {
        "CHANNELKIT_APP": APP,
        "REDIS_URL": redis_url,
        "CHANNELKIT_KEY_PREFIX": key_prefix,
        "HTTP_PORT": str(free_port()),
        "GRPC_PORT": str(free_port()),
        "SHOP_LOG": str(log),
        **extra,
    }


def test_processor_passes_the_typed_resources(shop_project: Path) -> None:
    processor = (shop_project / APP / "processors" / "greet.py").read_text()
    assert "from shop.resources import Shop" in processor
    assert "context: JobContext[Shop]" in processor
    registry = (shop_project / APP / "registry.py").read_text()
    assert "RESOURCES: ResourcesFactory[Shop] | None = lifespan" in registry


async def test_handlers_get_the_resources_entered_before_and_exited_after_the_jobs(
    shop_project: Path, redis_url: str, key_prefix: str, tmp_path: Path
) -> None:
    log = tmp_path / "shop.log"
    environ = shop_env(redis_url, key_prefix, log)
    process = await spawn_serve(shop_project, environ, tmp_path / "serve.log")
    server = Server(process, tmp_path / "serve.log", int(environ["HTTP_PORT"]), 0)
    try:
        await _wait_ready(server, api=True)
        async with httpx.AsyncClient(base_url=server.http_url) as http:
            ids = []
            for name in ("ada", "bob"):
                response = await http.post("/channels/greet/jobs", json={"name": name})
                assert response.status_code == 202, response.text
                ids.append(response.json()["id"])
            await until(lambda: "job" in log.read_text())
            code = await server.stop(signal.SIGTERM)
    finally:
        await server.stop()
    assert code == 0, server.output()
    lines = log.read_text().splitlines()
    assert lines[0] == "enter"
    assert lines[-1] == "exit"
    assert sorted(lines[1:-1]) == sorted(f"job {job_id}" for job_id in ids)
    assert "resources ready: shop.resources:lifespan yielded Shop" in server.output()


async def test_completed_jobs_carry_what_the_resources_hold(
    shop_project: Path, redis_url: str, key_prefix: str, tmp_path: Path
) -> None:
    environ = shop_env(redis_url, key_prefix, tmp_path / "shop.log")
    process = await spawn_serve(shop_project, environ, tmp_path / "serve.log")
    server = Server(process, tmp_path / "serve.log", int(environ["HTTP_PORT"]), 0)
    try:
        await _wait_ready(server, api=True)
        async with httpx.AsyncClient(base_url=server.http_url) as http:
            response = await http.post("/channels/greet/jobs", json={"name": "ada"})
            job_url = f"/channels/greet/jobs/{response.json()['id']}"
            job: dict[str, Any] = {}

            async def completed() -> bool:
                job.update((await http.get(job_url)).json())
                return bool(job["state"] == "completed")

            await until_async(completed)
    finally:
        await server.stop()
    assert job["result"] == {"text": "hello ada", "opened": 1}


@pytest.mark.parametrize(
    ("mode", "extra", "message"),
    [
        (
            "raise",
            {},
            "the resources factory shop.resources:lifespan failed: "
            "RuntimeError: the shop's database is unreachable; not serving",
        ),
        (
            "hang",
            {"RESOURCES_TIMEOUT": "0.5"},
            "the resources factory shop.resources:lifespan did not yield within 0.5 s "
            "(RESOURCES_TIMEOUT)",
        ),
    ],
)
async def test_a_factory_that_fails_or_hangs_stops_the_process_before_any_job(
    shop_project: Path,
    redis_url: str,
    key_prefix: str,
    tmp_path: Path,
    mode: str,
    extra: dict[str, str],
    message: str,
) -> None:
    environ = shop_env(redis_url, key_prefix, tmp_path / "shop.log", SHOP_RESOURCES=mode, **extra)
    process = await spawn_serve(shop_project, environ, tmp_path / "serve.log")
    code = await asyncio.wait_for(process.wait(), STARTUP_TIMEOUT)
    output = (tmp_path / "serve.log").read_text()
    assert code == 1, output
    assert message in output
    assert "workers started" not in output
    assert "ready:" not in output
    assert not (tmp_path / "shop.log").exists()
