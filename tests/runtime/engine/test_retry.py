"""`backoff_ms` (runtime/engine/retry.py), the table of docs/delivery.md#retries-and-backoff:
fixed or doubling, capped by `max_delay`, then shortened by up to `jitter` of the wait."""

from __future__ import annotations

import pytest

from runtime.engine.channel import Backoff
from runtime.engine.retry import backoff_ms

SAMPLES = 2000


def test_fixed_waits_the_delay_after_every_failure() -> None:
    backoff = Backoff(type="fixed", delay_ms=250)
    assert [backoff_ms(backoff, n) for n in range(1, 6)] == [250] * 5


def test_exponential_doubles_from_the_delay() -> None:
    backoff = Backoff(type="exponential", delay_ms=100)
    assert [backoff_ms(backoff, n) for n in range(1, 6)] == [100, 200, 400, 800, 1600]


def test_max_delay_caps_the_doubling() -> None:
    backoff = Backoff(type="exponential", delay_ms=1000, max_delay_ms=5000)
    assert [backoff_ms(backoff, n) for n in range(1, 7)] == [1000, 2000, 4000, 5000, 5000, 5000]
    assert backoff_ms(backoff, 60) == 5000  # 2**59 s would be the uncapped wait


@pytest.mark.parametrize(("failures", "wait"), [(1, 1000), (2, 2000), (7, 60_000)])
def test_jitter_only_shortens_the_capped_wait(failures: int, wait: int) -> None:
    """The reference defaults: exponential from 1 s, max 1 min, jitter 0.2: [0.8 w, w]."""
    backoff = Backoff(type="exponential", delay_ms=1000, max_delay_ms=60_000, jitter=0.2)
    waits = [backoff_ms(backoff, failures) for _ in range(SAMPLES)]
    assert min(waits) >= int(0.8 * wait), min(waits)
    assert max(waits) <= wait, max(waits)
    # Randomised, and over most of the range (2,000 uniform draws: the chance that all
    # land in one half is 2**-1999).
    assert min(waits) < 0.9 * wait < max(waits)


def test_full_jitter_can_reach_zero_but_never_exceeds_the_wait() -> None:
    backoff = Backoff(type="fixed", delay_ms=1000, jitter=1.0)
    waits = [backoff_ms(backoff, 1) for _ in range(SAMPLES)]
    assert all(0 <= wait <= 1000 for wait in waits)
    assert min(waits) < 100
