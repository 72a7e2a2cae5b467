"""The generic half of `service Jobs`: lookups that end a call with the right status, and
`JobInfo` / `ChannelCounts` turned into the generated messages.

The generated `<package>/grpc_service.py` holds `JobsServicer`, which only knows its own
package's message classes and hands everything else to this module:

    JobsAdmin(store, channels)            the five operations; a call ends with
        NOT_FOUND              an unknown channel, or no such job
        FAILED_PRECONDITION    retry of a job that is not failed; discard of a waiting
                               or active job (one in the stream cannot be removed)
        INVALID_ARGUMENT       an empty job id, an unknown state, a limit over 500
    job_message(info, Job)                a JobInfo as the package's `Job` message
    counts_message(counts, ChannelCounts) a ChannelCounts as its `ChannelCounts` message

Messages are filled through their proto JSON form (`json_format.ParseDict`), so the same
code serves every generated package. Job times become `google.protobuf.Timestamp`s; an
error's time stays milliseconds (`at_ms`, 0 when unknown); a result and a payload are JSON
text (`result_json`, `payload_json`), which keeps integers integers.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from datetime import datetime
from typing import Any, Protocol, TypeVar

import grpc
from google.protobuf import json_format
from google.protobuf.message import Message as ProtoMessage
from google.protobuf.timestamp_pb2 import Timestamp

from runtime.engine.client import Enqueuer
from runtime.engine.jobs import ChannelCounts, JobError, JobInfo, JobState
from runtime.errors import UnknownChannelError

__all__ = [
    "DEFAULT_LIMIT",
    "MAX_LIMIT",
    "STATE_NUMBERS",
    "ChannelBackend",
    "JobStore",
    "JobsAdmin",
    "counts_message",
    "job_message",
]

MessageT = TypeVar("MessageT", bound=ProtoMessage)
Context = grpc.aio.ServicerContext[Any, Any]

DEFAULT_LIMIT = 50  # ListJobs with limit 0
MAX_LIMIT = 500  # as GET /channels/{name}/jobs

# `enum JobState` of channels.proto (generator/proto_jobs.py); 0 is JOB_STATE_UNSPECIFIED.
STATE_NUMBERS: Mapping[JobState, int] = {
    "waiting": 1,
    "delayed": 2,
    "active": 3,
    "completed": 4,
    "failed": 5,
}
_STATES_BY_NUMBER: Mapping[int, JobState] = {n: s for s, n in STATE_NUMBERS.items()}


class JobStore(Protocol):
    """Where jobs are looked up, retried and discarded; `runtime.engine.client.Client` is one."""

    async def job(self, channel: str, job_id: str) -> JobInfo | None: ...

    async def jobs(
        self, channel: str, state: str, *, offset: int = 0, limit: int = 50
    ) -> list[JobInfo]: ...

    async def counts(self, channel: str) -> ChannelCounts: ...

    async def retry(self, channel: str, job_id: str) -> bool: ...

    async def discard(self, channel: str, job_id: str) -> bool: ...


class ChannelBackend(Enqueuer, JobStore, Protocol):
    """What the generated `add_to_server` serves both services with: a `Client`."""


class JobsAdmin:
    """The operations of `service Jobs`, for the channels of one generated package."""

    def __init__(self, store: JobStore, channels: Iterable[str]) -> None:
        self._store = store
        self._channels = tuple(sorted(channels))

    async def job(self, context: Context, channel: str, job_id: str) -> JobInfo:
        await self._check(context, channel, job_id)
        info = await self._store.job(channel, job_id)
        if info is None:
            await context.abort(grpc.StatusCode.NOT_FOUND, _no_job(channel, job_id))
        return info

    async def jobs(
        self, context: Context, channel: str, state: int, *, offset: int, limit: int
    ) -> list[JobInfo]:
        """`state` 0 (unspecified) lists failed jobs; `limit` 0 means DEFAULT_LIMIT."""
        await self._check(context, channel)
        name = _STATES_BY_NUMBER.get(state or STATE_NUMBERS["failed"])
        if name is None:
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, f"unknown job state {state}")
        if limit > MAX_LIMIT:
            await context.abort(
                grpc.StatusCode.INVALID_ARGUMENT, f"limit is at most {MAX_LIMIT}; got {limit}"
            )
        return await self._store.jobs(channel, name, offset=offset, limit=limit or DEFAULT_LIMIT)

    async def retry(self, context: Context, channel: str, job_id: str) -> JobInfo:
        """Run a failed job again; returns the job as it is right after."""
        await self._check(context, channel, job_id)
        if not await self._store.retry(channel, job_id):
            info = await self.job(context, channel, job_id)  # NOT_FOUND when there is none
            await context.abort(
                grpc.StatusCode.FAILED_PRECONDITION,
                f"job {job_id!r} in {channel!r} is {info.state}; only failed jobs can be retried",
            )
        return await self.job(context, channel, job_id)

    async def discard(self, context: Context, channel: str, job_id: str) -> None:
        await self._check(context, channel, job_id)
        if not await self._store.discard(channel, job_id):
            info = await self.job(context, channel, job_id)  # NOT_FOUND when there is none
            await context.abort(
                grpc.StatusCode.FAILED_PRECONDITION,
                f"job {job_id!r} in {channel!r} is {info.state}; only failed, completed "
                "or delayed jobs can be discarded",
            )

    async def counts(self, context: Context, channel: str) -> ChannelCounts:
        await self._check(context, channel)
        return await self._store.counts(channel)

    async def _check(self, context: Context, channel: str, job_id: str | None = None) -> None:
        if channel not in self._channels:
            error = UnknownChannelError(channel, list(self._channels))
            await context.abort(grpc.StatusCode.NOT_FOUND, str(error))
        if job_id is not None and not job_id:
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, "job_id is required")


def job_message(info: JobInfo, message_class: type[MessageT]) -> MessageT:
    """`info` as a `channels.v1.Job` of the package that `message_class` belongs to."""
    data: dict[str, Any] = {
        "id": info.id,
        "channel": info.channel,
        "state": STATE_NUMBERS[info.state],
        "attempts": info.attempts,
        "failures": info.failures,
        "errors": [_error(error) for error in info.errors],
    }
    times = {
        "enqueued_at": info.enqueued_at,
        "started_at": info.started_at,
        "finished_at": info.finished_at,
        "due_at": info.due_at,
    }
    data.update((name, _timestamp(value)) for name, value in times.items() if value is not None)
    if info.result is not None:
        data["result_json"] = _json_text(info.result)
    if info.payload is not None:
        data["payload_json"] = _json_text(info.payload)
    if info.error is not None:
        data["error"] = _error(info.error)
    return json_format.ParseDict(data, message_class())


def counts_message(counts: ChannelCounts, message_class: type[MessageT]) -> MessageT:
    """`counts` as a `channels.v1.ChannelCounts` of `message_class`'s package."""
    data: dict[str, Any] = {
        "channel": counts.channel,
        "waiting": counts.waiting,
        "active": counts.active,
        "delayed": counts.delayed,
        "completed": counts.completed,
        "failed": counts.failed,
    }
    if counts.limiter is not None:
        data["limiter"] = {
            "granted_in_window": max(0, int(counts.limiter.get("granted_in_window", 0))),
            "window_resets_in_ms": max(0, int(counts.limiter.get("window_resets_in_ms", 0))),
        }
    return json_format.ParseDict(data, message_class())


def _error(error: JobError) -> dict[str, Any]:
    return {
        "type": error.type,
        "message": error.message,
        "traceback": error.traceback,
        "attempt": error.attempt,
        "at_ms": error.at,
    }


def _timestamp(value: datetime) -> str:
    stamp = Timestamp()
    stamp.FromDatetime(value)
    return stamp.ToJsonString()


def _json_text(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"))


def _no_job(channel: str, job_id: str) -> str:
    return f"no job {job_id!r} in channel {channel!r} (never enqueued, or removed by retention)"
