"""Request options and response bodies shared by every channel's HTTP routes."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated

from litestar.openapi import ResponseSpec
from litestar.params import HeaderParameter, QueryParameter

__all__ = [
    "ENQUEUE_ERRORS",
    "DelayMs",
    "EnqueuedBatch",
    "EnqueuedJob",
    "ErrorBody",
    "FieldError",
    "IdempotencyKey",
    "ValidationErrorBody",
]


@dataclass(frozen=True, slots=True)
class ErrorBody:
    """The body of a 4xx answer."""

    status_code: int
    detail: str


@dataclass(frozen=True, slots=True)
class FieldError:
    field: str
    message: str


@dataclass(frozen=True, slots=True)
class ValidationErrorBody:
    """422: the payload breaks the channel's schema; nothing was enqueued."""

    detail: str
    errors: list[FieldError]


ENQUEUE_ERRORS = {
    413: ResponseSpec(ErrorBody, description="The body is larger than MAX_BODY_SIZE"),
    422: ResponseSpec(ValidationErrorBody, description="Invalid payload; each bad field is named"),
}
"""What the enqueue routes answer besides 202, for the OpenAPI document."""


@dataclass(frozen=True, slots=True)
class EnqueuedJob:
    id: str
    channel: str


@dataclass(frozen=True, slots=True)
class EnqueuedBatch:
    ids: list[str]
    channel: str


# Parameters of the enqueue routes: plain parameters, not a dependency, because Litestar
# resolves two dependencies of one handler in a task group of their own per request.
IdempotencyKey = Annotated[
    str | None,
    HeaderParameter(
        name="Idempotency-Key",
        max_length=200,
        description="Client-chosen job id: enqueuing the same key again returns the same job.",
    ),
]
DelayMs = Annotated[
    int | None,
    QueryParameter(
        ge=0, description="Run the job no earlier than this many milliseconds from now."
    ),
]
