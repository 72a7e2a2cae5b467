"""The reference app (cwd: the repository, app `generated`) served by `runtime serve`.

One process per test module, on free loopback ports, with the session's Redis (the
`redis_url` fixture) and a key prefix of its own; stopped by pid at the end of the module.
Started with plain `subprocess` so that synchronous tests (schemathesis, hypothesis) can
use it as well as async ones.
"""

from __future__ import annotations

import signal
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.conftest import ROOT, delete_keys, new_prefix
from tests.runtime.conftest import (
    clean_env,
    free_port,
    start_serve_blocking,
    wait_ready_blocking,
)

MAX_BODY_SIZE = 64 * 1024  # small, so the oversized cases stay cheap


@dataclass(frozen=True)
class ReferenceServer:
    process: subprocess.Popen[bytes]
    log: Path
    http_port: int
    grpc_port: int
    key_prefix: str

    @property
    def http_url(self) -> str:
        return f"http://127.0.0.1:{self.http_port}"

    @property
    def grpc_target(self) -> str:
        return f"127.0.0.1:{self.grpc_port}"

    def output(self) -> str:
        return self.log.read_text(errors="replace")


@pytest.fixture(scope="module")
def reference_server(
    redis_url: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[ReferenceServer]:
    http_port, grpc_port = free_port(), free_port()
    key_prefix = new_prefix("fuzz-")
    log = tmp_path_factory.mktemp("fuzz") / "serve.log"
    environ = clean_env() | {
        "CHANNELKIT_APP": "generated",
        "REDIS_URL": redis_url,
        "CHANNELKIT_KEY_PREFIX": key_prefix,
        "HTTP_PORT": str(http_port),
        "GRPC_PORT": str(grpc_port),
        "MAX_BODY_SIZE": str(MAX_BODY_SIZE),
        "SHUTDOWN_TIMEOUT": "5",
        "LOG_LEVEL": "WARNING",
    }
    process = start_serve_blocking(ROOT, environ, log)
    server = ReferenceServer(process, log, http_port, grpc_port, key_prefix)
    try:
        wait_ready_blocking(server.process, server.http_url, server.output)
        yield server
    finally:
        _stop(process)
        delete_keys(redis_url, f"{key_prefix}:*")


def _stop(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
