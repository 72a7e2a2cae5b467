"""`service SchedulesService`: upsert, get, list, pause, resume, remove over real gRPC.

The checks are in grpc_schedules_checks.py, in-process with `runtime.testing.running_app` on the
repository's `generated` app. They run as a pytest process of their own, on this session's
Redis: `generated.proto` registers `channels.v1` in protobuf's default pool, and so does
the sample package of test_grpc_payload, so the two cannot share one process.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from tests.runtime.conftest import clean_env

ROOT = Path(__file__).resolve().parents[2]
CHECKS = Path(__file__).with_name("grpc_schedules_checks.py")


@pytest.mark.timeout(180)
def test_schedules_service_checks_pass_in_their_own_process(redis_url: str) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "pytest", str(CHECKS), "-q", "-p", "no:cacheprovider"],
        cwd=ROOT,
        env=clean_env() | {"REDIS_URL": redis_url},
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=170,
        check=False,
    )
    output = result.stdout + result.stderr
    assert result.returncode == 0, output
    assert " passed" in output
    assert " failed" not in output, output
