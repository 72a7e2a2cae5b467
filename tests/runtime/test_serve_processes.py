"""`runtime serve --processes N`: real supervised processes sharing one HTTP and one gRPC
port; a child killed with SIGKILL comes back; SIGTERM stops them all; a child that
crashes at start again and again makes the supervisor give up with a clear message;
--reload and --processes refuse to combine."""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import httpx

from tests.runtime.conftest import ServeFactory, clean_env, free_port, generate_project

SHOP = Path(__file__).resolve().parent / "resources_project"
SHOP_APP = "shop_generated"

TIMEOUT = 90.0


def children(pid: int) -> list[int]:
    text = Path(f"/proc/{pid}/task/{pid}/children").read_text()
    return sorted(int(part) for part in text.split())


def listening_inodes(port: int) -> set[str]:
    """Socket inodes listening on 127.0.0.1:`port` (state 0A), IPv4 or IPv4-mapped IPv6
    (gRPC binds the latter)."""
    inodes = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for line in Path(table).read_text().splitlines()[1:]:
            fields = line.split()
            address, _, local_port = fields[1].partition(":")
            if address.endswith("0100007F") and int(local_port, 16) == port and fields[3] == "0A":
                inodes.add(fields[9])
    return inodes


def socket_inodes(pid: int) -> set[str]:
    found = set()
    for fd in Path(f"/proc/{pid}/fd").iterdir():
        with contextlib.suppress(OSError):
            match = re.fullmatch(r"socket:\[(\d+)\]", os.readlink(fd))
            if match:
                found.add(match.group(1))
    return found


async def wait_for(condition: Callable[[], bool], what: str) -> None:
    deadline = time.monotonic() + TIMEOUT
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(0.1)


async def all_ready(url: str, count: int = 40) -> None:
    """Until `count` requests in a row, each on a new connection (so spread over the
    children), are answered 200: a child that has just bound the port may still say 503
    for a moment."""
    deadline = time.monotonic() + TIMEOUT
    in_a_row = 0
    while in_a_row < count:
        async with httpx.AsyncClient(timeout=10) as http:
            response = await http.get(f"{url}/health/ready")
        in_a_row = in_a_row + 1 if response.status_code == 200 else 0
        assert time.monotonic() < deadline, f"not ready on every child: {response.text}"


async def test_two_processes_share_the_ports_restart_and_stop(serve: ServeFactory) -> None:
    server = await serve(args=["--processes", "2"])
    await wait_for(lambda: len(children(server.pid)) == 2, "two children")
    first = children(server.pid)

    def listeners(port: int) -> list[int]:
        inodes = listening_inodes(port)
        return [pid for pid in children(server.pid) if socket_inodes(pid) & inodes]

    # Both children listen on the one HTTP port and the one gRPC port.
    await wait_for(lambda: len(listeners(server.http_port)) == 2, "two HTTP listeners")
    await wait_for(lambda: len(listeners(server.grpc_port)) == 2, "two gRPC listeners")
    await all_ready(server.http_url)

    victim = first[0]
    os.kill(victim, signal.SIGKILL)
    await wait_for(
        lambda: len(children(server.pid)) == 2 and victim not in children(server.pid),
        "the killed child replaced",
    )
    await wait_for(lambda: len(listeners(server.http_port)) == 2, "the new child listening")
    await all_ready(server.http_url)
    assert "exited with code -9; starting it again" in server.output()

    survivors = children(server.pid)
    assert await server.stop(signal.SIGTERM, within=60) == 0
    for pid in survivors:
        assert _gone(pid), pid
    assert server.output().count("channelkit.serve: stopped") == 3  # two children, then it


def _gone(pid: int) -> bool:
    """Exited: no such process, or a zombie its parent has not reaped yet."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except FileNotFoundError:
        return True
    return state == "Z"


def test_a_child_failing_at_start_again_and_again_stops_the_supervisor(
    tmp_path: Path, redis_url: str, key_prefix: str
) -> None:
    """Each child's resources factory raises (a crash, exit 1, not a configuration error):
    the supervisor restarts it, then gives up."""
    project = generate_project(SHOP, tmp_path / "shop", SHOP_APP)
    environ = clean_env() | {
        "REDIS_URL": redis_url,
        "CHANNELKIT_KEY_PREFIX": key_prefix,
        "HTTP_PORT": str(free_port()),
        "GRPC_PORT": str(free_port()),
        "CHANNELKIT_APP": SHOP_APP,
        "SHOP_LOG": str(tmp_path / "shop.log"),
        "SHOP_RESOURCES": "raise",
    }
    done = subprocess.run(
        [sys.executable, "-m", "runtime", "serve", "--processes", "2"],
        cwd=project,
        env=environ,
        capture_output=True,
        text=True,
        timeout=240,
        check=False,
    )
    assert done.returncode == 1, done.stderr[-3000:]
    assert "times in a row within 10 s of starting" in done.stderr
    assert "giving up" in done.stderr


def test_a_child_with_a_configuration_error_stops_the_supervisor_at_once(
    tmp_path: Path,
) -> None:
    """An unreachable REDIS_URL is a configuration error (exit 2): restarting cannot help,
    so the supervisor stops everything at once, with 2."""
    closed = free_port()  # nothing listens there
    environ = clean_env() | {
        "REDIS_URL": f"redis://127.0.0.1:{closed}/0",
        "HTTP_PORT": str(free_port()),
        "GRPC_PORT": str(free_port()),
        "CHANNELKIT_APP": "generated",
    }
    done = subprocess.run(
        [sys.executable, "-m", "runtime", "serve", "--processes", "2"],
        cwd=Path(__file__).resolve().parents[2],
        env=environ,
        capture_output=True,
        text=True,
        timeout=240,
        check=False,
    )
    assert done.returncode == 2, done.stderr[-3000:]
    assert "REDIS_URL" in done.stderr
    assert "a configuration error" in done.stderr


def test_reload_and_processes_do_not_combine() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "runtime", "serve", "--reload", "--processes", "2"],
        env=clean_env(),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 2
    assert "--reload and --processes do not combine" in done.stderr
