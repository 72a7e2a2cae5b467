"""A channel's settings as typed data: what the generated registry is made of.

The generator writes one `Channel(...)` per entry in channels.yaml into
`generated/registry.py`; the runtime reads nothing else. Durations are milliseconds.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Generic, Literal, TypeVar

from pydantic import BaseModel

from runtime.engine.context import JobContext
from runtime.engine.limits import DEFAULT_EVENTS_MAX, DEFAULT_PRIORITY
from runtime.engine.schedules import Schedule

__all__ = ["Backoff", "Channel", "Keep", "Limiter", "Retention", "Retry", "Schedule", "Stalled"]

PayloadT = TypeVar("PayloadT", bound=BaseModel)
ResultT = TypeVar("ResultT")


@dataclass(frozen=True, slots=True)
class Limiter:
    """At most `max` jobs start in any window of `duration_ms`, across every process.

    With `key`, each distinct value of that payload field gets a limit of its own.
    """

    max: int
    duration_ms: int
    key: str | None = None


@dataclass(frozen=True, slots=True)
class Stalled:
    """A job whose worker stopped heartbeating for `interval_ms` is taken over by another
    worker; after `max_count` such take-overs it fails with the reason "stalled"."""

    interval_ms: int
    max_count: int


@dataclass(frozen=True, slots=True)
class Backoff:
    """Wait before retry n (n from 1): fixed: `delay_ms`; exponential: `delay_ms * 2**(n-1)`.

    Capped at `max_delay_ms` when set; `jitter` (0..1) randomises that share of the wait.
    """

    type: Literal["fixed", "exponential"]
    delay_ms: int
    max_delay_ms: int | None = None
    jitter: float = 0.0


@dataclass(frozen=True, slots=True)
class Retry:
    """`attempts` counts the first run: 1 means never retry."""

    attempts: int
    backoff: Backoff


@dataclass(frozen=True, slots=True)
class Retention:
    """Keep at most `count` finished jobs, none older than `age_ms`; None means no bound."""

    count: int | None
    age_ms: int | None


@dataclass(frozen=True, slots=True)
class Keep:
    completed: Retention
    failed: Retention
    events: int = DEFAULT_EVENTS_MAX
    """Job events the channel's event stream keeps (at least; 0: none are written)."""


@dataclass(frozen=True, slots=True)
class Channel(Generic[PayloadT, ResultT]):
    """One queue: its payload type, the function that processes a job, and its settings."""

    name: str
    description: str
    payload_model: type[PayloadT]
    result_model: type[BaseModel] | None
    process: Callable[[PayloadT, JobContext[Any]], Awaitable[ResultT]]
    concurrency: int
    limiter: Limiter | None
    stalled: Stalled
    retry: Retry
    keep: Keep
    batch_max: int
    priority: int = DEFAULT_PRIORITY  # of jobs enqueued without one: 1 starts first, 10 last
    timeout_ms: int | None = None  # a run longer than this is cancelled and fails "timeout"
    schedules: tuple[Schedule, ...] = ()
    """channels.yaml's `schedules:`, upserted at every `runtime serve` start."""
