"""What the generated Subscription calls: a channel's job events, as they happen.

`job_events` checks everything a subscription can get wrong before the stream starts, so
the client gets one GraphQL error (graphql-transport-ws: an `error` message) instead of
a stream that fails on its first read:

    after     not an event id this server gave (`<ms>-<seq>`, or `0`)   BAD_USER_INPUT,
    jobId     empty or over 200 characters                            each named in
                                                                        extensions.fields
    Redis     unreachable (one read of the newest event id)           UNAVAILABLE

Then it follows `Client.event_hub` (runtime.engine.events): every subscription of the
process shares one Redis read per channel, and one that falls behind the channel's cap
is told with a GAP event. When the client unsubscribes (or goes away), strawberry
cancels the operation and the engine's subscription is closed with it; a Redis outage
later in the stream ends it with an UNAVAILABLE error, the client resubscribes with
`after` set to the last id it got.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator

import strawberry
from graphql import GraphQLError

from runtime.engine.client import Client
from runtime.engine.events import EventPosition
from runtime.engine.limits import check_job_id
from runtime.errors import ChannelkitError, InvalidJobRequest
from runtime.graphql.inputs import InputInvalid, Problem
from runtime.graphql.resolvers import graphql_error
from runtime.graphql.types import GraphQLJobEvent

__all__ = ["job_events"]


async def job_events(
    info: strawberry.Info, channel: str, *, job_id: str | None = None, after: str | None = None
) -> AsyncGenerator[GraphQLJobEvent, None]:
    """The channel's events (one job's with `job_id`) after the event id `after` ("0":
    from the oldest kept; None: from now on). Raises the GraphQL errors above before the
    stream starts."""
    position, problems = _arguments(job_id, after)
    if problems:
        raise _converted(InputInvalid(problems))
    client = info.context["client"]
    assert isinstance(client, Client)
    try:
        newest = await client.event_hub.reader(channel).latest()
    except ChannelkitError as error:
        raise _converted(error) from None
    # "From now on" is from this read: an event appended after it reaches the subscriber.
    return _stream(client, channel, job_id, newest if position is None else position)


def _arguments(job_id: str | None, after: str | None) -> tuple[EventPosition | None, list[Problem]]:
    problems: list[Problem] = []
    position = None
    if after is not None:
        try:
            position = EventPosition.parse(after)
        except InvalidJobRequest as error:
            problems.append(Problem(("after",), str(error)))
    if job_id is not None:
        try:
            check_job_id(job_id)
        except InvalidJobRequest as error:
            problems.append(Problem(("jobId",), str(error).removeprefix("job_id: ")))
    return position, problems


async def _stream(
    client: Client, channel: str, job_id: str | None, position: EventPosition
) -> AsyncGenerator[GraphQLJobEvent, None]:
    events = client.event_hub.subscribe(channel, job_id=job_id, after=position)
    try:
        async for event in events:
            yield GraphQLJobEvent.of(event)
            # Sending does not wait while the socket takes data, nor does a backlog of
            # events: without this turn, one subscriber behind by thousands would send
            # them all, and every other task of the process (workers included) would wait.
            await asyncio.sleep(0)
    except ChannelkitError as error:  # Redis gone while catching up: the stream ends
        raise _converted(error) from None
    finally:
        await events.aclose()  # the engine's subscription ends with this one


def _converted(error: ChannelkitError) -> GraphQLError:
    converted = graphql_error(error)
    if converted is None:
        raise error
    return converted
