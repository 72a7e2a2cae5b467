"""What the chaos test (test_chaos.py) drives besides `runtime serve`; no tests here.

- `ChaosRedis`: a redis-server of the test's own on a free loopback port, with an
  append-only file fsynced once a second (`appendfsync everysec`, what docs/operations.md
  recommends) or no persistence at all; it can be crashed (SIGKILL) and started again on
  the same port and folder, or started on another port to inspect what survived a crash.
- `ApiEnqueuer`: enqueues the jobs through the served processes' HTTP and gRPC APIs, round
  robin over the live processes. A request that fails in transport, times out, or is
  answered 503 / UNAVAILABLE is sent again, to the next process, with the same id
  (`Idempotency-Key` / `job_id`: enqueue is idempotent by id). A job is acknowledged when
  an API answered 202 / OK; each acknowledgment goes to the ledger (a hash in the
  session's Redis, outside the Redis under test): job id -> `<monotonic time> <api> <pid>`.
  Any other answer (an HTTP 500, a gRPC INTERNAL: a Redis error that escaped the mapping
  to 503 / UNAVAILABLE) is a bug: it is kept in `unexpected` with the answering process,
  the job is sent again, and the tests assert that `unexpected` stayed empty.
- `held_jobs`: the job ids delivered to a process and not acknowledged (its consumers'
  pending entries, mapped to the `task_id` of each stream entry).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import signal
import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import grpc
import httpx
import pytest
from redis import Redis as SyncRedis
from redis.asyncio import Redis
from redis.exceptions import RedisError, ResponseError

from runtime.engine.keys import CONSUMER_GROUP, ChannelKeys
from tests.runtime.conftest import Server, die_with_parent, import_from_project
from tests.runtime.test_reliability_support import redis_server

REQUEST_TIMEOUT = 1.0  # a paused process answers nothing: try the next one after this
RETRY_EVERY = 0.2  # between two tries of one job
ENQUEUE_GIVE_UP = 60.0  # one job not acknowledged for this long: the run fails
_RETRY_CODES = frozenset({grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED})


class ChaosRedis:
    """redis-server on 127.0.0.1:`port`, its files in `folder`; `appendonly` with
    `appendfsync everysec`, or nothing persisted."""

    def __init__(self, folder: Path, port: int, *, appendonly: bool) -> None:
        self.folder = folder
        self.port = port
        self.appendonly = appendonly
        self.process: subprocess.Popen[bytes] | None = None
        self.starts = 0

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self, port: int | None = None) -> ChaosRedis:
        """Start it (on `port` instead, for an inspection nobody else connects to)."""
        self.folder.mkdir(parents=True, exist_ok=True)
        self.starts += 1
        listen = port or self.port
        command = [
            redis_server(),
            "--port", str(listen),
            "--bind", "127.0.0.1",
            "--dir", str(self.folder),
            "--save", "",
            "--appendonly", "yes" if self.appendonly else "no",
            "--appendfsync", "everysec",
            "--maxmemory-policy", "noeviction",
            "--logfile", str(self.folder / f"redis-{self.starts}.log"),
            "--daemonize", "no",
        ]  # fmt: skip
        self.process = subprocess.Popen(
            command,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            preexec_fn=die_with_parent,
        )
        deadline = time.monotonic() + 10.0
        with SyncRedis(port=listen, socket_timeout=5, socket_connect_timeout=5) as client:
            while True:
                with contextlib.suppress(RedisError, OSError):
                    if client.ping():
                        break
                if self.process.poll() is not None or time.monotonic() > deadline:
                    self.stop(signal.SIGKILL)
                    pytest.fail(f"redis-server did not start on port {listen}")
                time.sleep(0.02)
            config = client.config_get("append*")
        expected = {"appendonly": "yes" if self.appendonly else "no", "appendfsync": "everysec"}
        assert {k: config[k] for k in expected} == expected, config
        return self

    def stop(self, signum: int = signal.SIGTERM) -> None:
        """Send `signum` (SIGKILL: a crash, nothing flushed) and wait for the exit."""
        process = self.process
        if process is None:
            return
        if process.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                process.send_signal(signum)
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        self.process = None


def _str(value: object) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def _pid_of(consumer: object) -> int:
    """The pid in a consumer name `<host>-<pid>-<random>` (runtime.engine.workers)."""
    return int(_str(consumer).rsplit("-", 2)[1])


async def _task_ids(admin: Redis, stream: str, entry_ids: list[str]) -> set[str]:
    """The job ids of stream entries (an entry deleted meanwhile was acknowledged)."""
    async with admin.pipeline(transaction=False) as pipe:
        for entry_id in entry_ids:
            pipe.xrange(stream, entry_id, entry_id)
        found = await pipe.execute()
    jobs: set[str] = set()
    for entries in found:
        for _, fields in entries:
            jobs.add(json.loads(fields[b"data"])["task_id"])
    return jobs


async def held_jobs(
    admin: Redis, channels: tuple[str, ...], prefix: str, pid: int | None
) -> set[str]:
    """Job ids delivered to process `pid` (to anyone: None) and not acknowledged."""
    held: set[str] = set()
    for channel in channels:
        stream = ChannelKeys(prefix, channel).stream
        try:
            consumers: list[dict[str, Any]] = await admin.xinfo_consumers(stream, CONSUMER_GROUP)
        except ResponseError:
            continue  # no stream or group (yet)
        for consumer in consumers:
            if pid is not None and _pid_of(consumer["name"]) != pid:
                continue
            entries = await admin.xpending_range(
                stream, CONSUMER_GROUP, min="-", max="+", count=100_000,
                consumername=_str(consumer["name"]),
            )  # fmt: skip
            held |= await _task_ids(admin, stream, [_str(e["message_id"]) for e in entries])
    return held


class ApiEnqueuer:
    """Enqueue jobs through the live processes' HTTP and gRPC APIs (see the module)."""

    def __init__(
        self, project: Path, app: str, live: Callable[[], list[Server]], ledger: Redis, key: str
    ) -> None:
        proto = import_from_project(project, f"{app}.proto")
        self._pb2: Any = proto.channels_pb2
        self._pb2_grpc: Any = proto.channels_pb2_grpc
        self._live = live
        self._ledger = ledger
        self._key = key  # the ledger's hash of acknowledgments
        self._http = httpx.AsyncClient(timeout=REQUEST_TIMEOUT)
        self._channels: dict[str, grpc.aio.Channel] = {}
        self._turn = 0
        self.acked: dict[str, float] = {}  # job id -> monotonic time of the 202 / OK
        self.tries = {"http": 0, "grpc": 0}
        self.refused = {"http": 0, "grpc": 0}  # transport errors, time-outs, 503 / UNAVAILABLE
        # (job id, api, pid of the process, status, body): answers neither 2xx nor 503 /
        # UNAVAILABLE / DEADLINE_EXCEEDED
        self.unexpected: list[tuple[str, str, int, str, str]] = []

    async def close(self) -> None:
        await self._http.aclose()
        for channel in self._channels.values():
            await channel.close()

    def _next(self) -> Server | None:
        live = self._live()
        if not live:
            return None
        self._turn += 1
        return live[self._turn % len(live)]

    async def enqueue(self, channel: str, job_id: str, n: int) -> None:
        """Until an API acknowledges the job; `n` picks the API (even: HTTP, odd: gRPC)."""
        api = "http" if n % 2 == 0 else "grpc"
        deadline = time.monotonic() + ENQUEUE_GIVE_UP
        while True:
            server = self._next()
            if server is not None:
                self.tries[api] += 1
                if api == "http":
                    done = await self._http_once(server, channel, job_id, n)
                else:
                    done = await self._grpc_once(server, channel, job_id, n)
                if done:
                    now = time.monotonic()
                    self.acked[job_id] = now
                    await self._ledger.hset(self._key, job_id, f"{now:.6f} {api} {server.pid}")
                    return
                self.refused[api] += 1
            if time.monotonic() > deadline:
                answers = [answer for answer in self.unexpected if answer[0] == job_id]
                pytest.fail(
                    f"{job_id}: no API acknowledged it in {ENQUEUE_GIVE_UP} s; "
                    f"unexpected answers: {answers[-3:]}"
                )
            await asyncio.sleep(RETRY_EVERY)

    async def _http_once(self, server: Server, channel: str, job_id: str, n: int) -> bool:
        try:
            response = await self._http.post(
                f"{server.http_url}/channels/{channel}/jobs",
                json={"id": job_id, "n": n},
                headers={"Idempotency-Key": job_id},
            )
        except httpx.TransportError:
            return False
        if response.status_code == 503:
            return False
        if response.status_code != 202:
            self.unexpected.append(
                (job_id, "http", server.pid, str(response.status_code), response.text)
            )
            return False
        assert response.json()["id"] == job_id, response.text
        return True

    async def _grpc_once(self, server: Server, channel: str, job_id: str, n: int) -> bool:
        target = server.grpc_target
        if target not in self._channels:
            self._channels[target] = grpc.aio.insecure_channel(target)
        stub = self._pb2_grpc.ChannelsServiceStub(self._channels[target])
        name = channel.capitalize()
        payload = getattr(self._pb2, f"{name}Payload")(id=job_id, n=n)
        request = getattr(self._pb2, f"Enqueue{name}Request")(payload=payload, job_id=job_id)
        try:
            reply = await getattr(stub, f"Enqueue{name}")(request, timeout=REQUEST_TIMEOUT)
        except grpc.aio.AioRpcError as error:
            if error.code() not in _RETRY_CODES:
                self.unexpected.append(
                    (job_id, "grpc", server.pid, error.code().name, str(error.details()))
                )
            return False
        assert reply.job_id == job_id, reply
        return True
