"""BackgroundLoop: steps repeat until stop; a step that raises is logged and retried."""

from __future__ import annotations

import asyncio
import logging

import pytest

from runtime.engine import loop as loop_module
from runtime.engine.loop import BackgroundLoop


class Flaky(BackgroundLoop):
    """Raises on its first step, then counts."""

    def __init__(self) -> None:
        super().__init__("flaky")
        self.steps = 0
        self.third = asyncio.Event()

    async def step(self) -> float:
        self.steps += 1
        if self.steps == 1:
            raise RuntimeError("a bug in a step")
        if self.steps == 3:
            self.third.set()
        return 0.001


async def test_a_failing_step_is_logged_and_the_loop_goes_on(
    caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(loop_module, "AFTER_BUG_S", 0.01)
    flaky = Flaky()
    with caplog.at_level(logging.ERROR, logger="channelkit.worker"):
        flaky.start()
        async with asyncio.timeout(10):
            await flaky.third.wait()
        await flaky.stop()
    failures = [r for r in caplog.records if "flaky failed" in r.getMessage()]
    assert len(failures) == 1
    assert failures[0].exc_info is not None


async def test_stop_cuts_a_long_sleep_short() -> None:
    class Sleepy(BackgroundLoop):
        async def step(self) -> float:
            return 3600.0

    sleepy = Sleepy("sleepy")
    sleepy.start()
    await asyncio.sleep(0.01)
    async with asyncio.timeout(5):
        await sleepy.stop()
    assert sleepy.stopping
