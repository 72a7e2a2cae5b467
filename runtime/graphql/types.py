"""The GraphQL output types every generated package shares, and the Long scalar."""

from __future__ import annotations

from datetime import datetime
from enum import Enum
from typing import NewType

import strawberry
from strawberry.scalars import JSON
from strawberry.types.scalar import ScalarDefinition

from runtime.engine.events import GAP, JobEvent
from runtime.engine.jobs import ChannelCounts as ChannelCountsRecord
from runtime.engine.jobs import JobError as JobErrorRecord
from runtime.engine.jobs import JobInfo

__all__ = [
    "JSON",
    "SCALARS",
    "GraphQLBulkResult",
    "GraphQLCancelResult",
    "GraphQLChannelCounts",
    "GraphQLEnqueuedBatch",
    "GraphQLEnqueuedJob",
    "GraphQLJob",
    "GraphQLJobError",
    "GraphQLJobEvent",
    "GraphQLJobEventGap",
    "GraphQLJobEventType",
    "GraphQLJobPage",
    "GraphQLJobState",
    "GraphQLLimiterWindow",
    "GraphQLPriorityCount",
    "Long",
]

_LONG_MIN, _LONG_MAX = -(2**63), 2**63 - 1


def _parse_long(value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValueError(f"Long cannot represent a non-integer value: {value!r}")
    if not _LONG_MIN <= value <= _LONG_MAX:
        raise ValueError(f"Long cannot represent a value outside 64 bits: {value}")
    return value


Long = NewType("Long", int)
"""A 64-bit integer in the schema; its scalar is `SCALARS[Long]` (the schema's scalar map)."""

SCALARS: dict[object, ScalarDefinition] = {
    Long: strawberry.scalar(
        name="Long",
        description="A 64-bit signed integer, as a JSON number (GraphQL's Int has 32 bits).",
        serialize=int,
        parse_value=_parse_long,
    )
}


@strawberry.enum(name="JobState", description="Where a job is in its life.")
class GraphQLJobState(Enum):
    WAITING = "waiting"
    DELAYED = "delayed"
    ACTIVE = "active"
    COMPLETED = "completed"
    FAILED = "failed"
    CANCELLED = "cancelled"


@strawberry.type(
    name="JobError", description="One failed run of a job, or why a job could not run."
)
class GraphQLJobError:
    type: str = strawberry.field(
        description="The exception's qualified name, or payload_invalid, message_invalid, stalled."
    )
    message: str
    traceback: str
    attempt: int = strawberry.field(description="The run it ended; 0: the job never ran.")
    at_ms: Long = strawberry.field(description="Milliseconds since the epoch; 0: unknown.")

    @classmethod
    def of(cls, record: JobErrorRecord) -> GraphQLJobError:
        return cls(
            type=record.type,
            message=record.message,
            traceback=record.traceback,
            attempt=record.attempt,
            at_ms=Long(record.at),
        )


@strawberry.type(name="Job", description="A job: its state, attempts, result and errors.")
class GraphQLJob:
    id: strawberry.ID
    channel: str
    state: GraphQLJobState
    attempts: int = strawberry.field(description="Runs started so far.")
    failures: int = strawberry.field(description="Runs that failed so far.")
    enqueued_at: datetime | None
    started_at: datetime | None
    finished_at: datetime | None
    due_at: datetime | None = strawberry.field(
        description="When a delayed job (or a retry) becomes ready to run."
    )
    result: JSON | None = strawberry.field(description="What the handler returned.")
    error: GraphQLJobError | None = strawberry.field(description="The last failure.")
    errors: list[GraphQLJobError] = strawberry.field(description="Every failure, oldest first.")
    payload: JSON | None = strawberry.field(description="The payload, as JSON.")
    priority: int = strawberry.field(description="1 starts first, 10 last.")
    progress: JSON | None = strawberry.field(
        description="What the handler last reported (a number or an object); null: nothing yet."
    )
    cancel_requested: bool = strawberry.field(
        description="Running, and its worker was told to cancel it (cancelJob); the job "
        "becomes CANCELLED when the handler has stopped."
    )

    @classmethod
    def of(cls, info: JobInfo) -> GraphQLJob:
        return cls(
            id=strawberry.ID(info.id),
            channel=info.channel,
            state=GraphQLJobState(info.state),
            attempts=info.attempts,
            failures=info.failures,
            enqueued_at=info.enqueued_at,
            started_at=info.started_at,
            finished_at=info.finished_at,
            due_at=info.due_at,
            result=info.result,
            error=GraphQLJobError.of(info.error) if info.error is not None else None,
            errors=[GraphQLJobError.of(error) for error in info.errors],
            payload=info.payload,
            priority=info.priority,
            progress=info.progress,
            cancel_requested=info.cancel_requested,
        )


@strawberry.type(
    name="LimiterWindow", description="The global rate limit's current window (zeros without one)."
)
class GraphQLLimiterWindow:
    granted_in_window: int
    window_resets_in_ms: int


@strawberry.type(name="PriorityCount", description="Waiting jobs of one priority.")
class GraphQLPriorityCount:
    priority: int = strawberry.field(description="1 starts first, 10 last.")
    waiting: int


@strawberry.type(
    name="ChannelCounts",
    description="A channel's jobs per state, whether it is paused, and its limiter's window.",
)
class GraphQLChannelCounts:
    channel: str
    waiting: int
    active: int
    delayed: int
    completed: int
    failed: int
    cancelled: int
    paused: bool = strawberry.field(
        description="No process starts the channel's jobs (pauseChannel) until resumeChannel."
    )
    held_back_ms: Long = strawberry.field(
        description='Time left of a handler\'s RetryAfter(scope="channel"); 0: none.'
    )
    waiting_by_priority: list[GraphQLPriorityCount] = strawberry.field(
        description="Waiting jobs per priority, priority 1 first; only priorities with jobs."
    )
    limiter: GraphQLLimiterWindow

    @classmethod
    def of(cls, counts: ChannelCountsRecord) -> GraphQLChannelCounts:
        window = counts.limiter or {}
        return cls(
            channel=counts.channel,
            waiting=counts.waiting,
            active=counts.active,
            delayed=counts.delayed,
            completed=counts.completed,
            failed=counts.failed,
            cancelled=counts.cancelled,
            paused=counts.paused,
            held_back_ms=Long(counts.held_back_ms),
            waiting_by_priority=[
                GraphQLPriorityCount(priority=priority, waiting=waiting)
                for priority, waiting in sorted(counts.waiting_by_priority.items())
            ],
            limiter=GraphQLLimiterWindow(
                granted_in_window=int(window.get("granted_in_window", 0)),
                window_resets_in_ms=int(window.get("window_resets_in_ms", 0)),
            ),
        )


@strawberry.type(name="JobPage", description="One page of a channel's jobs in one state.")
class GraphQLJobPage:
    items: list[GraphQLJob]
    offset: int
    limit: int
    total: int = strawberry.field(description="Jobs in this state now.")
    has_more: bool


@strawberry.type(name="EnqueuedJob", description="A job accepted onto its channel.")
class GraphQLEnqueuedJob:
    id: strawberry.ID
    channel: str


@strawberry.type(
    name="EnqueuedBatch", description="A batch accepted onto its channel, all or nothing."
)
class GraphQLEnqueuedBatch:
    ids: list[strawberry.ID] = strawberry.field(description="In the order of the payloads.")
    channel: str


@strawberry.type(
    name="CancelResult",
    description="What cancelJob did: cancelled at once, or asked the job's worker to stop it.",
)
class GraphQLCancelResult:
    id: strawberry.ID
    channel: str
    cancelled: bool = strawberry.field(
        description="True: cancelled now (it was waiting or delayed). False: it runs, and its "
        "worker was told to cancel it; the job becomes CANCELLED when the handler has stopped."
    )
    state: GraphQLJobState = strawberry.field(description="The state the job was found in.")


@strawberry.type(
    name="BulkResult", description="What a bulk operation on a channel's jobs changed."
)
class GraphQLBulkResult:
    channel: str
    count: int = strawberry.field(description="Jobs changed.")


@strawberry.enum(
    name="JobEventType",
    description="What happened to a job (or, for PAUSED and RESUMED, to its channel); GAP: "
    "events this subscriber missed because the channel's cap trimmed them first.",
)
class GraphQLJobEventType(Enum):
    """The values of runtime.engine.events.EVENT_TYPES and GAP, in that order."""

    WAITING = "waiting"
    DELAYED = "delayed"
    ACTIVE = "active"
    PROGRESS = "progress"
    COMPLETED = "completed"
    RETRYING = "retrying"
    FAILED = "failed"
    STALLED = "stalled"
    CANCELLED = "cancelled"
    RETRIED = "retried"
    DISCARDED = "discarded"
    PAUSED = "paused"
    RESUMED = "resumed"
    GAP = "gap"


@strawberry.type(
    name="JobEventGap",
    description="Events the subscriber missed: the channel's event stream is capped "
    "(`keep.events` in channels.yaml) and trimmed them before they were read.",
)
class GraphQLJobEventGap:
    missed: Long | None = strawberry.field(
        description="How many; null when not known (the stream was deleted and began again)."
    )
    after: str = strawberry.field(description="The id of the last event read before the gap.")
    resumed_at: str = strawberry.field(description="The id of the first event after it.")


@strawberry.type(
    name="JobEvent",
    description="One event of a channel's jobs, as the scripts recorded it with the change.",
)
class GraphQLJobEvent:
    id: str | None = strawberry.field(
        description="`<ms>-<seq>`: pass the last one received as `after` to resume right "
        "after it. Null for a GAP (not an event of the stream)."
    )
    channel: str
    event: GraphQLJobEventType
    job_id: str | None = strawberry.field(
        description="The job; null for the channel's own events (PAUSED, RESUMED) and GAP."
    )
    at_ms: Long = strawberry.field(description="When Redis recorded it, ms since the epoch.")
    data: JSON = strawberry.field(
        description="What the event adds, as the HTTP and gRPC streams carry it: WAITING "
        "priority, DELAYED due_at, ACTIVE attempt, PROGRESS progress, RETRYING error and "
        "due_at, FAILED error, STALLED stalled; GAP missed, after, resumed_at. {} otherwise."
    )
    gap: GraphQLJobEventGap | None = strawberry.field(
        description="For a GAP event, what was missed (`data` in typed fields); else null."
    )

    @classmethod
    def of(cls, event: JobEvent) -> GraphQLJobEvent:
        gap = None
        if event.event == GAP:
            missed = event.data.get("missed")
            gap = GraphQLJobEventGap(
                missed=Long(int(missed)) if missed is not None else None,
                after=str(event.data["after"]),
                resumed_at=str(event.data["resumed_at"]),
            )
        return cls(
            id=None if event.event == GAP else event.id,
            channel=event.channel,
            event=GraphQLJobEventType(event.event),
            job_id=event.job_id,
            at_ms=Long(event.at_ms),
            data=JSON(event.data),
            gap=gap,
        )
