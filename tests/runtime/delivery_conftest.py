"""Helpers of the delivery-guarantee tests (tests/runtime/test_delivery_*.py).

`delivery_project` copies tests/runtime/delivery_project to a temp folder and runs
`runtime generate` there once per session (package `dprobe_generated`, not the probe
project's `probe_generated`: both may be imported into the test process). `Cluster`
starts `python -m runtime serve` processes in that folder, on free ports, against one
Redis and key prefix, and stops every one of them by pid when it is closed. The process
plumbing (Server, free ports, a clean environment, readiness) is tests/runtime/conftest.py's.

The handlers (delivery_project/dprobe/handlers.py) append JSON events to
`<key prefix>:{probe}:events`; `wait_events` polls them through conftest's `Probe`.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import signal
import time
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from redis.asyncio import Redis

from tests.runtime.conftest import (
    Probe,
    Server,
    _wait_ready,
    clean_env,
    free_port,
    generate_project,
    import_from_project,
    spawn_serve,
)

DELIVERY_PROJECT = Path(__file__).resolve().parent / "delivery_project"
DAPP = "dprobe_generated"
STOP_WITHIN = 10.0

_generated: dict[str, Path] = {}


def delivery_project(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The delivery test project, generated in a temp folder once per session."""
    found = _generated.get("project")
    if found is not None:
        return found
    folder = generate_project(
        DELIVERY_PROJECT, tmp_path_factory.mktemp("delivery") / "project", DAPP
    )
    _generated["project"] = folder
    return folder


def project_module(project: Path, module: str) -> Any:
    """A module of the generated package, imported into the test process (a producer)."""
    return import_from_project(project, f"{DAPP}.{module}")


@dataclass(frozen=True, slots=True)
class Event:
    kind: str
    ch: str
    id: str
    pid: int
    attempt: int
    t: float


def parse_events(raw: Sequence[str]) -> list[Event]:
    return [Event(**json.loads(item)) for item in raw]


def select(events: Sequence[Event], kind: str, channel: str, job: str | None = None) -> list[Event]:
    return [
        e for e in events if e.kind == kind and e.ch == channel and (job is None or e.id == job)
    ]


async def wait_events(
    probe: Probe, done: Callable[[list[Event]], bool], within: float = 10.0
) -> list[Event]:
    raw = await probe.wait_for(lambda seen: done(parse_events(seen)), within=within)
    return parse_events(raw)


class Cluster:
    """`runtime serve` processes of the delivery project on one Redis and key prefix."""

    def __init__(self, project: Path, redis_url: str, key_prefix: str, logs: Path) -> None:
        self.project = project
        self.redis_url = redis_url
        self.key_prefix = key_prefix
        self.probe_prefix = f"{key_prefix}:{{probe}}"  # one slot: the same on a cluster
        self.logs = logs
        self.servers: list[Server] = []

    def probe(self, redis: Redis) -> Probe:
        return Probe(redis, self.probe_prefix, self.key_prefix)

    async def start(
        self, count: int = 1, channels: str | None = None, env: Mapping[str, str] | None = None
    ) -> list[Server]:
        """Start `count` processes at once (consuming only `channels`, a comma list, when
        given); returns when all are ready."""
        extra = dict(env or {})
        if channels is not None:
            extra["WORKER_CHANNELS"] = channels
        return list(await asyncio.gather(*(self._start_one(extra) for _ in range(count))))

    async def _start_one(self, extra: Mapping[str, str]) -> Server:
        http_port, grpc_port = free_port(), free_port()
        environ = clean_env() | {
            "CHANNELKIT_APP": DAPP,
            "REDIS_URL": self.redis_url,
            "CHANNELKIT_KEY_PREFIX": self.key_prefix,
            "HTTP_PORT": str(http_port),
            "GRPC_PORT": str(grpc_port),
            "ENABLE_GRPC": "false",
            "SHUTDOWN_TIMEOUT": "5",
            "LOG_LEVEL": "INFO",
            "PROBE_REDIS_URL": self.redis_url,
            "PROBE_PREFIX": self.probe_prefix,
        }
        environ.update(extra)
        log = self.logs / f"serve-{len(self.servers)}-{http_port}.log"
        began = time.monotonic()
        process = await spawn_serve(self.project, environ, log)
        server = Server(process, log, http_port, grpc_port)
        self.servers.append(server)
        await _wait_ready(server, True)
        server.startup_seconds = time.monotonic() - began
        return server

    def by_pid(self, pid: int) -> Server:
        for server in self.servers:
            if server.pid == pid:
                return server
        raise AssertionError(f"no server with pid {pid}: {[s.pid for s in self.servers]}")

    def output(self) -> str:
        return "\n".join(f"--- pid {s.pid}\n{s.output()}" for s in self.servers)

    async def kill(self, server: Server) -> float:
        """SIGKILL one process; returns time.time() just before the signal."""
        killed_at = time.time()
        code = await server.stop(signal.SIGKILL, within=STOP_WITHIN)
        assert code == -signal.SIGKILL, f"pid {server.pid} exited with {code}"
        return killed_at

    async def stop(self) -> None:
        await asyncio.gather(*(server.stop(within=STOP_WITHIN) for server in self.servers))


@contextlib.asynccontextmanager
async def running_cluster(
    project: Path, redis_url: str, key_prefix: str, logs: Path
) -> AsyncIterator[Cluster]:
    cluster = Cluster(project, redis_url, key_prefix, logs)
    try:
        yield cluster
    finally:
        await cluster.stop()


async def job_status(http: httpx.AsyncClient, channel: str, job_id: str) -> dict[str, Any]:
    response = await http.get(f"/channels/{channel}/jobs/{job_id}")
    assert response.status_code == 200, response.text
    found: dict[str, Any] = response.json()
    return found


async def wait_state(
    http: httpx.AsyncClient, channel: str, job_id: str, state: str, within: float = 10.0
) -> dict[str, Any]:
    """Poll the job until it is in `state`; fail with its last status after `within` s."""
    deadline = time.monotonic() + within
    while True:
        response = await http.get(f"/channels/{channel}/jobs/{job_id}")
        if response.status_code == 200 and response.json()["state"] == state:
            found: dict[str, Any] = response.json()
            return found
        if time.monotonic() > deadline:
            pytest.fail(f"job {job_id} not {state} after {within} s: {response.text}")
        await asyncio.sleep(0.05)


async def failed_jobs(http: httpx.AsyncClient, channel: str) -> dict[str, dict[str, Any]]:
    response = await http.get(f"/channels/{channel}/jobs", params={"state": "failed"})
    assert response.status_code == 200, response.text
    return {job["id"]: job for job in response.json()["jobs"]}


async def delete_prefix(redis: Redis, prefix: str) -> None:
    """Remove every key under `prefix` (never a flush: other tests share the Redis)."""
    keys = [key async for key in redis.scan_iter(match=f"{prefix}:*", count=1000)]
    if keys:
        await redis.delete(*keys)


@pytest.fixture(scope="session")
def dproject(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The delivery project, generated once per session."""
    return delivery_project(tmp_path_factory)


@pytest.fixture
async def cluster(
    dproject: Path, redis_url: str, key_prefix: str, tmp_path: Path, redis: Redis
) -> AsyncIterator[Cluster]:
    """Stopped before `redis` removes the test's keys (it is set up first)."""
    async with running_cluster(dproject, redis_url, key_prefix, tmp_path) as found:
        yield found
