"""`service JobsService`, the same in every generated package: inspect jobs and channels,
retry, discard or cancel jobs, pause and resume channels, list the live processes.

    JobsServicer(store, channels, messages)   the servicer; `add_to_server(server)` serves it
                                              with the generated package's messages
    JobsAdmin(store, channels)                the operations, raising ChannelkitErrors
    STATUS_CODES                              which error ends a call with which status
    await_or_abort(context, call)             `call`'s value, or the call ended with it
                                              (the Channels service's enqueues use it too)
    job_message(info, Job)                    a JobInfo as the package's `Job` message
    counts_message(counts, ChannelCounts)     a ChannelCounts as its `ChannelCounts` message
    process_message(info, Process)            a ProcessInfo as its `Process` message

A generated package holds no Jobs code: its `grpc_service.add_to_server` builds a
`JobsServicer` with its own `channels_pb2` module, whose message classes this module fills
and parses. Errors become statuses in ONE place, `STATUS_CODES`, with the exception's
message as the details:

    UnknownChannelError   NOT_FOUND             a channel not declared in channels.yaml
    JobNotFound           NOT_FOUND             never enqueued, or removed by retention
    JobStateConflict      FAILED_PRECONDITION   retry of a job that is not failed or
                                                cancelled; discard of a waiting or active
                                                job; cancel of a finished one
    InvalidJobRequest     INVALID_ARGUMENT      an empty job id, an unknown state, a limit
                                                over 500
    RedisUnavailable      UNAVAILABLE           Redis could not be reached or refused
    ScheduleNotFound      NOT_FOUND             no schedule of that name (SchedulesService)
    ScheduleConflict      FAILED_PRECONDITION   changing what channels.yaml declares

Messages are filled through their proto JSON form (`json_format.ParseDict`), so the same
code serves every generated package. Job times become `google.protobuf.Timestamp`s; an
error's time stays milliseconds (`at_ms`, 0 when unknown); a process's start and last
heartbeat become Timestamps too; a result becomes a
`google.protobuf.Value` (`result`: any JSON value, its numbers doubles); the payload stays
JSON text (`payload_json`).
"""

from __future__ import annotations

import json
from collections.abc import AsyncGenerator, Awaitable, Callable, Iterable, Mapping
from datetime import UTC, datetime
from typing import Any, Protocol, TypeVar

import grpc
from google.protobuf import json_format
from google.protobuf.descriptor import FileDescriptor
from google.protobuf.message import Message as ProtoMessage
from google.protobuf.timestamp_pb2 import Timestamp

from runtime.engine.client import CancelResult, Enqueuer
from runtime.engine.events import EventHub, JobEvent
from runtime.engine.jobs import ChannelCounts, JobError, JobInfo, JobState
from runtime.engine.limits import check_job_id
from runtime.engine.processes import ProcessInfo
from runtime.errors import (
    ChannelkitError,
    InvalidJobRequest,
    JobNotFound,
    JobStateConflict,
    RedisUnavailable,
    ScheduleConflict,
    ScheduleNotFound,
    UnknownChannelError,
)

__all__ = [
    "DEFAULT_LIMIT",
    "MAX_LIMIT",
    "STATE_NUMBERS",
    "STATUS_CODES",
    "ChannelBackend",
    "InvalidJobRequest",
    "JobStore",
    "JobsAdmin",
    "JobsMessages",
    "JobsServicer",
    "await_or_abort",
    "counts_message",
    "job_message",
    "process_message",
    "status_code",
]

MessageT = TypeVar("MessageT", bound=ProtoMessage)
T = TypeVar("T")
Context = grpc.aio.ServicerContext[Any, Any]

DEFAULT_LIMIT = 50  # ListJobs with limit 0
MAX_LIMIT = 500  # as GET /channels/{name}/jobs

# The service's name in channels.proto (generator/proto_jobs.py).
SERVICE = "JobsService"

# `enum JobState` of channels.proto (generator/proto_jobs.py); 0 is JOB_STATE_UNSPECIFIED.
STATE_NUMBERS: Mapping[JobState, int] = {
    "waiting": 1,
    "delayed": 2,
    "active": 3,
    "completed": 4,
    "failed": 5,
    "cancelled": 6,
}
_STATES_BY_NUMBER: Mapping[int, JobState] = {n: s for s, n in STATE_NUMBERS.items()}


