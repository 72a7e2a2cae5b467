"""A channel's process function as a typed taskiq task."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar, cast

from pydantic import BaseModel
from taskiq import AsyncBroker, AsyncTaskiqDecoratedTask, Context, TaskiqDepends

from runtime.engine.context import JobContext

__all__ = ["ATTEMPT_LABEL", "register_channel_task"]

PayloadT = TypeVar("PayloadT", bound=BaseModel)
ResultT = TypeVar("ResultT")

ATTEMPT_LABEL = "attempt"


def register_channel_task(
    broker: AsyncBroker,
    task_name: str,
    channel: str,
    payload_model: type[PayloadT],
    process: Callable[[PayloadT, JobContext[Any]], Awaitable[ResultT]],
) -> AsyncTaskiqDecoratedTask[[PayloadT], ResultT]:
    logger = logging.getLogger(f"channelkit.jobs.{channel}")

    async def run(payload: Any, context: Context = TaskiqDepends()) -> ResultT:
        # taskiq hands over the raw value when it cannot parse it; validating again here
        # turns such a poison message into a ValidationError, a failure, not a bad call.
        model = (
            payload if isinstance(payload, payload_model) else payload_model.model_validate(payload)
        )
        attempt = int(context.message.labels.get(ATTEMPT_LABEL, 1))
        job = JobContext(
            job_id=context.message.task_id, channel=channel, attempt=attempt, logger=logger
        )
        return await process(model, job)

    # taskiq parses arguments by these annotations: the payload model, not Any.
    run.__annotations__ = {"payload": payload_model, "context": Context, "return": Any}
    run.__name__ = run.__qualname__ = task_name.replace(".", "_")
    task = broker.register_task(run, task_name=task_name)
    return cast(AsyncTaskiqDecoratedTask[[PayloadT], ResultT], task)
