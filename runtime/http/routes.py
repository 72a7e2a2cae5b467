"""HTTP routes to inspect a channel and its jobs, and to act on them.

Each generated channel controller subclasses `JobRoutes`, adding its typed enqueue
routes beside these:

    GET    /channels/{name}                      counts per state, paused, the limiter
    GET    /channels/{name}/jobs?state=failed    jobs in one state
    GET    /channels/{name}/jobs/{id}            one job: state, attempts, result, errors
    POST   /channels/{name}/jobs/{id}/retry      run a failed or cancelled job again
    POST   /channels/{name}/jobs/{id}/cancel     cancel a waiting, delayed or running job
    DELETE /channels/{name}/jobs/{id}            remove a finished or delayed job
    POST   /channels/{name}/jobs/cancel?state=   cancel every waiting (or delayed) job
    POST   /channels/{name}/failed/retry         run every failed job again
    DELETE /channels/{name}/failed               remove every failed job
    POST   /channels/{name}/pause                no process starts the channel's jobs
    POST   /channels/{name}/resume               processes start them again
    GET    /channels/{name}/events?job=&after=   job events as Server-Sent Events

and the schedule routes of runtime.http.schedules (/channels/{name}/schedules/...).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Annotated, Any, Literal

from litestar import Request, delete, get, post
from litestar.di import NamedDependency
from litestar.exceptions import (
    ClientException,
    HTTPException,
    NotFoundException,
    ValidationException,
)
from litestar.openapi import ResponseSpec
from litestar.params import FromPath, QueryParameter
from litestar.response import Stream
from litestar.status_codes import HTTP_409_CONFLICT

from runtime.engine.client import Client
from runtime.engine.jobs import STATES, JobState
from runtime.engine.limits import check_job_id
from runtime.errors import InvalidJobRequest, JobNotFound, JobOperationError, JobStateConflict
from runtime.http.operation_ids import operation_id as _operation_id
from runtime.http.schedules import ScheduleRoutes
from runtime.http.types import (
    BAD_REQUEST,
    INVALID,
    UNAVAILABLE,
    BulkDone,
    CancelAccepted,
    ChannelSummary,
    ErrorBody,
    JobEventMessage,
    JobList,
    JobStatus,
    RetryAccepted,
)
from runtime.sse import sse_stream, start_position

__all__ = ["JobRoutes"]


_NOT_FOUND = {
    404: ResponseSpec(
        ErrorBody, description="No such job (never enqueued, or removed by retention)"
    )
}
_CONFLICT = {409: ResponseSpec(ErrorBody, description="The job is not in a state that allows this")}
# What every route of a job answers besides success: its path may be malformed (400), the
# job unknown (404), Redis unavailable (503).
_JOB_ERRORS = {**BAD_REQUEST, **_NOT_FOUND, **UNAVAILABLE}
MAX_OFFSET = 1_000_000


class JobRoutes(ScheduleRoutes):
    """Base of a channel's controller: set `path` and `channel_name`. Its schedule routes
    come from ScheduleRoutes."""

    channel_name: str

    @get(
        "/",
        summary="Counts per state and the rate limiter's window",
        operation_id=_operation_id("get_{channel}_counts"),
        description="`waiting` and `active` come from the stream, the others from their sets; "
        "`limiter` is the global rate-limit window (zeros without a limiter).",
        responses=UNAVAILABLE,
    )
    async def summary(
        self,
        client: NamedDependency[Client],
    ) -> ChannelSummary:
        channel = self.channel_name
        return ChannelSummary.of(await client.counts(channel))

    @get(
        "/jobs",
        summary="Jobs in one state, newest first",
        operation_id=_operation_id("list_{channel}_jobs"),
        description="Failed, completed, cancelled and delayed jobs newest first; waiting "
        "jobs in the order they will start (priority, then FIFO); active jobs oldest "
        "first, for them offset + limit is at most 10,000.",
        responses={**BAD_REQUEST, **INVALID, **UNAVAILABLE},
    )
    async def list_jobs(
        self,
        client: NamedDependency[Client],
        job_state: Annotated[
            JobState,
            QueryParameter(
                name="state",
                description="waiting, delayed, active, completed, failed or cancelled",
            ),
        ] = "failed",
        offset: Annotated[int, QueryParameter(ge=0, le=MAX_OFFSET)] = 0,
        limit: Annotated[int, QueryParameter(ge=1, le=500)] = 50,
    ) -> JobList:
        channel = self.channel_name
        if job_state not in STATES:
            raise ClientException(detail=f"state must be one of {', '.join(STATES)}")
        try:
            jobs = await client.jobs(channel, job_state, offset=offset, limit=limit)
        except InvalidJobRequest as error:  # a page beyond what the state can list
            raise ValidationException(
                detail=str(error), extra=[{"key": "offset", "message": str(error)}]
            ) from None
        return JobList(channel, job_state, [JobStatus.of(job) for job in jobs])

    @get(
        "/jobs/{job_id:str}",
        summary="One job: state, attempts, result, errors, timestamps",
        operation_id=_operation_id("get_{channel}_job"),
        description="The payload is shown while the job is delayed or failed.",
        responses=_JOB_ERRORS,
    )
    async def job(
        self,
        job_id: FromPath[str],
        client: NamedDependency[Client],
    ) -> JobStatus:
        channel = self.channel_name
        info = await client.job(channel, job_id)
        if info is None:
            raise http_error(JobNotFound(channel, job_id))
        return JobStatus.of(info)

    @post(
        "/jobs/{job_id:str}/retry",
        status_code=202,
        summary="Run a failed or cancelled job again",
        operation_id=_operation_id("retry_{channel}_job"),
        description="Only a failed or cancelled job: it waits again at its priority, "
        "failures reset.",
        responses={**_JOB_ERRORS, **_CONFLICT},
    )
    async def retry(
        self,
        job_id: FromPath[str],
        client: NamedDependency[Client],
    ) -> RetryAccepted:
        try:
            await client.retry(self.channel_name, job_id)
        except JobOperationError as error:
            raise http_error(error) from None
        return RetryAccepted(id=job_id, state="waiting")

    @post(
        "/jobs/{job_id:str}/cancel",
        status_code=200,
        summary="Cancel a waiting, delayed or running job",
        operation_id=_operation_id("cancel_{channel}_job"),
        description="A waiting or delayed job is cancelled at once (`cancelled: true`). A "
        "running one is cancelled cooperatively: its handler gets asyncio.CancelledError "
        "and the job ends cancelled, not retried (`cancelled: false` until then). A "
        "finished job cannot be cancelled (409 naming its state).",
        responses={**_JOB_ERRORS, **_CONFLICT},
    )
    async def cancel(
        self,
        job_id: FromPath[str],
        client: NamedDependency[Client],
    ) -> CancelAccepted:
        try:
            done = await client.cancel(self.channel_name, job_id)
        except JobOperationError as error:
            raise http_error(error) from None
        return CancelAccepted(id=job_id, cancelled=done.cancelled, state=done.state)  # type: ignore[arg-type]

    @post(
        "/jobs/cancel",
        status_code=200,
        summary="Cancel every waiting (or delayed) job of the channel",
        operation_id=_operation_id("cancel_all_{channel}_jobs"),
        description="Running jobs are not touched (cancel them one by one). Returns how many "
        "jobs were cancelled.",
        responses={**BAD_REQUEST, **INVALID, **UNAVAILABLE},
    )
    async def cancel_all(
        self,
        client: NamedDependency[Client],
        job_state: Annotated[
            Literal["waiting", "delayed"],
            QueryParameter(name="state", description="waiting (default) or delayed"),
        ] = "waiting",
    ) -> BulkDone:
        count = await client.cancel_all(self.channel_name, job_state)
        return BulkDone(channel=self.channel_name, count=count)

    @post(
        "/failed/retry",
        status_code=200,
        summary="Run every failed job of the channel again",
        operation_id=_operation_id("retry_all_{channel}_failed"),
        description="Each waits again at its priority, failures reset. Returns how many.",
        responses=UNAVAILABLE,
    )
    async def retry_all_failed(self, client: NamedDependency[Client]) -> BulkDone:
        count = await client.retry_all_failed(self.channel_name)
        return BulkDone(channel=self.channel_name, count=count)

    @delete(
        "/failed",
        status_code=200,
        summary="Remove every failed job of the channel",
        operation_id=_operation_id("discard_all_{channel}_failed"),
        description="Returns how many were removed.",
        responses=UNAVAILABLE,
    )
    async def discard_all_failed(self, client: NamedDependency[Client]) -> BulkDone:
        count = await client.discard_all_failed(self.channel_name)
        return BulkDone(channel=self.channel_name, count=count)

    @post(
        "/pause",
        status_code=204,
        summary="Pause the channel in every process",
        operation_id=_operation_id("pause_{channel}"),
        description="No process starts a job of the channel until it is resumed; running "
        "jobs finish, new jobs are still accepted. Lasts across restarts.",
        responses=UNAVAILABLE,
    )
    async def pause(self, client: NamedDependency[Client]) -> None:
        await client.pause(self.channel_name)

    @post(
        "/resume",
        status_code=204,
        summary="Resume a paused channel",
        operation_id=_operation_id("resume_{channel}"),
        responses=UNAVAILABLE,
    )
    async def resume(self, client: NamedDependency[Client]) -> None:
        await client.resume(self.channel_name)

    @get(
        "/events",
        summary="Job events as they happen (Server-Sent Events)",
        operation_id=_operation_id("stream_{channel}_events"),
        description="One SSE message per event: `id` the event id, `event` its type "
        "(waiting, delayed, active, progress, completed, retrying, failed, stalled, "
        "cancelled, retried, discarded, paused, resumed), `data` the event as JSON. "
        "`job` keeps one job's events. Starts after `Last-Event-ID` (an EventSource "
        "sends it when it reconnects) or `after` (an event id, `0` for the oldest kept), "
        "else from now on. A `gap` event (no id) says how many events were missed "
        "because the channel's cap (`keep.events`) trimmed them first.",
        # no media_type here: a refusal (400, 503) is a JSON body; the stream's own type
        # is on the Stream response and in the 200 spec below
        responses={
            200: ResponseSpec(
                JobEventMessage,
                media_type="text/event-stream",
                description="A stream of events; each message's `data` is this, as JSON",
            ),
            **BAD_REQUEST,
            **UNAVAILABLE,
        },
    )
    async def events(
        self,
        request: Request[Any, Any, Any],
        client: NamedDependency[Client],
        job: Annotated[str | None, QueryParameter(description="Only this job's events")] = None,
        after: Annotated[
            str | None, QueryParameter(description="Start after this event id (`0`: all kept)")
        ] = None,
    ) -> Stream:
        try:
            if job is not None:
                check_job_id(job)
            position = await start_position(
                client, self.channel_name, after, request.headers.get("last-event-id")
            )
        except InvalidJobRequest as error:
            raise ClientException(detail=str(error)) from None  # 400: a malformed parameter
        return Stream(
            sse_stream(client, self.channel_name, job, position),
            media_type="text/event-stream",
            headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
        )

    @delete(
        "/jobs/{job_id:str}",
        status_code=204,
        summary="Remove a finished (completed, failed, cancelled) or delayed job",
        operation_id=_operation_id("discard_{channel}_job"),
        description="A waiting or active job cannot be discarded (409).",
        responses={**_JOB_ERRORS, **_CONFLICT},
    )
    async def discard(
        self,
        job_id: FromPath[str],
        client: NamedDependency[Client],
    ) -> None:
        try:
            await client.discard(self.channel_name, job_id)
        except JobOperationError as error:
            raise http_error(error) from None


# How a failed job operation answers over HTTP: the error's message is the detail.
class _Conflict(ClientException):
    status_code = HTTP_409_CONFLICT


# Exception classes whose status is a class attribute: Litestar's logging reads the
# class's status code to leave a refused request (4xx) without a traceback.
_ANSWER_TO_JOB_ERROR: Mapping[type[JobOperationError], type[HTTPException]] = {
    JobNotFound: NotFoundException,
    JobStateConflict: _Conflict,
}


def http_error(error: JobOperationError) -> HTTPException:
    """`error` as the HTTP answer of the table above."""
    answer = next(
        answer for kind, answer in _ANSWER_TO_JOB_ERROR.items() if isinstance(error, kind)
    )
    return answer(detail=str(error))
