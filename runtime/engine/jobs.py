"""What a job looks like from the outside: its state, attempts, result and errors.

`JobError` is the one record of a failure: the worker writes it (`to_json`), the Lua
scripts store it as it is in the job hash (`error`, and the list `errors`), and every
reader (HTTP, gRPC, the CLI) gets it back through `JobInfo`.
"""

from __future__ import annotations

import json
import time
import traceback
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Literal

from runtime.engine.limits import DEFAULT_PRIORITY

__all__ = ["STATES", "ChannelCounts", "JobError", "JobInfo", "JobState"]

MAX_TRACEBACK = 8000  # characters of a traceback kept (its end, where the error is)

JobState = Literal["waiting", "delayed", "active", "completed", "failed", "cancelled"]
STATES: tuple[JobState, ...] = (
    "waiting",
    "delayed",
    "active",
    "completed",
    "failed",
    "cancelled",
)


def _time(raw: dict[bytes, bytes], name: bytes) -> datetime | None:
    value = raw.get(name)
    if not value:
        return None
    try:
        return datetime.fromtimestamp(int(float(value)) / 1000, UTC)
    except (ValueError, OverflowError, OSError):
        return None  # beyond what a date can show (written before delays were bounded)


def _json(value: bytes | None) -> Any:
    return json.loads(value) if value else None


@dataclass(frozen=True, slots=True)
class JobError:
    """One failed run (or a job that could not run): what went wrong and when.

    `type` is the exception's qualified name, or a reason of Channelkit's own:
    `payload_invalid`, `message_invalid`, `stalled`. `attempt` is the run it ended (0:
    the job never ran); `at` is milliseconds since the epoch (0: unknown).
    """

    type: str
    message: str
    traceback: str
    attempt: int
    at: int

    @classmethod
    def from_exception(
        cls, error: BaseException, attempt: int, kind: str | None = None
    ) -> JobError:
        text = "".join(traceback.format_exception(error))
        return cls(
            type=kind or f"{type(error).__module__}.{type(error).__qualname__}",
            message=str(error),
            traceback=text[-MAX_TRACEBACK:],
            attempt=attempt,
            at=int(time.time() * 1000),
        )

    @classmethod
    def from_mapping(cls, raw: Mapping[str, Any]) -> JobError:
        """Read a stored record; fields missing from it read as empty."""
        return cls(
            type=str(raw.get("type") or ""),
            message=str(raw.get("message") or ""),
            traceback=str(raw.get("traceback") or ""),
            attempt=max(0, int(raw.get("attempt") or 0)),
            at=int(raw.get("at") or 0),
        )

    def to_json(self) -> str:
        return json.dumps(
            {
                "type": self.type,
                "message": self.message,
                "traceback": self.traceback,
                "attempt": self.attempt,
                "at": self.at,
            }
        )


def _error(value: bytes | None) -> JobError | None:
    raw = _json(value)
    return JobError.from_mapping(raw) if isinstance(raw, Mapping) else None


def _errors(value: bytes | None) -> list[JobError]:
    raw = _json(value)
    if not isinstance(raw, list):
        return []
    return [JobError.from_mapping(item) for item in raw if isinstance(item, Mapping)]


@dataclass(frozen=True, slots=True)
class JobInfo:
    id: str
    channel: str
    state: JobState
    attempts: int
    failures: int
    enqueued_at: datetime | None
    started_at: datetime | None
    finished_at: datetime | None
    due_at: datetime | None
    result: Any
    error: JobError | None
    errors: list[JobError] = field(default_factory=list)
    payload: Any = None
    priority: int = DEFAULT_PRIORITY
    progress: Any = None  # what the handler last reported (a number or a JSON object)
    cancel_requested: bool = False  # running, and told to cancel

    @classmethod
    def from_hash(cls, channel: str, job_id: str, raw: dict[bytes, bytes]) -> JobInfo:
        payload = None
        data = raw.get(b"data")
        if data:
            try:
                payload = json.loads(data).get("kwargs", {}).get("payload")
            except (ValueError, AttributeError):
                payload = data.decode(errors="replace")  # a poison message, shown as it is
        state = raw.get(b"state", b"waiting").decode()
        return cls(
            id=job_id,
            channel=channel,
            state=state if state in STATES else "waiting",
            attempts=int(raw.get(b"attempts", b"0")),
            failures=int(raw.get(b"failures", b"0")),
            enqueued_at=_time(raw, b"enqueued_at"),
            started_at=_time(raw, b"started_at"),
            finished_at=_time(raw, b"finished_at"),
            due_at=_time(raw, b"due_at"),
            result=_json(raw.get(b"result")),
            error=_error(raw.get(b"error")),
            errors=_errors(raw.get(b"errors")),
            payload=payload,
            priority=int(raw.get(b"priority") or DEFAULT_PRIORITY),
            progress=_json(raw.get(b"progress")),
            # the flag outlives a run whose handler swallowed the cancellation and ended
            cancel_requested=b"cancel" in raw and state in ("waiting", "active"),
        )


@dataclass(frozen=True, slots=True)
class ChannelCounts:
    """Jobs per state; `paused` while the channel is paused; `held_back_ms` while a
    handler's RetryAfter(scope="channel") holds it back; waiting jobs per priority."""

    channel: str
    waiting: int
    active: int
    delayed: int
    completed: int
    failed: int
    cancelled: int = 0
    paused: bool = False
    held_back_ms: int = 0
    waiting_by_priority: dict[int, int] = field(default_factory=dict)
    limiter: dict[str, Any] | None = None
