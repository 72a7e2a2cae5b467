"""`runtime.testing.running_app`: the whole app inside a test's event loop.

The checks live in the test project (project/checks/check_running_app.py) and run as that
project's own pytest process, as a user's suite would: the app imports its generated
proto, and every generated package registers `channels.v1` in protobuf's default pool,
so it cannot share this process with another generated package (test_grpc_payload's).
"""

from __future__ import annotations

import asyncio
import subprocess
import sys
import warnings
from pathlib import Path

import pytest
from redis.asyncio import Redis

from runtime.engine.client import Client
from runtime.engine.metrics import Metrics
from runtime.http.app import build_http_app
from tests.runtime.conftest import (
    APP,
    Probe,
    clean_env,
    die_with_parent,
    events_of,
    import_from_project,
    kill,
)

pytestmark = pytest.mark.timeout(90)

# The settings of this repository's suite: warnings are errors there too.
CHECKS_INI = """\
[pytest]
asyncio_mode = auto
asyncio_default_fixture_loop_scope = function
timeout = 60
filterwarnings = error
"""


async def test_running_app_in_the_projects_own_suite(
    probe_project: Path, redis_url: str, key_prefix: str, probe: Probe, tmp_path: Path
) -> None:
    ini = tmp_path / "pytest.ini"
    ini.write_text(CHECKS_INI)
    env = clean_env() | {
        "REDIS_URL": redis_url,
        "CHANNELKIT_KEY_PREFIX": key_prefix,
        "PROBE_REDIS_URL": redis_url,
        "PROBE_PREFIX": probe.prefix,
    }
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "pytest",
        "checks/check_running_app.py",
        "-c",
        str(ini),
        "--rootdir",
        str(probe_project),
        "-p",
        "no:cacheprovider",
        "-q",
        cwd=probe_project,
        env=env,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        preexec_fn=die_with_parent,
    )
    try:
        out, _ = await asyncio.wait_for(process.communicate(), 80)
    finally:
        kill(process)
    output = out.decode(errors="replace")
    assert process.returncode == 0, output
    assert "3 passed" in output, output

    # The handlers ran inside that pytest process, in its event loop.
    events = await probe.events()
    assert sorted(events_of(events, "fast")) == [
        ("in-grpc", process.pid),
        ("in-http", process.pid),
        ("own-prefix", process.pid),
    ]
    assert len(events_of(events, "end")) == 4
    assert await probe.max_running() <= 3


def test_generated_routes_build_without_deprecation_warnings(probe_project: Path) -> None:
    """Litestar 2.25 deprecates `data` without a body marker and inferred dependencies;
    a warning while building the app breaks every suite that treats warnings as errors."""
    routes = import_from_project(probe_project, f"{APP}.routes")

    async def ready() -> None:
        return None

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        client = Client(Redis.from_url("redis://127.0.0.1:1/0"))  # never connects
        build_http_app(routes.CONTROLLERS, client, ready, metrics=Metrics(), channels=[])
