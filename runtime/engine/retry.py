"""How long a failed job waits before its next run."""

from __future__ import annotations

import random

from runtime.engine.channel import Backoff

__all__ = ["backoff_ms"]


def backoff_ms(backoff: Backoff, failures: int) -> int:
    """Wait before the run after the `failures`-th failure (from 1): fixed or doubling
    from `delay_ms`, capped at `max_delay_ms`, less up to `jitter` of it at random."""
    delay = float(backoff.delay_ms)
    if backoff.type == "exponential":
        delay *= 2 ** (failures - 1)
    if backoff.max_delay_ms is not None:
        delay = min(delay, backoff.max_delay_ms)
    if backoff.jitter:
        delay -= delay * backoff.jitter * random.random()
    return int(delay)
