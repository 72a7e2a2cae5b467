"""How a job ended, as typed records: what the worker hands to the finish script.

    Completed   the handler returned (its result as JSON, '' for none)
    Retrying    it raised and has attempts left: back to the delayed set until `due_ms`
    Failed      it raised for good, or its message could not become a job: the failed set
    Deferred    a keyed rate limit held it back before it ran, or its handler raised
                RetryAfter: delayed, not a failure (`hold` may hold back the channel or
                one limiter group too)
    Cancelled   its handler was cancelled on request

One record per job on the hot path: plain slotted dataclasses (a frozen one costs three
times as much to create). `encode_outcomes` is the one place that lays them out as the
finish script's ARGV (runtime/engine/lua/finish.lua documents the layout: seven values
per record). Each
record carries the claim its run started under (`delivery`, the stream entry's delivery
count): finish.lua records it only while this consumer still holds that claim.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import ClassVar

from runtime.engine.jobs import JobError

__all__ = [
    "Cancelled",
    "Completed",
    "Deferred",
    "Failed",
    "Outcome",
    "Retrying",
    "encode_outcomes",
]


@dataclass(slots=True)
class Completed:
    kind: ClassVar[str] = "done"
    stream_id: str
    delivery: int
    job_id: str
    result_json: str  # '' when the handler returned nothing


@dataclass(slots=True)
class Retrying:
    kind: ClassVar[str] = "retry"
    stream_id: str
    delivery: int
    job_id: str
    error: JobError
    due_ms: int
    message: bytes


@dataclass(slots=True)
class Failed:
    kind: ClassVar[str] = "fail"
    stream_id: str
    delivery: int
    job_id: str
    error: JobError
    message: bytes


@dataclass(slots=True)
class Deferred:
    kind: ClassVar[str] = "defer"
    stream_id: str
    delivery: int
    job_id: str
    due_ms: int
    message: bytes
    hold: str = ""  # '' the job only, 'channel', or 'k:<group>' a limiter group


@dataclass(slots=True)
class Cancelled:
    kind: ClassVar[str] = "cancel"
    stream_id: str
    delivery: int
    job_id: str
    message: bytes


Outcome = Completed | Retrying | Failed | Deferred | Cancelled


def encode_outcomes(outcomes: Iterable[Outcome]) -> list[str | bytes | int]:
    """The records as finish.lua reads them: kind, stream id, delivery, job id, a, b, c."""
    args: list[str | bytes | int] = []
    for outcome in outcomes:
        args += (outcome.kind, outcome.stream_id, outcome.delivery, outcome.job_id)
        match outcome:
            case Completed():
                args += (outcome.result_json, "", "")
            case Retrying():
                args += (outcome.error.to_json(), outcome.due_ms, outcome.message)
            case Failed():
                args += (outcome.error.to_json(), outcome.message, "")
            case Deferred():
                args += (outcome.due_ms, outcome.message, outcome.hold)
            case Cancelled():
                args += ("", outcome.message, "")
    return args
