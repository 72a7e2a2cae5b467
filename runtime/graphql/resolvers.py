"""What the generated Query and Mutation call: the channels' jobs through `Client`.

Errors become GraphQL errors in ONE place, `ERROR_CODES`, each with `extensions.code`
(Apollo's names where one fits) and the error's message; the vocabulary is the HTTP API's
(404, 409, 422, 503) and the gRPC service's:

    InputInvalid          BAD_USER_INPUT        extensions.fields: each bad field's or
    (PayloadInvalid too)                        argument's `path`, `field` and `message`
                                                (`payload.to`, `priority`, `delayMs`);
                                                nothing is enqueued
    InvalidJobRequest     BAD_USER_INPUT        a job id, state or page out of bounds
    JobNotFound           NOT_FOUND             never enqueued, or removed by retention
    JobStateConflict      CONFLICT              retry of a job that is not failed, cancel
                                                of a finished one, ...; extensions.state:
                                                the job's state, extensions.allowed: the
                                                states the operation needs
    RedisUnavailable      UNAVAILABLE           Redis could not be reached or refused;
    (EnqueueError too)                          extensions.retryAfter: seconds to wait

An enqueue's options are checked against the same bounds as over HTTP and gRPC
(runtime.engine.limits), named by their GraphQL argument; a job without a priority gets
the channel's declared default, as over HTTP.

The client is the request context's `client` (runtime.graphql.app puts it there).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

import strawberry
from graphql import GraphQLError
from pydantic import BaseModel

from runtime.engine.client import Client, JobRequest
from runtime.engine.jobs import JobState as JobStateName
from runtime.engine.limits import (
    DEFAULT_PRIORITY,
    check_delay,
    check_job_id,
    check_priority,
    check_timeout,
)
from runtime.errors import (
    ChannelkitError,
    InvalidJobRequest,
    JobNotFound,
    JobStateConflict,
    RedisUnavailable,
)
from runtime.graphql.inputs import (
    InputInvalid,
    PayloadInvalid,
    Problem,
    field_paths,
    validate,
    validate_batch,
)
from runtime.graphql.types import (
    GraphQLBulkResult,
    GraphQLCancelResult,
    GraphQLChannelCounts,
    GraphQLEnqueuedBatch,
    GraphQLEnqueuedJob,
    GraphQLJob,
    GraphQLJobPage,
    GraphQLJobState,
)

__all__ = [
    "ERROR_CODES",
    "MAX_PAGE",
    "RETRY_AFTER_S",
    "GraphQLChannel",
    "cancel_job",
    "cancel_waiting_jobs",
    "channel_counts",
    "discard_all_failed",
    "discard_job",
    "enqueue_payload",
    "enqueue_payloads",
    "find_job",
    "graphql_error",
    "list_jobs",
    "pause_channel",
    "resume_channel",
    "retry_all_failed",
    "retry_job",
]

ModelT = TypeVar("ModelT", bound=BaseModel)
T = TypeVar("T")

# Most specific first: the first class an error is an instance of wins.
ERROR_CODES: tuple[tuple[type[ChannelkitError], str], ...] = (
    (InputInvalid, "BAD_USER_INPUT"),
    (InvalidJobRequest, "BAD_USER_INPUT"),
    (JobNotFound, "NOT_FOUND"),
    (JobStateConflict, "CONFLICT"),
    (RedisUnavailable, "UNAVAILABLE"),
)
RETRY_AFTER_S = 1  # what an UNAVAILABLE error suggests, as the HTTP API's Retry-After
MAX_PAGE = 500  # the most jobs one page lists, as over HTTP and gRPC


@dataclass(frozen=True, slots=True)
class GraphQLChannel(Generic[ModelT]):
    """One channel as its generated `enqueue<Channel>` mutations see it."""

    name: str
    model: type[ModelT]
    batch_max: int = 0  # the most payloads in one batch; 0: no limit
    priority: int = DEFAULT_PRIORITY  # of a job enqueued without one (channels.yaml)


def graphql_error(error: ChannelkitError) -> GraphQLError | None:
    """`error` as a GraphQL error with its code, or None when it has none in ERROR_CODES."""
    code = next((code for kind, code in ERROR_CODES if isinstance(error, kind)), None)
    if code is None:
        return None
    extensions: dict[str, Any] = {"code": code}
    if isinstance(error, InputInvalid):
        extensions["fields"] = field_paths(error.problems)
    if isinstance(error, JobStateConflict):  # as the JobState enum spells them
        extensions["state"] = error.state.upper()
        extensions["allowed"] = [state.upper() for state in error.allowed]
    if isinstance(error, RedisUnavailable):
        extensions["retryAfter"] = RETRY_AFTER_S
    return GraphQLError(str(error), extensions=extensions, original_error=error)


async def _answer(call: Awaitable[T]) -> T:
    try:
        return await call
    except ChannelkitError as error:
        converted = graphql_error(error)
        if converted is None:
            raise
        raise converted from None


def _client(info: strawberry.Info) -> Client:
    client = info.context["client"]
    assert isinstance(client, Client)
    return client


async def enqueue_payload(
    info: strawberry.Info,
    channel: GraphQLChannel[Any],
    payload: Any,
    *,
    job_id: str | None = None,
    delay_ms: int | None = None,
    priority: int | None = None,
    timeout_ms: int | None = None,
) -> GraphQLEnqueuedJob:
    """Check the options and validate `payload` (an input object) with the channel's
    model, then enqueue it; every problem of both in one error, and nothing enqueued."""

    async def run() -> GraphQLEnqueuedJob:
        problems = _option_problems(job_id, delay_ms, priority, timeout_ms)
        model = _checked(problems, lambda: validate(payload, channel.model, prefix=("payload",)))
        enqueued = await _client(info).enqueue(
            channel.name,
            model,
            job_id=job_id,
            delay_ms=delay_ms,
            priority=channel.priority if priority is None else priority,
            timeout_ms=timeout_ms,
        )
        return GraphQLEnqueuedJob(id=strawberry.ID(enqueued), channel=channel.name)

    return await _answer(run())


async def enqueue_payloads(
    info: strawberry.Info,
    channel: GraphQLChannel[Any],
    payloads: Sequence[Any],
    *,
    delay_ms: int | None = None,
    priority: int | None = None,
    timeout_ms: int | None = None,
) -> GraphQLEnqueuedBatch:
    """All or nothing: the options (each job of the batch gets them) and every payload
    valid, then one round trip for the batch."""

    async def run() -> GraphQLEnqueuedBatch:
        problems = _option_problems(None, delay_ms, priority, timeout_ms)
        models = _checked(
            problems, lambda: validate_batch(payloads, channel.model, max_size=channel.batch_max)
        )
        requests = [
            JobRequest(model, delay_ms=delay_ms, priority=priority, timeout_ms=timeout_ms)
            for model in models
        ]
        ids = await _client(info).enqueue_many(channel.name, requests, priority=channel.priority)
        return GraphQLEnqueuedBatch(ids=[strawberry.ID(i) for i in ids], channel=channel.name)

    return await _answer(run())


# An enqueue option: its GraphQL argument, the name runtime.engine.limits gives it in its
# messages, and its check.
_OPTION_CHECKS: tuple[tuple[str, str, Callable[[Any], None]], ...] = (
    ("jobId", "job_id", check_job_id),
    ("delayMs", "delay_ms", check_delay),
    ("priority", "priority", check_priority),
    ("timeoutMs", "timeout_ms", check_timeout),
)


def _option_problems(
    job_id: str | None, delay_ms: int | None, priority: int | None, timeout_ms: int | None
) -> list[Problem]:
    """The options out of the bounds every enqueue path shares, named by argument."""
    problems = []
    values = (job_id, delay_ms, priority, timeout_ms)
    for (argument, name, check), value in zip(_OPTION_CHECKS, values, strict=True):
        if value is None:
            continue
        try:
            check(value)
        except InvalidJobRequest as error:
            problems.append(Problem((argument,), str(error).removeprefix(f"{name}: ")))
    return problems


def _checked(problems: list[Problem], validated: Callable[[], T]) -> T:
    """`validated()`'s value when neither it nor the options have a problem; else every
    problem of both in one error (a payload's alone stay a PayloadInvalid)."""
    try:
        value = validated()
    except PayloadInvalid as error:
        if not problems:
            raise
        raise InputInvalid([*problems, *error.problems]) from None
    if problems:
        raise InputInvalid(problems)
    return value


async def find_job(info: strawberry.Info, channel: str, job_id: str) -> GraphQLJob | None:
    """The job, or None when there is none (GraphQL's way to say not found for a query)."""
    _check_id(job_id)
    found = await _answer(_client(info).job(channel, job_id))
    return GraphQLJob.of(found) if found is not None else None


async def channel_counts(info: strawberry.Info, channel: str) -> GraphQLChannelCounts:
    return GraphQLChannelCounts.of(await _answer(_client(info).counts(channel)))


async def list_jobs(
    info: strawberry.Info, channel: str, state: GraphQLJobState, offset: int, limit: int
) -> GraphQLJobPage:
    """A page of the channel's jobs in `state`: failed, completed, delayed newest first;
    waiting and active oldest first (offset + limit at most 10,000 for those)."""
    if offset < 0 or not 1 <= limit <= MAX_PAGE:
        raise GraphQLError(
            f"offset must be 0 or more and limit 1 to {MAX_PAGE}; got {offset} and {limit}",
            extensions={"code": "BAD_USER_INPUT"},
        )
    client = _client(info)
    name: JobStateName = state.value
    counts = await _answer(client.counts(channel))
    jobs = await _answer(client.jobs(channel, name, offset=offset, limit=limit))
    total = int(getattr(counts, name))
    return GraphQLJobPage(
        items=[GraphQLJob.of(job) for job in jobs],
        offset=offset,
        limit=limit,
        total=total,
        has_more=offset + len(jobs) < total,
    )


async def retry_job(info: strawberry.Info, channel: str, job_id: str) -> GraphQLJob:
    """Run a failed job again; the job as it is now (waiting)."""
    client = _client(info)
    await _answer(client.retry(channel, job_id))
    found = await _answer(client.job(channel, job_id))
    if found is None:  # removed between the retry and the read
        converted = graphql_error(JobNotFound(channel, job_id))
        assert converted is not None
        raise converted
    return GraphQLJob.of(found)


async def discard_job(info: strawberry.Info, channel: str, job_id: str) -> bool:
    """Remove a failed, completed or delayed job; True once it is gone."""
    await _answer(_client(info).discard(channel, job_id))
    return True


async def cancel_job(info: strawberry.Info, channel: str, job_id: str) -> GraphQLCancelResult:
    """Cancel a waiting or delayed job at once, a running one cooperatively."""
    _check_id(job_id)
    done = await _answer(_client(info).cancel(channel, job_id))
    return GraphQLCancelResult(
        id=strawberry.ID(job_id),
        channel=channel,
        cancelled=done.cancelled,
        state=GraphQLJobState(done.state),
    )


_CANCELLABLE = (GraphQLJobState.WAITING, GraphQLJobState.DELAYED)


async def cancel_waiting_jobs(
    info: strawberry.Info, channel: str, state: GraphQLJobState = GraphQLJobState.WAITING
) -> GraphQLBulkResult:
    """Cancel every waiting (or delayed) job of the channel; running ones are not touched."""
    if state not in _CANCELLABLE:
        problem = Problem(("state",), f"WAITING or DELAYED; got {state.name}")
        converted = graphql_error(InputInvalid([problem]))
        assert converted is not None
        raise converted
    count = await _answer(_client(info).cancel_all(channel, state.value))
    return GraphQLBulkResult(channel=channel, count=count)


async def retry_all_failed(info: strawberry.Info, channel: str) -> GraphQLBulkResult:
    """Run every failed job of the channel again."""
    count = await _answer(_client(info).retry_all_failed(channel))
    return GraphQLBulkResult(channel=channel, count=count)


async def discard_all_failed(info: strawberry.Info, channel: str) -> GraphQLBulkResult:
    """Remove every failed job of the channel."""
    count = await _answer(_client(info).discard_all_failed(channel))
    return GraphQLBulkResult(channel=channel, count=count)


async def pause_channel(info: strawberry.Info, channel: str) -> GraphQLChannelCounts:
    """No process starts the channel's jobs until resumed; its counts right after."""
    client = _client(info)
    await _answer(client.pause(channel))
    return GraphQLChannelCounts.of(await _answer(client.counts(channel)))


async def resume_channel(info: strawberry.Info, channel: str) -> GraphQLChannelCounts:
    """Processes start the channel's jobs again; its counts right after."""
    client = _client(info)
    await _answer(client.resume(channel))
    return GraphQLChannelCounts.of(await _answer(client.counts(channel)))


def _check_id(job_id: str) -> None:
    if not job_id:
        raise GraphQLError("id: a job id is not empty", extensions={"code": "BAD_USER_INPUT"})
