"""What the generated Query and Mutation call: the channels' jobs through `Client`.

Errors become GraphQL errors in ONE place, `ERROR_CODES`, each with `extensions.code`
(Apollo's names where one fits) and the error's message:

    PayloadInvalid        BAD_USER_INPUT        extensions.fields: each bad field's
                                                `path`, `field` and `message`; nothing
                                                is enqueued
    InvalidJobRequest     BAD_USER_INPUT        a job id, delay or page out of bounds
    JobNotFound           NOT_FOUND             never enqueued, or removed by retention
    JobStateConflict      CONFLICT              retry of a job that is not failed, ...
    RedisUnavailable      UNAVAILABLE           Redis could not be reached or refused;
    (EnqueueError too)                          extensions.retryAfter: seconds to wait

The client is the request context's `client` (runtime.graphql.app puts it there).
"""

from __future__ import annotations

from collections.abc import Awaitable, Sequence
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

import strawberry
from graphql import GraphQLError
from pydantic import BaseModel

from runtime.engine.client import Client
from runtime.engine.jobs import JobState as JobStateName
from runtime.errors import (
    ChannelkitError,
    InvalidJobRequest,
    JobNotFound,
    JobStateConflict,
    RedisUnavailable,
)
from runtime.graphql.inputs import PayloadInvalid, field_paths, validate, validate_batch
from runtime.graphql.types import (
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
    "channel_counts",
    "discard_job",
    "enqueue_payload",
    "enqueue_payloads",
    "find_job",
    "graphql_error",
    "list_jobs",
    "retry_job",
]

ModelT = TypeVar("ModelT", bound=BaseModel)
T = TypeVar("T")

# Most specific first: the first class an error is an instance of wins.
ERROR_CODES: tuple[tuple[type[ChannelkitError], str], ...] = (
    (PayloadInvalid, "BAD_USER_INPUT"),
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


def graphql_error(error: ChannelkitError) -> GraphQLError | None:
    """`error` as a GraphQL error with its code, or None when it has none in ERROR_CODES."""
    code = next((code for kind, code in ERROR_CODES if isinstance(error, kind)), None)
    if code is None:
        return None
    extensions: dict[str, Any] = {"code": code}
    if isinstance(error, PayloadInvalid):
        extensions["fields"] = field_paths(error.problems)
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
) -> GraphQLEnqueuedJob:
    """Validate `payload` (an input object) with the channel's model, then enqueue it."""

    async def run() -> GraphQLEnqueuedJob:
        model = validate(payload, channel.model, prefix=("payload",))
        enqueued = await _client(info).enqueue(
            channel.name, model, job_id=job_id, delay_ms=delay_ms
        )
        return GraphQLEnqueuedJob(id=strawberry.ID(enqueued), channel=channel.name)

    return await _answer(run())


async def enqueue_payloads(
    info: strawberry.Info, channel: GraphQLChannel[Any], payloads: Sequence[Any]
) -> GraphQLEnqueuedBatch:
    """All or nothing: every payload valid, then one round trip for the batch."""

    async def run() -> GraphQLEnqueuedBatch:
        models = validate_batch(payloads, channel.model, max_size=channel.batch_max)
        ids = await _client(info).enqueue_many(channel.name, models)
        return GraphQLEnqueuedBatch(ids=[strawberry.ID(i) for i in ids], channel=channel.name)

    return await _answer(run())


async def find_job(info: strawberry.Info, channel: str, job_id: str) -> GraphQLJob | None:
    """The job, or None when there is none (GraphQL's way to say not found for a query)."""
    if not job_id:
        raise GraphQLError("id: a job id is not empty", extensions={"code": "BAD_USER_INPUT"})
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