# The one table of errors → statuses. The most specific class listed wins (EnqueueError is
# a RedisUnavailable); an error not listed is a bug and reaches the client as UNKNOWN.
STATUS_CODES: Mapping[type[ChannelkitError], grpc.StatusCode] = {
    UnknownChannelError: grpc.StatusCode.NOT_FOUND,
    JobNotFound: grpc.StatusCode.NOT_FOUND,
    JobStateConflict: grpc.StatusCode.FAILED_PRECONDITION,
    InvalidJobRequest: grpc.StatusCode.INVALID_ARGUMENT,
    RedisUnavailable: grpc.StatusCode.UNAVAILABLE,
    ScheduleNotFound: grpc.StatusCode.NOT_FOUND,
    ScheduleConflict: grpc.StatusCode.FAILED_PRECONDITION,
}


def status_code(error: ChannelkitError) -> grpc.StatusCode | None:
    """The status `error` ends a call with, from STATUS_CODES; None when it has none."""
    for cls in type(error).__mro__:
        code = STATUS_CODES.get(cls)
        if code is not None:
            return code
    return None


class JobStore(Protocol):
    """Where jobs are looked up, retried and discarded; `runtime.engine.client.Client` is one."""

    async def job(self, channel: str, job_id: str) -> JobInfo | None: ...

    async def jobs(
        self, channel: str, state: str, *, offset: int = 0, limit: int = 50
    ) -> list[JobInfo]: ...

    async def counts(self, channel: str) -> ChannelCounts: ...

    async def retry(self, channel: str, job_id: str) -> None:
        """Raises JobNotFound, or JobStateConflict when the job is not failed."""

    async def discard(self, channel: str, job_id: str) -> None:
        """Raises JobNotFound, or JobStateConflict when the job is waiting or active."""

    async def cancel(self, channel: str, job_id: str) -> CancelResult:
        """Raises JobNotFound, or JobStateConflict when the job has finished."""

    async def cancel_all(self, channel: str, state: str = "waiting") -> int: ...

    async def retry_all_failed(self, channel: str) -> int: ...

    async def discard_all_failed(self, channel: str) -> int: ...

    async def pause(self, channel: str) -> None: ...

    async def resume(self, channel: str) -> None: ...

    async def processes(self) -> list[ProcessInfo]:
        """The live `runtime serve` processes, oldest start first."""

    @property
    def event_hub(self) -> EventHub: ...

    def events(
        self, channel: str, *, job_id: str | None = None, after: str | None = None
    ) -> AsyncGenerator[JobEvent, None]: ...


class ChannelBackend(Enqueuer, JobStore, Protocol):
    """What the generated `add_to_server` serves both services with: a `Client`."""


