"""Request options and response bodies shared by every channel's HTTP routes.

Every body the API answers with is a dataclass here, so that the OpenAPI document names
its type (`JobStatus`, `ErrorBody`, ...) and client generators get typed responses. The
job records are the engine's (`runtime.engine.jobs`), copied into these at the boundary:
the HTTP contract changes only when this module does.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Annotated, Any

from litestar.openapi import ResponseSpec
from litestar.params import HeaderParameter, KwargDefinition, QueryParameter

from runtime.engine.jobs import ChannelCounts, JobError, JobInfo, JobState
from runtime.engine.limits import HIGHEST_PRIORITY, LOWEST_PRIORITY, MAX_TIMEOUT_MS

__all__ = [
    "BAD_REQUEST",
    "ENQUEUE_ERRORS",
    "INVALID",
    "UNAVAILABLE",
    "ChannelSummary",
    "DelayMs",
    "EnqueuedBatch",
    "EnqueuedJob",
    "ErrorBody",
    "FieldError",
    "IdempotencyKey",
    "JobErrorRecord",
    "JobList",
    "JobStatus",
    "LimiterWindow",
    "RetryAccepted",
    "ValidationErrorBody",
]


def _doc(text: str) -> KwargDefinition:
    """A field's description in the OpenAPI document."""
    return KwargDefinition(description=text)


@dataclass(frozen=True, slots=True)
class ErrorBody:
    """The body of a 4xx or 503 answer: `{"status_code": 404, "detail": "no job ..."}`."""

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


