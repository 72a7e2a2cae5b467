"""`runtime serve --reload` on a real project folder: a handler edit restarts the server, a
broken channels.yaml is reported while the watcher (and the running server) survive, and
the fix serves again. Every process is stopped by its pid at the end."""

from __future__ import annotations

import contextlib
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest

from tests.runtime.conftest import APP, PROJECT, clean_env, free_port, generate_project

WAIT_S = 45.0  # a bound for each step to fail by, not a speed requirement
_SERVING = re.compile(r"reload: serving \(pid (\d+)\)")


class _Reloading:
    def __init__(self, process: subprocess.Popen[bytes], log: Path, url: str) -> None:
        self.process = process
        self.log = log
        self.url = url

    def output(self) -> str:
        return self.log.read_text(errors="replace")

    def child_pids(self) -> list[int]:
        return [int(pid) for pid in _SERVING.findall(self.output())]

    def wait_for(self, what: str, done: Callable[[], bool]) -> None:
        deadline = time.monotonic() + WAIT_S
        while not done():
            if self.process.poll() is not None:
                pytest.fail(f"the supervisor exited waiting for {what}:\n{self.output()}")
            if time.monotonic() > deadline:
                pytest.fail(f"no {what} after {WAIT_S} s:\n{self.output()}")
            time.sleep(0.1)

    def ready(self) -> bool:
        with contextlib.suppress(httpx.TransportError):
            return httpx.get(f"{self.url}/health/ready", timeout=2).status_code == 200
        return False

    def wait_serving(self, after: int) -> int:
        """Wait for a server started after the `after`th one to be ready; its pid."""
        self.wait_for(f"server number {after + 1}", lambda: len(self.child_pids()) > after)
        self.wait_for("readiness", self.ready)
        return self.child_pids()[after]


@pytest.fixture
def reloading(tmp_path: Path, redis_url: str, key_prefix: str) -> Iterator[tuple[_Reloading, Path]]:
    project = generate_project(PROJECT, tmp_path / "project", APP)
    http_port = free_port()
    environ = clean_env() | {
        "CHANNELKIT_APP": APP,
        "REDIS_URL": redis_url,
        "CHANNELKIT_KEY_PREFIX": key_prefix,
        "HTTP_PORT": str(http_port),
        "GRPC_PORT": str(free_port()),
        "SHUTDOWN_TIMEOUT": "5",
        "PROBE_REDIS_URL": redis_url,
        "PROBE_PREFIX": f"{key_prefix}:probe",
    }
    log = tmp_path / "reload.log"
    with log.open("wb") as output:
        process = subprocess.Popen(
            [sys.executable, "-m", "runtime", "serve", "--reload"],
            cwd=project,
            env=environ,
            stdin=subprocess.DEVNULL,
            stdout=output,
            stderr=subprocess.STDOUT,
        )
    reloading = _Reloading(process, log, f"http://127.0.0.1:{http_port}")
    try:
        yield reloading, project
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(30)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        for pid in reloading.child_pids():  # the supervisor stops them; make sure
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # A zombie of an exited child still answers; its state says so.
    with contextlib.suppress(FileNotFoundError):
        return Path(f"/proc/{pid}/stat").read_text().split()[2] != "Z"
    return False


def test_reload_restarts_on_edits_and_survives_a_broken_config(
    reloading: tuple[_Reloading, Path],
) -> None:
    server, project = reloading
    first = server.wait_serving(after=0)

    handlers = project / "probe" / "handlers.py"
    handlers.write_text(handlers.read_text() + "\n# edited by the reload test\n")
    second = server.wait_serving(after=1)
    assert second != first
    assert not _alive(first), "the first server still runs after the restart"

    config = project / "channels.yaml"
    good = config.read_text()
    config.write_text(good + "\nnot_a_key: [1\n")
    server.wait_for("the configuration error", lambda: "not generated" in server.output())
    assert "YAML syntax error" in server.output()  # runtime generate's message, shown
    assert server.process.poll() is None, "the watcher died on a broken channels.yaml"
    assert server.ready(), "the running server was stopped for a config that did not generate"
    assert server.child_pids() == [first, second]

    config.write_text(good)
    third = server.wait_serving(after=2)
    assert third not in (first, second)
    assert not _alive(second)

    server.process.send_signal(signal.SIGTERM)
    assert server.process.wait(30) == 0
    assert not _alive(third), "stopping the supervisor left its server running"
    assert "reload: stopped" in server.output()
