"""What a job looks like from the outside: its state, attempts, result and errors."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Literal

__all__ = ["STATES", "ChannelCounts", "JobInfo", "JobState"]

JobState = Literal["waiting", "delayed", "active", "completed", "failed"]
STATES: tuple[JobState, ...] = ("waiting", "delayed", "active", "completed", "failed")


def _time(raw: dict[bytes, bytes], name: bytes) -> datetime | None:
    value = raw.get(name)
    return datetime.fromtimestamp(int(float(value)) / 1000, UTC) if value else None


def _json(value: bytes | None) -> Any:
    return json.loads(value) if value else None


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
    error: dict[str, Any] | None
    errors: list[dict[str, Any]] = field(default_factory=list)
    payload: Any = None

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
            error=_json(raw.get(b"error")),
            errors=_json(raw.get(b"errors")) or [],
            payload=payload,
        )


@dataclass(frozen=True, slots=True)
class ChannelCounts:
    channel: str
    waiting: int
    active: int
    delayed: int
    completed: int
    failed: int
    limiter: dict[str, Any] | None = None
