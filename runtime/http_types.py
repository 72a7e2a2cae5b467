"""Request options and response bodies shared by every channel's HTTP routes."""

from __future__ import annotations

from dataclasses import dataclass

from litestar.params import Parameter

__all__ = ["EnqueuedBatch", "EnqueuedJob", "JobOptions", "job_options"]


@dataclass(frozen=True, slots=True)
class EnqueuedJob:
    id: str
    channel: str


@dataclass(frozen=True, slots=True)
class EnqueuedBatch:
    ids: list[str]
    channel: str


@dataclass(frozen=True, slots=True)
class JobOptions:
    job_id: str | None
    delay_ms: int | None


def job_options(
    idempotency_key: str | None = Parameter(
        header="Idempotency-Key",
        default=None,
        required=False,
        max_length=200,
        description="Client-chosen job id: enqueuing the same key again returns the same job.",
    ),
    delay_ms: int | None = Parameter(
        query="delay_ms",
        default=None,
        required=False,
        ge=0,
        description="Run the job no earlier than this many milliseconds from now.",
    ),
) -> JobOptions:
    """Litestar dependency `options` of the enqueue routes."""
    return JobOptions(job_id=idempotency_key, delay_ms=delay_ms)