class JobsAdmin:
    """The operations of `service Jobs`, for the channels of one generated package.

    Each raises a ChannelkitError that STATUS_CODES maps: UnknownChannelError,
    InvalidJobRequest, JobNotFound, JobStateConflict, RedisUnavailable.
    """

    def __init__(self, store: JobStore, channels: Iterable[str]) -> None:
        self._store = store
        self._channels = tuple(sorted(channels))

    async def job(self, channel: str, job_id: str) -> JobInfo:
        self._check(channel, job_id)
        info = await self._store.job(channel, job_id)
        if info is None:
            raise JobNotFound(channel, job_id)
        return info

    async def jobs(self, channel: str, state: int, *, offset: int, limit: int) -> list[JobInfo]:
        """`state` 0 (unspecified) lists failed jobs; `limit` 0 means DEFAULT_LIMIT."""
        self._check(channel)
        name = _STATES_BY_NUMBER.get(state or STATE_NUMBERS["failed"])
        if name is None:
            raise InvalidJobRequest(f"unknown job state {state}")
        if limit > MAX_LIMIT:
            raise InvalidJobRequest(f"limit is at most {MAX_LIMIT}; got {limit}")
        return await self._store.jobs(channel, name, offset=offset, limit=limit or DEFAULT_LIMIT)

    async def retry(self, channel: str, job_id: str) -> JobInfo:
        """Run a failed job again; returns the job as it is right after."""
        self._check(channel, job_id)
        await self._store.retry(channel, job_id)
        return await self.job(channel, job_id)

    async def discard(self, channel: str, job_id: str) -> None:
        self._check(channel, job_id)
        await self._store.discard(channel, job_id)

    async def counts(self, channel: str) -> ChannelCounts:
        self._check(channel)
        return await self._store.counts(channel)

    async def cancel(self, channel: str, job_id: str) -> CancelResult:
        self._check(channel, job_id)
        return await self._store.cancel(channel, job_id)

    async def cancel_all(self, channel: str, state: int) -> int:
        """`state` 0 (unspecified) cancels waiting jobs; else WAITING or DELAYED."""
        self._check(channel)
        name = _STATES_BY_NUMBER.get(state or STATE_NUMBERS["waiting"])
        if name not in ("waiting", "delayed"):
            raise InvalidJobRequest(
                f"state: JOB_STATE_WAITING or JOB_STATE_DELAYED; got {name or state}"
            )
        return await self._store.cancel_all(channel, name)

    async def retry_all_failed(self, channel: str) -> int:
        self._check(channel)
        return await self._store.retry_all_failed(channel)

    async def discard_all_failed(self, channel: str) -> int:
        self._check(channel)
        return await self._store.discard_all_failed(channel)

    async def pause(self, channel: str, paused: bool) -> ChannelCounts:
        """Pause (or resume) the channel; returns its counts right after."""
        self._check(channel)
        if paused:
            await self._store.pause(channel)
        else:
            await self._store.resume(channel)
        return await self._store.counts(channel)

    async def processes(self) -> list[ProcessInfo]:
        """Every live process, whatever channels it serves."""
        return await self._store.processes()

    async def events(self, channel: str, job_id: str, after: str) -> AsyncGenerator[JobEvent, None]:
        """The channel's events (one job's when `job_id`), after `after` ('' from now):
        checked, and started (Redis touched), before the first event is awaited."""
        self._check(channel)
        if job_id:
            check_job_id(job_id)
        position = await self._store.event_hub.start(channel, after or None)
        return self._store.events(channel, job_id=job_id or None, after=str(position))

    def _check(self, channel: str, job_id: str | None = None) -> None:
        if channel not in self._channels:
            raise UnknownChannelError(channel, self._channels)
        if job_id is not None and not job_id:
            raise InvalidJobRequest("job_id is required")


class JobsMessages(Protocol):
    """A generated `channels_pb2` module: the messages of its `service JobsService`."""

    @property
    def DESCRIPTOR(self) -> FileDescriptor: ...

    @property
    def GetJobRequest(self) -> type[ProtoMessage]: ...

    @property
    def GetJobResponse(self) -> type[ProtoMessage]: ...

    @property
    def ListJobsRequest(self) -> type[ProtoMessage]: ...

    @property
    def ListJobsResponse(self) -> type[ProtoMessage]: ...

    @property
    def RetryJobRequest(self) -> type[ProtoMessage]: ...

    @property
    def RetryJobResponse(self) -> type[ProtoMessage]: ...

    @property
    def DiscardJobRequest(self) -> type[ProtoMessage]: ...

    @property
    def DiscardJobResponse(self) -> type[ProtoMessage]: ...

    @property
    def GetChannelRequest(self) -> type[ProtoMessage]: ...

    @property
    def GetChannelResponse(self) -> type[ProtoMessage]: ...

    @property
    def CancelJobRequest(self) -> type[ProtoMessage]: ...

    @property
    def CancelJobResponse(self) -> type[ProtoMessage]: ...

    @property
    def CancelJobsRequest(self) -> type[ProtoMessage]: ...

    @property
    def CancelJobsResponse(self) -> type[ProtoMessage]: ...

    @property
    def RetryFailedJobsRequest(self) -> type[ProtoMessage]: ...

    @property
    def RetryFailedJobsResponse(self) -> type[ProtoMessage]: ...

    @property
    def DiscardFailedJobsRequest(self) -> type[ProtoMessage]: ...

    @property
    def DiscardFailedJobsResponse(self) -> type[ProtoMessage]: ...

    @property
    def PauseChannelRequest(self) -> type[ProtoMessage]: ...

    @property
    def PauseChannelResponse(self) -> type[ProtoMessage]: ...

    @property
    def ResumeChannelRequest(self) -> type[ProtoMessage]: ...

    @property
    def ResumeChannelResponse(self) -> type[ProtoMessage]: ...

    @property
    def Job(self) -> type[ProtoMessage]: ...

    @property
    def ChannelCounts(self) -> type[ProtoMessage]: ...