BAD_REQUEST = {
    400: ResponseSpec(ErrorBody, description="The request could not be read as HTTP asks")
}
UNAVAILABLE = {
    503: ResponseSpec(
        ErrorBody, description="Redis is unavailable; try again after Retry-After seconds"
    )
}
INVALID = {
    422: ResponseSpec(
        ValidationErrorBody,
        description="Invalid body, payload or parameter; each bad field is named",
    )
}
ENQUEUE_ERRORS = {
    **BAD_REQUEST,
    413: ResponseSpec(ErrorBody, description="The body is larger than MAX_BODY_SIZE"),
    415: ResponseSpec(
        ValidationErrorBody, description="The body is not sent as Content-Type: application/json"
    ),
    **INVALID,
    **UNAVAILABLE,
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


@dataclass(frozen=True, slots=True)
class RetryAccepted:
    """202 of a retry: the job is back on the stream."""

    id: str
    state: JobState


@dataclass(frozen=True, slots=True)
class CancelAccepted:
    """What a cancel did: `cancelled` true when the job is cancelled now (it was waiting
    or delayed); false when it runs and its worker was told to cancel it (the job's
    state becomes cancelled when the handler has stopped)."""

    id: str
    cancelled: bool
    state: Annotated[JobState, _doc("The state the job was in")]


@dataclass(frozen=True, slots=True)
class BulkDone:
    """How many jobs a bulk operation changed."""

    channel: str
    count: int


@dataclass(frozen=True, slots=True)
class JobEventMessage:
    """The `data` of one Server-Sent Event (runtime.engine.events.JobEvent as JSON)."""

    id: Annotated[str, _doc("The event id `<ms>-<seq>`: resume after it")]
    channel: str
    event: Annotated[
        str,
        _doc(
            "waiting, delayed, active, progress, completed, retrying, failed, "
            "stalled, cancelled, retried, discarded, paused, resumed; or gap"
        ),
    ]
    job_id: Annotated[str | None, _doc("None for the channel's own events")]
    at_ms: Annotated[int, _doc("When Redis recorded it (ms since the epoch)")]
    data: Annotated[
        dict[str, Any],
        _doc(
            "What the event adds: priority, due_at, attempt, progress, error "
            "{type, message}, stalled; for a gap: missed (how many), after, resumed_at"
        ),
    ]


@dataclass(frozen=True, slots=True)
class JobErrorRecord:
    """One failed run (or a job that could not run)."""

    type: Annotated[
        str,
        _doc(
            "The exception's qualified name, or Channelkit's own reason: "
            "payload_invalid, message_invalid, stalled"
        ),
    ]
    message: str
    traceback: Annotated[str, _doc("The end of the formatted traceback (8,000 characters)")]
    attempt: Annotated[int, _doc("The run it ended; 0: the job never ran")]
    at: Annotated[int, _doc("Milliseconds since the epoch; 0: unknown")]

    @classmethod
    def of(cls, error: JobError) -> JobErrorRecord:
        return cls(error.type, error.message, error.traceback, error.attempt, error.at)


@dataclass(frozen=True, slots=True)
class JobStatus:
    """One job: state, attempts, result, errors, timestamps."""

    id: str
    channel: str
    state: JobState
    attempts: Annotated[int, _doc("Runs started")]
    failures: Annotated[int, _doc("Runs that failed since the job was enqueued or retried")]
    enqueued_at: datetime | None
    started_at: datetime | None
    finished_at: datetime | None
    due_at: Annotated[datetime | None, _doc("When a delayed job or retry is due")]
    result: Annotated[Any, _doc("What the handler returned, as JSON; null until completed")]
    error: JobErrorRecord | None
    errors: Annotated[list[JobErrorRecord], _doc("The last 10 errors, oldest first")]
    payload: Annotated[
        Any,
        _doc("The payload while the job waits, is delayed, failed or cancelled; otherwise null"),
    ]
    priority: Annotated[int, _doc("1 starts first, 10 last")]
    progress: Annotated[Any, _doc("What the handler last reported: a number or an object")]
    cancel_requested: Annotated[
        bool, _doc("Running, and its worker was told to cancel it (POST .../cancel)")
    ]

    @classmethod
    def of(cls, info: JobInfo) -> JobStatus:
        return cls(
            id=info.id,
            channel=info.channel,
            state=info.state,
            attempts=info.attempts,
            failures=info.failures,
            enqueued_at=info.enqueued_at,
            started_at=info.started_at,
            finished_at=info.finished_at,
            due_at=info.due_at,
            result=info.result,
            error=JobErrorRecord.of(info.error) if info.error is not None else None,
            errors=[JobErrorRecord.of(error) for error in info.errors],
            payload=info.payload,
            priority=info.priority,
            progress=info.progress,
            cancel_requested=info.cancel_requested,
        )


@dataclass(frozen=True, slots=True)
class JobList:
    """A page of one channel's jobs in one state."""

    channel: str
    state: JobState
    jobs: list[JobStatus]


@dataclass(frozen=True, slots=True)
class LimiterWindow:
    """The channel's global rate-limit window (zeros without a limiter)."""

    granted_in_window: Annotated[int, _doc("Starts granted in the current window")]
    window_resets_in_ms: Annotated[int, _doc("Time until the window expires")]

    @classmethod
    def of(cls, raw: Mapping[str, Any]) -> LimiterWindow:
        return cls(
            granted_in_window=int(raw.get("granted_in_window", 0)),
            window_resets_in_ms=int(raw.get("window_resets_in_ms", 0)),
        )


@dataclass(frozen=True, slots=True)
class ChannelSummary:
    """Jobs per state of one channel, and its rate limiter's window."""

    channel: str
    waiting: int
    active: int
    delayed: int
    completed: int
    failed: int
    cancelled: int
    paused: Annotated[bool, _doc("No process starts the channel's jobs (POST .../pause)")]
    held_back_ms: Annotated[
        int, _doc("Time left of a handler's RetryAfter(scope='channel'); 0: none")
    ]
    waiting_by_priority: Annotated[
        dict[str, int], _doc("Waiting jobs per priority (only priorities with jobs)")
    ]
    limiter: LimiterWindow | None

    @classmethod
    def of(cls, counts: ChannelCounts) -> ChannelSummary:
        return cls(
            channel=counts.channel,
            waiting=counts.waiting,
            active=counts.active,
            delayed=counts.delayed,
            completed=counts.completed,
            failed=counts.failed,
            cancelled=counts.cancelled,
            paused=counts.paused,
            held_back_ms=counts.held_back_ms,
            waiting_by_priority={
                str(priority): count
                for priority, count in sorted(counts.waiting_by_priority.items())
            },
            limiter=LimiterWindow.of(counts.limiter) if counts.limiter is not None else None,
        )


# Parameters of the enqueue routes: plain parameters, not a dependency, because Litestar
# resolves two dependencies of one handler in a task group of their own per request.
IdempotencyKey = Annotated[
    str | None,
    HeaderParameter(
        name="Idempotency-Key",
        max_length=200,
        # Visible ASCII only: header bytes beyond it arrive decoded as Latin-1, so a UTF-8
        # key would silently become a different (mojibake) job id.
        pattern=r"^[\x21-\x7e]+$",
        description="Client-chosen job id (visible ASCII, at most 200 characters): "
        "enqueuing the same key again returns the same job.",
    ),
]
DelayMs = Annotated[
    int | None,
    QueryParameter(
        ge=0, description="Run the job no earlier than this many milliseconds from now."
    ),
]
Priority = Annotated[
    int | None,
    QueryParameter(
        ge=HIGHEST_PRIORITY,
        le=LOWEST_PRIORITY,
        description="1 starts first, 10 last (FIFO within one priority); without it the "
        "channel's default.",
    ),
]
TimeoutMs = Annotated[
    int | None,
    QueryParameter(
        ge=1,
        le=MAX_TIMEOUT_MS,
        description="Cancel a run of this job after this many milliseconds (error type "
        "`timeout`); without it the channel's timeout.",
    ),
]
BatchBody = list[dict[str, Any]] | dict[str, Any]
"""A batch: a list of payloads, or `{"jobs": [{"payload": ..., "job_id": ..., "delay_ms":
..., "priority": ..., "timeout_ms": ...}]}` for items with options of their own."""
