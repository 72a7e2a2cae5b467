"""Request options and response bodies shared by every channel's HTTP routes."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated

from litestar.params import HeaderParameter, QueryParameter

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


# HeaderParameter and QueryParameter: Parameter(header=..., query=...) is deprecated since
# Litestar 2.25 and its DeprecationWarning breaks imports under `filterwarnings = error`.
def job_options(
    idempotency_key: Annotated[
        str | None,
        HeaderParameter(
            name="Idempotency-Key",
            required=False,
            max_length=200,
            description="Client-chosen job id: enqueuing the same key again returns the same job.",
        ),
    ] = None,
    delay_ms: Annotated[
        int | None,
        QueryParameter(
            name="delay_ms",
            required=False,
            ge=0,
            description="Run the job no earlier than this many milliseconds from now.",
        ),
    ] = None,
) -> JobOptions:
    """Litestar dependency `options` of the enqueue routes."""
    return JobOptions(job_id=idempotency_key, delay_ms=delay_ms)
