"""A background task that repeats one step until it is stopped: the shape every
consumer collaborator with a loop shares (heartbeat, reclaimer, reader)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from abc import ABC, abstractmethod

__all__ = ["BackgroundLoop"]

logger = logging.getLogger("channelkit.worker")

AFTER_BUG_S = 1.0


class BackgroundLoop(ABC):
    """Calls `step()` again and again; each step returns how long to sleep before the
    next (a stop cuts the sleep short). `start()` and `stop()` may each be called once."""

    def __init__(self, name: str) -> None:
        self.name = name
        self._stopping = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    @property
    def stopping(self) -> bool:
        return self._stopping.is_set()

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name=self.name)

    async def stop(self) -> None:
        """Ask the loop to end and wait until its current step is over."""
        self._stopping.set()
        if self._task is not None:
            await asyncio.gather(self._task, return_exceptions=True)

    async def sleep(self, seconds: float) -> None:
        """Sleep, but wake at once when the loop is asked to stop."""
        if seconds <= 0:
            return
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._stopping.wait(), timeout=seconds)

    async def _run(self) -> None:
        while not self._stopping.is_set():
            try:
                wait = await self.step()
            except Exception:
                # A bug, not Redis trouble (steps handle that): say so, and keep the
                # loop alive rather than let the worker go on without it.
                logger.exception("%s failed; trying again in %.0f s", self.name, AFTER_BUG_S)
                wait = AFTER_BUG_S
            await self.sleep(wait)

    @abstractmethod
    async def step(self) -> float:
        """One round of work; returns the seconds to wait before the next."""
