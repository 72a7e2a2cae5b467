"""The dashboard's test app: tests/runtime/ui/project generated once per session, served
by real `runtime serve` processes on the session's Redis under the test's key prefix,
with API_KEYS set (the gate is what most tests exercise)."""

from __future__ import annotations

import asyncio
import contextlib
import re
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from redis.asyncio import Redis

from runtime.engine.client import Client
from tests.runtime.conftest import (
    STARTUP_TIMEOUT,
    Server,
    clean_env,
    free_port,
    generate_project,
    spawn_serve,
)

PROJECT = Path(__file__).resolve().parent / "project"
APP = "uiprobe_generated"
API_KEY = "dashboard-test-key"
CHANNEL = "work"


@pytest.fixture(scope="session")
def ui_project(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return generate_project(PROJECT, tmp_path_factory.mktemp("uiprobe") / "project", APP)


@dataclass
class Dashboard:
    """A served app, its Redis, and helpers to drive it."""

    server: Server
    redis: Redis
    client: Client
    key_prefix: str

    @property
    def url(self) -> str:
        return self.server.http_url + "/ui"

    async def break_handlers(self, broken: bool) -> None:
        flag = f"{self.key_prefix}:probe:broken"
        if broken:
            await self.redis.set(flag, 1)
        else:
            await self.redis.delete(flag)

    async def enqueue(self, payload: dict[str, Any]) -> str:
        async with httpx.AsyncClient(base_url=self.server.http_url) as http:
            answer = await http.post(
                f"/channels/{CHANNEL}/jobs",
                json=payload,
                headers={"authorization": f"Bearer {API_KEY}"},
            )
        assert answer.status_code == 202, answer.text
        job_id: str = answer.json()["id"]
        return job_id

    async def wait_state(self, job_id: str, state: str, within: float = 15.0) -> None:
        deadline = time.monotonic() + within
        while True:
            job = await self.client.job(CHANNEL, job_id)
            if job is not None and job.state == state:
                return
            if time.monotonic() > deadline:
                pytest.fail(f"job {job_id} not {state} after {within} s: {job}")
            await asyncio.sleep(0.05)


ServeDashboard = Callable[[Mapping[str, str]], Awaitable[Dashboard]]


@pytest.fixture
async def serve_dashboard(
    ui_project: Path, redis_url: str, key_prefix: str, redis: Redis, tmp_path: Path
) -> AsyncIterator[ServeDashboard]:
    servers: list[Server] = []
    client = Client(redis, prefix=key_prefix)

    async def start(env: Mapping[str, str]) -> Dashboard:
        http_port, grpc_port = free_port(), free_port()
        environ = (
            clean_env()
            | {
                "CHANNELKIT_APP": APP,
                "REDIS_URL": redis_url,
                "CHANNELKIT_KEY_PREFIX": key_prefix,
                "HTTP_PORT": str(http_port),
                "GRPC_PORT": str(grpc_port),
                "API_KEYS": API_KEY,
                "SHUTDOWN_TIMEOUT": "5",
                "UI_PROBE_REDIS_URL": redis_url,
                "UI_PROBE_PREFIX": f"{key_prefix}:probe",
            }
            | dict(env)
        )
        log = tmp_path / f"serve-{len(servers)}.log"
        process = await spawn_serve(ui_project, environ, log)
        server = Server(process, log, http_port, grpc_port)
        servers.append(server)
        await _ready(server)
        return Dashboard(server, redis, client, key_prefix)

    try:
        yield start
    finally:
        for server in servers:
            await server.stop()


async def _ready(server: Server) -> None:
    deadline = time.monotonic() + STARTUP_TIMEOUT
    async with httpx.AsyncClient(timeout=2.0) as http:
        while True:
            if server.process.returncode is not None:
                pytest.fail(f"runtime serve exited:\n{server.output()}")
            with contextlib.suppress(httpx.TransportError):
                if (await http.get(f"{server.http_url}/health/ready")).status_code == 200:
                    return
            if time.monotonic() > deadline:
                pytest.fail(f"runtime serve not ready:\n{server.output()}")
            await asyncio.sleep(0.05)


def csrf_of(html: str) -> str:
    found = re.search(r'name="csrf_token" value="([0-9a-f]{64})"', html)
    assert found, "no CSRF token in the page"
    return found[1]


@contextlib.asynccontextmanager
async def logged_in(base: str) -> AsyncIterator[httpx.AsyncClient]:
    """An httpx client holding the dashboard's cookies after a successful login."""
    async with httpx.AsyncClient(base_url=base, follow_redirects=False, timeout=10) as http:
        page = await http.get("/ui/login")
        answer = await http.post(
            "/ui/login", data={"key": API_KEY, "csrf_token": csrf_of(page.text), "next": "/ui/"}
        )
        assert answer.status_code == 303, answer.text
        yield http
