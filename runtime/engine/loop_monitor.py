"""Notices when the event loop was blocked, and names what blocked it.

A handler that blocks the loop (`time.sleep` in an async handler, synchronous I/O, long
CPU work) stops everything in the process: reads, heartbeats, other jobs. Past the
stalled interval other processes take its jobs over. What a user sees of it otherwise is
a Redis timeout far from the cause.

Two halves: a tick on the loop every TICK_S, and a watchdog thread that, when the tick is
more than BLOCKED_S late, looks at what the loop's thread is executing right then (its
innermost frames) and which jobs are running. When the loop gets going again the tick
reports it. A whole-process pause (SIGSTOP, a frozen VM) stops the watchdog too, so it
sees nothing: that is reported as a pause, not blamed on a handler.
"""

from __future__ import annotations

import asyncio
import logging
import sys
import threading
import time
import traceback
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import FrameType

from runtime.engine.loop import BackgroundLoop

__all__ = ["LoopMonitor"]

logger = logging.getLogger("channelkit.worker")

TICK_S = 0.25
BLOCKED_S = 1.0  # a tick this much late is reported
WATCH_S = 0.1  # how often the watchdog thread looks
_FRAMES_SHOWN = 3

Running = Callable[[], Mapping[str, Sequence[str]]]


@dataclass(frozen=True, slots=True)
class _Seen:
    """What the watchdog saw while the loop was blocked."""

    where: str  # innermost frames of the loop's thread, innermost first
    running: dict[str, list[str]]  # channel -> job ids


class LoopMonitor(BackgroundLoop):
    """Reports a loop wake-up more than BLOCKED_S late, with what was executing then and
    the jobs `running()` lists (channel -> job ids)."""

    def __init__(self, running: Running) -> None:
        super().__init__("loop-monitor")
        self._running = running
        self._expected: float | None = None
        self._ticked = time.monotonic()
        self._seen: _Seen | None = None
        self._halt = threading.Event()
        self._watchdog: threading.Thread | None = None
        self._loop_thread = 0
        self.longest_block_s = 0.0

    def start(self) -> None:
        self._loop_thread = threading.get_ident()
        self._ticked = time.monotonic()
        self._watchdog = threading.Thread(target=self._watch, name="loop-watchdog", daemon=True)
        self._watchdog.start()
        super().start()

    async def stop(self) -> None:
        self._halt.set()
        await super().stop()
        if self._watchdog is not None:
            self._watchdog.join(timeout=1.0)  # wakes within WATCH_S

    async def step(self) -> float:
        now = asyncio.get_running_loop().time()
        if self._expected is not None:
            late = now - self._expected
            if late >= BLOCKED_S:
                self.longest_block_s = max(self.longest_block_s, late)
                self._report(late, self._seen)
        self._seen = None
        self._ticked = time.monotonic()
        self._expected = now + TICK_S
        return TICK_S

    def _watch(self) -> None:
        """The watchdog thread: a snapshot of the loop's thread once per block."""
        while not self._halt.wait(WATCH_S):
            if self._seen is None and time.monotonic() - self._ticked > BLOCKED_S:
                frame = sys._current_frames().get(self._loop_thread)
                self._seen = _Seen(_where(frame), self._running_now())

    def _running_now(self) -> dict[str, list[str]]:
        for _ in range(3):  # the loop may still be changing them: try again
            try:
                return {channel: list(ids) for channel, ids in self._running().items() if ids}
            except RuntimeError:
                continue
        return {}

    def _report(self, late: float, seen: _Seen | None) -> None:
        if seen is None:
            logger.warning(
                "the process did not run for %.1f s and no code was seen running: paused "
                "(SIGSTOP, a frozen VM) or starved of CPU; past the stalled interval, other "
                "processes take this one's jobs over",
                late,
                extra={"blocked_s": round(late, 3)},
            )
            return
        jobs = (
            "; ".join(
                f"channel {channel!r} (its handler), job(s) {', '.join(ids[:5])}"
                + (" ..." if len(ids) > 5 else "")
                for channel, ids in seen.running.items()
            )
            or "no job was running"
        )
        logger.warning(
            "the event loop was blocked for %.1f s in %s: something ran without awaiting "
            "(time.sleep, synchronous I/O or long CPU work in an async handler?); running "
            "then: %s. Use asyncio.sleep / async clients, or asyncio.to_thread for blocking "
            "work: past the stalled interval, other processes take this one's jobs over",
            late,
            seen.where,
            jobs,
            extra={"blocked_s": round(late, 3), "running": seen.running, "where": seen.where},
        )


def _where(frame: FrameType | None) -> str:
    """The innermost frames of a stack, innermost first: `file:line (function)`."""
    if frame is None:
        return "an unknown place"
    frames = traceback.extract_stack(frame)[-_FRAMES_SHOWN:]
    return " <- ".join(
        f"{Path(entry.filename).name}:{entry.lineno} ({entry.name})" for entry in reversed(frames)
    )
