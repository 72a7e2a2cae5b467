"""Real processes on real sockets: `runtime serve` started as users start it.

`probe_project` copies tests/runtime/project to a temp folder and runs `runtime generate`
there once per session. `serve` starts `python -m runtime serve` with that folder as its
working directory (it finds `probe_generated` and the `probe` handlers itself, no
PYTHONPATH), on free ports, with the session's Redis and the test's key prefix, and waits
until it is ready. Every process a test started is stopped at teardown: SIGTERM, then
SIGKILL after a bound. `probe` reads what the handlers wrote (see project/probe/handlers.py).

Children cannot outlive the suite: every process started here asks the kernel for SIGKILL
when pytest's thread that started it ends (`die_with_parent`, prctl PR_SET_PDEATHSIG), so
a pytest killed with SIGKILL leaves no `runtime serve` behind; one that does not become
ready in time is killed before the test fails. Their environment is `clean_env()`: an
allow-list, so no provider URL, token, SMTP server or proxy of the caller reaches them.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import importlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import Any, Protocol

import httpx
import pytest
import uvicorn
from redis.asyncio import Redis

from runtime.engine.client import Client
from runtime.engine.keys import CONSUMER_GROUP, ChannelKeys
from runtime.engine.metrics import Metrics
from runtime.http.app import build_http_app

PROJECT = Path(__file__).resolve().parent / "project"
# The generated package's name: the out folder's. Not `generated`, which is the repo's own.
APP = "probe_generated"
STARTUP_TIMEOUT = 30.0
STOP_TIMEOUT = 15.0
READY_LINE = "channelkit.serve: ready:"
_PR_SET_PDEATHSIG = 1


def die_with_parent() -> None:
    """`preexec_fn` for children: SIGKILL them when the thread that spawned them ends
    (Linux; elsewhere a no-op, and the fixtures' finalizers are all there is)."""
    if sys.platform.startswith("linux"):
        libc = ctypes.CDLL("libc.so.6", use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)


def kill(process: subprocess.Popen[bytes] | asyncio.subprocess.Process) -> None:
    """SIGKILL a child that is still running (it is reaped by whoever waits for it)."""
    if process.returncode is None:
        with contextlib.suppress(ProcessLookupError):
            process.kill()


def wait_ready_blocking(
    process: subprocess.Popen[bytes], url: str, output: Callable[[], str]
) -> None:
    """Block until `url`/health/ready answers 200; fail with the log if the process exits
    or STARTUP_TIMEOUT passes (for suites that start servers with subprocess.Popen)."""
    deadline = time.monotonic() + STARTUP_TIMEOUT
    try:
        with httpx.Client(timeout=2.0) as http:
            while True:
                code = process.poll()
                if code is not None:
                    pytest.fail(f"runtime serve exited with {code}:\n{output()}")
                with contextlib.suppress(httpx.TransportError):
                    if http.get(f"{url}/health/ready").status_code == 200:
                        return
                if time.monotonic() > deadline:
                    pytest.fail(f"runtime serve not ready after {STARTUP_TIMEOUT} s:\n{output()}")
                time.sleep(0.05)
    except BaseException:
        # Not ready (or the test was interrupted): nobody else will stop it.
        if process.poll() is None:
            process.kill()
            process.wait()
        raise


def generate_project(source: Path, folder: Path, out: str) -> Path:
    """Copy a test project to `folder` and run `runtime generate --out <out>` there."""
    shutil.copytree(source, folder, ignore=shutil.ignore_patterns("__pycache__"))
    result = subprocess.run(
        [sys.executable, "-m", "runtime", "generate", "--out", out],
        cwd=folder,
        env=clean_env(),
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, f"runtime generate failed:\n{result.stdout}{result.stderr}"
    return folder


async def spawn_serve(
    project: Path, environ: dict[str, str], log: Path, args: Sequence[str] = ()
) -> asyncio.subprocess.Process:
    """`python -m runtime serve` in `project`, its output into `log`."""
    with log.open("wb") as output:
        return await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "runtime",
            "serve",
            *args,
            cwd=project,
            env=environ,
            stdin=subprocess.DEVNULL,
            stdout=output,
            stderr=subprocess.STDOUT,
            preexec_fn=die_with_parent,
        )


def start_serve_blocking(
    project: Path, environ: dict[str, str], log: Path
) -> subprocess.Popen[bytes]:
    """`python -m runtime serve` in `project` with subprocess.Popen, its output into `log`
    (for module-scoped, synchronous fixtures; `spawn_serve` is the asyncio twin)."""
    with log.open("wb") as output:
        return subprocess.Popen(
            [sys.executable, "-m", "runtime", "serve"],
            cwd=project,
            env=environ,
            stdin=subprocess.DEVNULL,
            stdout=output,
            stderr=subprocess.STDOUT,
            preexec_fn=die_with_parent,
        )


@pytest.fixture(scope="session")
def probe_project(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The test project in a temp folder, generated there by `runtime generate`."""
    return generate_project(PROJECT, tmp_path_factory.mktemp("probe") / "project", APP)


def import_from_project(project: Path, module: str) -> ModuleType:
    """Import a module of the generated project into this process (as a client would)."""
    folder = str(project)
    if folder not in sys.path:
        sys.path.insert(0, folder)
    return importlib.import_module(module)


async def grpc_calls(
    project: Path, server: Server, calls: list[dict[str, Any]]
) -> list[dict[str, Any]]:
    """Make gRPC calls with the generated stubs, in a process of its own (probe/grpc_call.py:
    two generated packages' protos cannot share one process)."""
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "probe.grpc_call",
        APP,
        server.grpc_target,
        json.dumps(calls),
        cwd=project,
        env=clean_env(),
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        preexec_fn=die_with_parent,
    )
    try:
        out, err = await asyncio.wait_for(process.communicate(), 60)
    finally:
        kill(process)
    assert process.returncode == 0, f"gRPC client failed:\n{err.decode(errors='replace')}"
    results: list[dict[str, Any]] = json.loads(out)
    return results


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


# What a child may inherit from this process's environment: how to find programs, where
# home and temp are, the locale. Nothing else: no serve setting, no *_PROVIDER_URL or
# *_PROVIDER_TOKEN, no SMTP_*, no proxy, no PYTHONPATH. Tests add what a child needs.
ENV_ALLOWED = frozenset(
    {"PATH", "HOME", "USER", "LOGNAME", "SHELL", "TMPDIR", "TZ", "LANG", "LANGUAGE", "TERM"}
    | {"VIRTUAL_ENV", "PYTHONDONTWRITEBYTECODE", "PYTHONHASHSEED", "PYTHONUNBUFFERED"}
    | {"PYTHONIOENCODING", "PYTHONUTF8", "PYTHONFAULTHANDLER"}
)


def clean_env() -> dict[str, str]:
    """The allow-listed part of this process's environment (ENV_ALLOWED, LC_*): nothing
    that would configure the server or let a handler reach the outside."""
    return {
        name: value
        for name, value in os.environ.items()
        if name in ENV_ALLOWED or name.startswith("LC_")
    }


@dataclass
class Server:
    """One `runtime serve` process."""

    process: asyncio.subprocess.Process
    log: Path
    http_port: int
    grpc_port: int
    startup_seconds: float = 0.0

    @property
    def pid(self) -> int:
        return self.process.pid

    @property
    def http_url(self) -> str:
        return f"http://127.0.0.1:{self.http_port}"

    @property
    def grpc_target(self) -> str:
        return f"127.0.0.1:{self.grpc_port}"

    def output(self) -> str:
        return self.log.read_text(errors="replace")

    async def stop(self, signum: int = signal.SIGTERM, within: float = STOP_TIMEOUT) -> int:
        """Send `signum`; SIGKILL if it has not exited `within` seconds. Returns the exit code."""
        if self.process.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                self.process.send_signal(signum)
            try:
                return await asyncio.wait_for(self.process.wait(), within)
            except TimeoutError:
                with contextlib.suppress(ProcessLookupError):
                    self.process.kill()
        return await self.process.wait()


class ServeFactory(Protocol):
    def __call__(
        self,
        env: Mapping[str, str | None] | None = None,
        args: Sequence[str] = (),
    ) -> Awaitable[Server]: ...


@dataclass
class Probe:
    """What the handlers of the test project recorded, and the Redis they recorded it in."""

    redis: Redis
    prefix: str
    key_prefix: str
    events_key: str = field(init=False)

    def __post_init__(self) -> None:
        self.events_key = f"{self.prefix}:events"

    async def events(self) -> list[str]:
        return [text(item) for item in await self.redis.lrange(self.events_key, 0, -1)]

    async def wait_for(self, done: Callable[[list[str]], bool], within: float = 10.0) -> list[str]:
        """Poll the events until `done(events)`; fail with what was seen after `within` s."""
        deadline = time.monotonic() + within
        while True:
            events = await self.events()
            if done(events):
                return events
            if time.monotonic() > deadline:
                pytest.fail(f"timed out after {within} s; events so far: {events}")
            await asyncio.sleep(0.02)

    async def max_running(self) -> int:
        value = await self.redis.get(f"{self.prefix}:max_running")
        return int(value or 0)

    def keys(self, channel: str) -> ChannelKeys:
        return ChannelKeys(self.key_prefix, channel)

    async def queued(self, channel: str) -> int:
        """Jobs stored and not finished: waiting (the waiting set) or taken by a worker
        (on the stream, until finished)."""
        keys = self.keys(channel)
        async with self.redis.pipeline(transaction=False) as pipe:
            pipe.zcard(keys.waiting)
            pipe.xlen(keys.stream)
            waiting, taken = await pipe.execute()
        return int(waiting) + int(taken)

    async def pending(self, channel: str) -> int:
        """How many of the channel's jobs were delivered and not acknowledged."""
        summary: dict[str, Any] = await self.redis.xpending(
            self.keys(channel).stream, CONSUMER_GROUP
        )
        count: int = summary["pending"]
        return count


def text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


def events_of(events: Sequence[str], kind: str) -> list[tuple[str, int]]:
    """(job id, pid) of each `<kind>:<id>:<pid>` event, in order."""
    found = []
    for event in events:
        event_kind, job, pid = event.split(":")
        if event_kind == kind:
            found.append((job, int(pid)))
    return found


@pytest.fixture
def probe(redis: Redis, key_prefix: str) -> Probe:
    # A hash tag: the handlers' script touches three probe keys, legal on a cluster too.
    return Probe(redis, f"{key_prefix}:{{probe}}", key_prefix)


@pytest.fixture
async def serve(
    probe_project: Path, redis_url: str, key_prefix: str, probe: Probe, tmp_path: Path
) -> AsyncIterator[ServeFactory]:
    """Start `runtime serve` processes; each is stopped at teardown, whatever happened."""
    servers: list[Server] = []

    async def start(
        env: Mapping[str, str | None] | None = None, args: Sequence[str] = ()
    ) -> Server:
        http_port, grpc_port = free_port(), free_port()
        environ = clean_env() | {
            "CHANNELKIT_APP": APP,
            "REDIS_URL": redis_url,
            "CHANNELKIT_KEY_PREFIX": key_prefix,
            "HTTP_PORT": str(http_port),
            "GRPC_PORT": str(grpc_port),
            "SHUTDOWN_TIMEOUT": "10",
            "LOG_LEVEL": "INFO",
            "PROBE_REDIS_URL": redis_url,
            "PROBE_PREFIX": probe.prefix,
        }
        for name, value in (env or {}).items():
            if value is None:
                environ.pop(name, None)
            else:
                environ[name] = value
        log = tmp_path / f"serve-{len(servers)}.log"
        began = time.monotonic()
        process = await spawn_serve(probe_project, environ, log, args)
        server = Server(process, log, http_port, grpc_port)
        servers.append(server)
        api = environ.get("ENABLE_API", "true").lower() not in ("0", "false", "no", "off")
        await _wait_ready(server, api)
        server.startup_seconds = time.monotonic() - began
        print(f"runtime serve pid {server.pid} ready in {server.startup_seconds:.2f} s")
        return server

    try:
        yield start
    finally:
        for server in servers:
            await server.stop()


async def _wait_ready(server: Server, api: bool) -> None:
    """Until GET /health/ready answers 200 (or, without the API, the log says ready)."""
    deadline = time.monotonic() + STARTUP_TIMEOUT
    async with httpx.AsyncClient(timeout=2.0) as http:
        while True:
            if server.process.returncode is not None:
                pytest.fail(
                    f"runtime serve exited with {server.process.returncode}:\n{server.output()}"
                )
            if api:
                with contextlib.suppress(httpx.TransportError):
                    response = await http.get(f"{server.http_url}/health/ready")
                    if response.status_code == 200:
                        return
            elif READY_LINE in server.output():
                return
            if time.monotonic() > deadline:
                pytest.fail(
                    f"runtime serve not ready after {STARTUP_TIMEOUT} s:\n{server.output()}"
                )
            await asyncio.sleep(0.05)


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "slow: takes seconds of real time (sleeping jobs)")


@pytest.fixture
async def http_without_redis() -> AsyncIterator[httpx.AsyncClient]:
    """The reference app's HTTP routes on uvicorn (a real socket), with a Client whose
    Redis port has nobody listening."""
    from generated import routes

    async def ready() -> None:
        return None

    dead = free_port()  # bound, then closed: nothing listens there
    client = Client(Redis.from_url(f"redis://127.0.0.1:{dead}/0", socket_connect_timeout=1))
    app = build_http_app(routes.CONTROLLERS, client, ready, metrics=Metrics(), channels=["sms"])
    port = free_port()
    server = uvicorn.Server(
        uvicorn.Config(app, host="127.0.0.1", port=port, log_config=None, lifespan="on")
    )
    task = asyncio.create_task(server.serve())
    try:
        async with asyncio.timeout(10):
            while not server.started:
                assert not task.done(), "uvicorn did not start"
                await asyncio.sleep(0.01)
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}") as http:
            yield http
    finally:
        server.should_exit = True
        await task
        await client.close()
