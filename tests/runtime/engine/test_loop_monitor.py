"""LoopMonitor: a blocked event loop is reported, with the jobs running then."""

from __future__ import annotations

import asyncio
import logging
import time

import pytest

from runtime.engine.loop_monitor import BLOCKED_S, LoopMonitor


async def test_a_blocked_loop_is_reported_with_the_running_jobs(
    caplog: pytest.LogCaptureFixture,
) -> None:
    monitor = LoopMonitor(lambda: {"email": ["job-7"], "sms": []})
    with caplog.at_level(logging.WARNING, logger="channelkit.worker"):
        monitor.start()
        await asyncio.sleep(0.3)  # a first tick sets the expectation
        time.sleep(BLOCKED_S + 0.3)  # what a handler calling time.sleep does  # noqa: ASYNC251
        await asyncio.sleep(0.3)
        await monitor.stop()
    reports = [r.getMessage() for r in caplog.records if "event loop was blocked" in r.getMessage()]
    assert len(reports) == 1, reports
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