class _JobRequest(Protocol):
    """GetJobRequest, RetryJobRequest and DiscardJobRequest."""

    @property
    def channel(self) -> str: ...

    @property
    def job_id(self) -> str: ...


class _ListJobsRequest(Protocol):
    @property
    def channel(self) -> str: ...

    @property
    def state(self) -> int: ...

    @property
    def offset(self) -> int: ...

    @property
    def limit(self) -> int: ...


class _ChannelRequest(Protocol):
    @property
    def channel(self) -> str: ...


class _WatchEventsRequest(Protocol):
    @property
    def channel(self) -> str: ...

    @property
    def job_id(self) -> str: ...

    @property
    def after(self) -> str: ...


class _ChannelStateRequest(Protocol):
    @property
    def channel(self) -> str: ...

    @property
    def state(self) -> int: ...


# An RPC: its implementation, request class and reply class.
_Method = tuple[Callable[..., Awaitable[ProtoMessage]], type[ProtoMessage], type[ProtoMessage]]


class JobsServicer:
    """`service JobsService` of one generated package: `messages` is its `channels_pb2`.

    Served with `add_to_server`, which registers every method under the service's full
    name (`channels.v1.JobsService`) exactly as protoc's `add_JobsServiceServicer_to_server`
    would.
    """

    def __init__(self, store: JobStore, channels: Iterable[str], messages: JobsMessages) -> None:
        self._admin = JobsAdmin(store, channels)
        self._messages = messages
        self._processes_messages = _optional_messages(
            messages, "ListProcessesRequest", "ListProcessesResponse"
        )
        self._events_messages = _optional_messages(
            messages, "WatchEventsRequest", "WatchEventsResponse"
        )
        self.service_name = messages.DESCRIPTOR.services_by_name[SERVICE].full_name

    async def GetJob(self, request: _JobRequest, context: Context) -> ProtoMessage:
        info = await await_or_abort(context, self._admin.job(request.channel, request.job_id))
        return json_format.ParseDict({"job": _job_data(info)}, self._messages.GetJobResponse())

    async def ListJobs(self, request: _ListJobsRequest, context: Context) -> ProtoMessage:
        jobs = await await_or_abort(
            context,
            self._admin.jobs(
                request.channel, request.state, offset=request.offset, limit=request.limit
            ),
        )
        return json_format.ParseDict(
            {"jobs": [_job_data(job) for job in jobs]}, self._messages.ListJobsResponse()
        )

    async def RetryJob(self, request: _JobRequest, context: Context) -> ProtoMessage:
        info = await await_or_abort(context, self._admin.retry(request.channel, request.job_id))
        return json_format.ParseDict({"job": _job_data(info)}, self._messages.RetryJobResponse())

    async def DiscardJob(self, request: _JobRequest, context: Context) -> ProtoMessage:
        await await_or_abort(context, self._admin.discard(request.channel, request.job_id))
        return json_format.ParseDict({"discarded": True}, self._messages.DiscardJobResponse())

    async def GetChannel(self, request: _ChannelRequest, context: Context) -> ProtoMessage:
        counts = await await_or_abort(context, self._admin.counts(request.channel))
        return json_format.ParseDict(
            {"counts": _counts_data(counts)}, self._messages.GetChannelResponse()
        )

    async def CancelJob(self, request: _JobRequest, context: Context) -> ProtoMessage:
        done = await await_or_abort(context, self._admin.cancel(request.channel, request.job_id))
        state = STATE_NUMBERS.get(done.state, 0)  # type: ignore[call-overload]
        return json_format.ParseDict(
            {"cancelled": done.cancelled, "state": state}, self._messages.CancelJobResponse()
        )

    async def CancelJobs(self, request: _ChannelStateRequest, context: Context) -> ProtoMessage:
        count = await await_or_abort(
            context, self._admin.cancel_all(request.channel, request.state)
        )
        return json_format.ParseDict({"count": count}, self._messages.CancelJobsResponse())

    async def RetryFailedJobs(self, request: _ChannelRequest, context: Context) -> ProtoMessage:
        count = await await_or_abort(context, self._admin.retry_all_failed(request.channel))
        return json_format.ParseDict({"count": count}, self._messages.RetryFailedJobsResponse())

    async def DiscardFailedJobs(self, request: _ChannelRequest, context: Context) -> ProtoMessage:
        count = await await_or_abort(context, self._admin.discard_all_failed(request.channel))
        return json_format.ParseDict({"count": count}, self._messages.DiscardFailedJobsResponse())

    async def PauseChannel(self, request: _ChannelRequest, context: Context) -> ProtoMessage:
        counts = await await_or_abort(context, self._admin.pause(request.channel, True))
        return json_format.ParseDict(
            {"counts": _counts_data(counts)}, self._messages.PauseChannelResponse()
        )

    async def ResumeChannel(self, request: _ChannelRequest, context: Context) -> ProtoMessage:
        counts = await await_or_abort(context, self._admin.pause(request.channel, False))
        return json_format.ParseDict(
            {"counts": _counts_data(counts)}, self._messages.ResumeChannelResponse()
        )

    async def WatchEvents(
        self, request: _WatchEventsRequest, context: Context
    ) -> AsyncGenerator[ProtoMessage, None]:
        assert self._events_messages is not None  # served only with its messages
        reply = self._events_messages[1]
        events = await await_or_abort(
            context, self._admin.events(request.channel, request.job_id, request.after)
        )
        try:
            async for event in events:
                yield json_format.ParseDict({"event": _event_data(event)}, reply())
        finally:
            await events.aclose()

    async def ListProcesses(self, request: ProtoMessage, context: Context) -> ProtoMessage:
        processes = await await_or_abort(context, self._admin.processes())
        assert self._processes_messages is not None  # served only with its messages
        return json_format.ParseDict(
            {"processes": [_process_data(process) for process in processes]},
            self._processes_messages[1](),
        )

    def add_to_server(self, server: grpc.aio.Server) -> None:
        """Serve every method of the service on `server`. A package generated before an
        RPC existed lacks its messages: that RPC is left out (the package's own
        channels.proto does not declare it either)."""
        m = self._messages
        methods: dict[str, _Method] = {
            "GetJob": (self.GetJob, m.GetJobRequest, m.GetJobResponse),
            "ListJobs": (self.ListJobs, m.ListJobsRequest, m.ListJobsResponse),
            "RetryJob": (self.RetryJob, m.RetryJobRequest, m.RetryJobResponse),
            "DiscardJob": (self.DiscardJob, m.DiscardJobRequest, m.DiscardJobResponse),
            "GetChannel": (self.GetChannel, m.GetChannelRequest, m.GetChannelResponse),
            "CancelJob": (self.CancelJob, m.CancelJobRequest, m.CancelJobResponse),
            "CancelJobs": (self.CancelJobs, m.CancelJobsRequest, m.CancelJobsResponse),
            "RetryFailedJobs": (
                self.RetryFailedJobs,
                m.RetryFailedJobsRequest,
                m.RetryFailedJobsResponse,
            ),
            "DiscardFailedJobs": (
                self.DiscardFailedJobs,
                m.DiscardFailedJobsRequest,
                m.DiscardFailedJobsResponse,
            ),
            "PauseChannel": (self.PauseChannel, m.PauseChannelRequest, m.PauseChannelResponse),
            "ResumeChannel": (
                self.ResumeChannel,
                m.ResumeChannelRequest,
                m.ResumeChannelResponse,
            ),
        }
        if self._processes_messages is not None:
            methods["ListProcesses"] = (self.ListProcesses, *self._processes_messages)
        handlers = {
            name: grpc.unary_unary_rpc_method_handler(
                behaviour,
                request_deserializer=request.FromString,
                response_serializer=reply.SerializeToString,
            )
            for name, (behaviour, request, reply) in methods.items()
        }
        if self._events_messages is not None:
            request, reply = self._events_messages
            handlers["WatchEvents"] = grpc.unary_stream_rpc_method_handler(
                self.WatchEvents,
                request_deserializer=request.FromString,
                response_serializer=reply.SerializeToString,
            )
        generic = grpc.method_handlers_generic_handler(self.service_name, handlers)
        server.add_generic_rpc_handlers((generic,))
        server.add_registered_method_handlers(self.service_name, handlers)


