"""One data folder, one owner; busy ports refused up front; the embedded Redis stops last.

Real `runtime serve` processes on the probe project, each with an embedded Redis in a
data folder of the test's own.
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
from pathlib import Path

import httpx
from redis.asyncio import Redis

from tests.runtime.conftest import (
    APP,
    STARTUP_TIMEOUT,
    STOP_TIMEOUT,
    ServeFactory,
    Server,
    _wait_ready,
    clean_env,
    die_with_parent,
    free_port,
    spawn_serve,
)


def embedded_env(data_dir: Path, key_prefix: str, **extra: str) -> dict[str, str]:
    return clean_env() | {
        "CHANNELKIT_APP": APP,
        "CHANNELKIT_DATA_DIR": str(data_dir),
        "CHANNELKIT_KEY_PREFIX": key_prefix,
        "HTTP_PORT": str(free_port()),
        "GRPC_PORT": str(free_port()),
        "PROBE_PREFIX": f"{key_prefix}:probe",
        **extra,
    }


async def refused(project: Path, environ: dict[str, str], log: Path) -> tuple[int, str]:
    process = await spawn_serve(project, environ, log)
    code = await asyncio.wait_for(process.wait(), STARTUP_TIMEOUT)
    return code, read(log)


def read(log: Path) -> str:
    return log.read_text(errors="replace")


async def test_a_second_serve_in_the_same_data_folder_is_refused_and_leaves_the_first_alone(
    serve: ServeFactory, probe_project: Path, key_prefix: str, tmp_path: Path
) -> None:
    data = tmp_path / "data"
    first = await serve(env={"REDIS_URL": None, "CHANNELKIT_DATA_DIR": str(data)})
    assert f"redis-cli -s {data.resolve() / 'redis.sock'}" in first.output()

    code, output = await refused(
        probe_project, embedded_env(data, key_prefix), tmp_path / "second.log"
    )

    assert code == 2, output
    assert f"is in use by another runtime serve (pid {first.pid})" in output
    assert "Traceback" not in output
    redis = Redis(unix_socket_path=str(data / "redis.sock"))
    try:
        assert await redis.ping()
    finally:
        await redis.aclose()
    async with httpx.AsyncClient(base_url=first.http_url) as http:
        assert (await http.get("/health/ready")).status_code == 200


async def test_a_busy_port_is_one_line_exit_2_before_redis_starts(
    serve: ServeFactory, probe_project: Path, key_prefix: str, tmp_path: Path
) -> None:
    first = await serve()
    data = tmp_path / "data"
    environ = embedded_env(data, key_prefix, GRPC_PORT=str(first.grpc_port))

    code, output = await refused(probe_project, environ, tmp_path / "second.log")

    assert code == 2, output
    assert f"the gRPC port 127.0.0.1:{first.grpc_port} is in use" in output
    assert "GRPC_PORT" in output
    assert "Traceback" not in output
    assert not (data / "redis.sock").exists()
    assert not (data / "redis.log").exists()


async def test_sigterm_to_the_process_group_stops_redis_after_the_workers(
    probe_project: Path, key_prefix: str, tmp_path: Path
) -> None:
    data = tmp_path / "data"
    socket_url = f"unix://{data.resolve() / 'redis.sock'}"
    environ = embedded_env(data, key_prefix, SHUTDOWN_TIMEOUT="10", PROBE_REDIS_URL=socket_url)
    log = tmp_path / "serve.log"
    with log.open("wb") as output:
        # As `make run` in a terminal: serve leads a process group of its own.
        process = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "runtime",
            "serve",
            cwd=probe_project,
            env=environ,
            stdin=subprocess.DEVNULL,
            stdout=output,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            preexec_fn=die_with_parent,
        )
    server = Server(process, log, int(environ["HTTP_PORT"]), int(environ["GRPC_PORT"]))
    try:
        await _wait_ready(server, api=True)
        async with httpx.AsyncClient(base_url=server.http_url) as http:
            response = await http.post("/channels/slow/jobs", json={"id": "a", "seconds": 0.5})
            assert response.status_code == 202, response.text
        os.killpg(process.pid, signal.SIGTERM)
        code = await asyncio.wait_for(process.wait(), STOP_TIMEOUT)
    finally:
        await server.stop()
    output_text = read(log)
    assert code == 0, output_text
    assert "redis.sock" in output_text
    assert "Error 2 connecting" not in output_text
    assert "failed" not in output_text.lower(), output_text
    assert "shutdown timeout" not in output_text
