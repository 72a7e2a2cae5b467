"""LoopMonitor: a blocked event loop is reported with where it was blocked and the jobs
running then; a paused process is reported as a pause, not blamed on a handler."""

from __future__ import annotations

import asyncio
import logging
import signal
import subprocess
import sys
import time

import pytest

from runtime.engine.loop_monitor import BLOCKED_S, LoopMonitor


def blocking_handler(seconds: float) -> None:
    time.sleep(seconds)  # what a handler calling time.sleep does


async def test_a_blocked_loop_is_reported_with_where_and_the_running_jobs(
    caplog: pytest.LogCaptureFixture,
) -> None:
    running = {"email": ["job-7"], "sms": []}
    monitor = LoopMonitor(lambda: running)
    with caplog.at_level(logging.WARNING, logger="channelkit.worker"):
        monitor.start()
        await asyncio.sleep(0.3)  # a first tick sets the expectation
        blocking_handler(BLOCKED_S + 0.5)
        running = {"email": [], "sms": []}  # the job ended before the loop turned again
        await asyncio.sleep(0.4)
        await monitor.stop()
    reports = [r.getMessage() for r in caplog.records if "event loop was blocked" in r.getMessage()]
    assert len(reports) == 1, reports
    assert "blocking_handler" in reports[0]
    assert "channel 'email'" in reports[0]
    assert "job-7" in reports[0]
    assert "sms" not in reports[0]
    assert monitor.longest_block_s >= BLOCKED_S


async def test_an_idle_loop_reports_nothing(caplog: pytest.LogCaptureFixture) -> None:
    monitor = LoopMonitor(dict)
    with caplog.at_level(logging.WARNING, logger="channelkit.worker"):
        monitor.start()
        await asyncio.sleep(0.6)
        await monitor.stop()
    assert not [r for r in caplog.records if "blocked" in r.getMessage()]


PAUSED_PROCESS = """
import asyncio, logging, sys
from runtime.engine.loop_monitor import LoopMonitor
logging.basicConfig(stream=sys.stderr, level=logging.WARNING)

async def main() -> None:
    monitor = LoopMonitor(lambda: {"email": ["job-9"]})
    monitor.start()
    print("ready", flush=True)
    await asyncio.sleep(float(sys.argv[1]))
    await monitor.stop()

asyncio.run(main())
"""


def test_a_paused_process_is_reported_as_a_pause() -> None:
    process = subprocess.Popen(
        [sys.executable, "-c", PAUSED_PROCESS, "4"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert process.stdout is not None
        assert process.stdout.readline().strip() == "ready"
        time.sleep(0.5)
        process.send_signal(signal.SIGSTOP)
        time.sleep(BLOCKED_S + 1.0)
        process.send_signal(signal.SIGCONT)
        _, errors = process.communicate(timeout=30)
    finally:
        process.kill()
    assert "no code was seen running: paused" in errors, errors
    assert "event loop was blocked" not in errors, errors