def _optional_messages(
    messages: JobsMessages, request: str, reply: str
) -> tuple[type[ProtoMessage], type[ProtoMessage]] | None:
    """The request and reply classes of an RPC newer than some generated packages
    (packages generated before it lack them: None)."""
    found = getattr(messages, request, None), getattr(messages, reply, None)
    if found[0] is None or found[1] is None:
        return None
    return found[0], found[1]


async def await_or_abort(context: Context, call: Awaitable[T]) -> T:
    """`call`'s value; a ChannelkitError listed in STATUS_CODES ends the gRPC call instead,
    with the error's message as the details."""
    try:
        return await call
    except ChannelkitError as error:
        code = status_code(error)
        if code is None:
            raise
        await context.abort(code, str(error))


def job_message(info: JobInfo, message_class: type[MessageT]) -> MessageT:
    """`info` as a `channels.v1.Job` of the package that `message_class` belongs to."""
    return json_format.ParseDict(_job_data(info), message_class())


def _job_data(info: JobInfo) -> dict[str, Any]:
    """`info` in the proto JSON form of `channels.v1.Job`."""
    data: dict[str, Any] = {
        "id": info.id,
        "channel": info.channel,
        "state": STATE_NUMBERS[info.state],
        "attempts": info.attempts,
        "failures": info.failures,
        "errors": [_error(error) for error in info.errors],
        "priority": info.priority,
        "cancel_requested": info.cancel_requested,
    }
    if info.progress is not None:
        data["progress"] = info.progress
    times = {
        "enqueued_at": info.enqueued_at,
        "started_at": info.started_at,
        "finished_at": info.finished_at,
        "due_at": info.due_at,
    }
    data.update((name, _timestamp(value)) for name, value in times.items() if value is not None)
    if info.result is not None:
        data["result"] = info.result  # a google.protobuf.Value: any JSON value
    if info.payload is not None:
        data["payload_json"] = _json_text(info.payload)
    if info.error is not None:
        data["error"] = _error(info.error)
    return data


def counts_message(counts: ChannelCounts, message_class: type[MessageT]) -> MessageT:
    """`counts` as a `channels.v1.ChannelCounts` of `message_class`'s package."""
    return json_format.ParseDict(_counts_data(counts), message_class())


def _counts_data(counts: ChannelCounts) -> dict[str, Any]:
    """`counts` in the proto JSON form of `channels.v1.ChannelCounts`."""
    data: dict[str, Any] = {
        "channel": counts.channel,
        "waiting": counts.waiting,
        "active": counts.active,
        "delayed": counts.delayed,
        "completed": counts.completed,
        "failed": counts.failed,
        "cancelled": counts.cancelled,
        "paused": counts.paused,
        "held_back_ms": counts.held_back_ms,
        "waiting_by_priority": {
            str(priority): count for priority, count in counts.waiting_by_priority.items()
        },
    }
    if counts.limiter is not None:
        data["limiter"] = {
            "granted_in_window": max(0, int(counts.limiter.get("granted_in_window", 0))),
            "window_resets_in_ms": max(0, int(counts.limiter.get("window_resets_in_ms", 0))),
        }
    return data


def _event_data(event: JobEvent) -> dict[str, Any]:
    """`event` in the proto JSON form of `channels.v1.JobEvent`."""
    data: dict[str, Any] = {
        "id": event.id,
        "channel": event.channel,
        "event": event.event,
        "job_id": event.job_id or "",
        "at": _timestamp(datetime.fromtimestamp(event.at_ms / 1000, UTC)),
        "data": event.data,
    }
    return data


def process_message(info: ProcessInfo, message_class: type[MessageT]) -> MessageT:
    """`info` as a `channels.v1.Process` of `message_class`'s package."""
    return json_format.ParseDict(_process_data(info), message_class())


def _process_data(info: ProcessInfo) -> dict[str, Any]:
    """`info` in the proto JSON form of `channels.v1.Process`."""
    return {
        "id": info.id,
        "host": info.host,
        "pid": info.pid,
        "version": info.version,
        "app": info.app,
        "started_at": _timestamp(info.started_at),
        "heartbeat_at": _timestamp(info.heartbeat_at),
        "worker_channels": list(info.worker_channels),
        "http": info.http,
        "grpc": info.grpc,
        "running_jobs": info.running_jobs,
    }


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
