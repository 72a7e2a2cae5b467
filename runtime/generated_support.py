"""The contract between generated code and the runtime: the one module `generated/` imports.

Everything a generated package (`runtime generate`) needs from the runtime is named here,
and only here, so the runtime's own modules can move without changing anyone's committed
`generated/`. A name may be added; one that generated code uses is never removed or
changed incompatibly without a major version.

Engine names load with this module: the generated models, producers, processors and the
registry need nothing else, and a service that only enqueues (`generated.channels.<name>`)
imports neither Litestar nor grpc. The HTTP, gRPC and GraphQL names load on first
use, when the generated `routes`, `grpc_service` or `graphql_schema` module asks for them.

    models       Payload (the base of every model), NotNull (optional, but not null),
                 Email (`format: email`; loads email-validator on first use)
    channels     Client, Enqueuer
    processors   JobContext, register_channel_task
    registry     Channel, Backoff, Keep, Limiter, Retention, Retry, Schedule, Stalled,
                 ResourcesFactory
    routes       JobRoutes, ENQUEUE_ERRORS, DelayMs, IdempotencyKey, EnqueuedJob,
                 EnqueuedBatch, batch_operation, validate_batch        (Litestar)
    grpc_service MessageTable, MessageSpec, FieldSpec, ConstSpec, ChannelSpec,
                 MessageEnqueuer, JobsServicer, ChannelBackend        (grpc)
    graphql_schema  GraphQLChannel, GraphQLJob, GraphQLJobPage, GraphQLJobState,
                 GraphQLChannelCounts, GraphQLEnqueuedJob, GraphQLEnqueuedBatch,
                 GraphQLCancelResult, GraphQLBulkResult, Long, JSON,
                 build_graphql_schema, enqueue_payload, enqueue_payloads, find_job,
                 channel_counts, list_jobs, retry_job, discard_job, cancel_job,
                 cancel_waiting_jobs, retry_all_failed, discard_all_failed,
                 pause_channel, resume_channel, GraphQLJobEvent,
                 job_events                                            (strawberry)
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from runtime.engine.channel import (
    Backoff,
    Channel,
    Keep,
    Limiter,
    Retention,
    Retry,
    Schedule,
    Stalled,
)
from runtime.engine.client import Client, Enqueuer, JobRequest
from runtime.engine.context import JobContext, ResourcesFactory
from runtime.engine.model import NotNull, Payload
from runtime.engine.tasks import register_channel_task

if TYPE_CHECKING:
    from runtime.engine.email_format import Email
    from runtime.graphql.app import build_graphql_schema
    from runtime.graphql.resolvers import (
        GraphQLChannel,
        cancel_job,
        cancel_waiting_jobs,
        channel_counts,
        discard_all_failed,
        discard_job,
        enqueue_payload,
        enqueue_payloads,
        find_job,
        list_jobs,
        pause_channel,
        resume_channel,
        retry_all_failed,
        retry_job,
    )
    from runtime.graphql.subscriptions import job_events
    from runtime.graphql.types import (
        JSON,
        GraphQLBulkResult,
        GraphQLCancelResult,
        GraphQLChannelCounts,
        GraphQLEnqueuedBatch,
        GraphQLEnqueuedJob,
        GraphQLJob,
        GraphQLJobEvent,
        GraphQLJobPage,
        GraphQLJobState,
        Long,
    )
    from runtime.grpc.jobs import ChannelBackend, JobsServicer
    from runtime.grpc.payload import (
        ChannelSpec,
        ConstSpec,
        FieldSpec,
        MessageEnqueuer,
        MessageSpec,
        MessageTable,
    )
    from runtime.http.enqueue import batch_operation, validate_batch
    from runtime.http.routes import JobRoutes
    from runtime.http.types import (
        ENQUEUE_ERRORS,
        BatchBody,
        DelayMs,
        EnqueuedBatch,
        EnqueuedJob,
        IdempotencyKey,
        Priority,
        TimeoutMs,
    )

__all__ = [
    "ENQUEUE_ERRORS",
    "JSON",
    "Backoff",
    "BatchBody",
    "Channel",
    "ChannelBackend",
    "ChannelSpec",
    "Client",
    "ConstSpec",
    "DelayMs",
    "Email",
    "EnqueuedBatch",
    "EnqueuedJob",
    "Enqueuer",
    "FieldSpec",
    "GraphQLBulkResult",
    "GraphQLCancelResult",
    "GraphQLChannel",
    "GraphQLChannelCounts",
    "GraphQLEnqueuedBatch",
    "GraphQLEnqueuedJob",
    "GraphQLJob",
    "GraphQLJobEvent",
    "GraphQLJobPage",
    "GraphQLJobState",
    "IdempotencyKey",
    "JobContext",
    "JobRequest",
    "JobRoutes",
    "JobsServicer",
    "Keep",
    "Limiter",
    "Long",
    "MessageEnqueuer",
    "MessageSpec",
    "MessageTable",
    "NotNull",
    "Payload",
    "Priority",
    "ResourcesFactory",
    "Retention",
    "Retry",
    "Schedule",
    "Stalled",
    "TimeoutMs",
    "batch_operation",
    "build_graphql_schema",
    "cancel_job",
    "cancel_waiting_jobs",
    "channel_counts",
    "discard_all_failed",
    "discard_job",
    "enqueue_payload",
    "enqueue_payloads",
    "find_job",
    "job_events",
    "list_jobs",
    "pause_channel",
    "register_channel_task",
    "resume_channel",
    "retry_all_failed",
    "retry_job",
    "validate_batch",
]

# Transport names (and Email, which loads email-validator) → the module that defines
# them, imported on first use.
_LAZY: dict[str, str] = {
    "Email": "runtime.engine.email_format",
    "JobRoutes": "runtime.http.routes",
    "batch_operation": "runtime.http.enqueue",
    "validate_batch": "runtime.http.enqueue",
    "ENQUEUE_ERRORS": "runtime.http.types",
    "DelayMs": "runtime.http.types",
    "Priority": "runtime.http.types",
    "TimeoutMs": "runtime.http.types",
    "BatchBody": "runtime.http.types",
    "EnqueuedBatch": "runtime.http.types",
    "EnqueuedJob": "runtime.http.types",
    "IdempotencyKey": "runtime.http.types",
    "ConstSpec": "runtime.grpc.payload",
    "FieldSpec": "runtime.grpc.payload",
    "MessageEnqueuer": "runtime.grpc.payload",
    "MessageSpec": "runtime.grpc.payload",
    "MessageTable": "runtime.grpc.payload",
    "ChannelSpec": "runtime.grpc.payload",
    "ChannelBackend": "runtime.grpc.jobs",
    "JobsServicer": "runtime.grpc.jobs",
    "build_graphql_schema": "runtime.graphql.app",
    "GraphQLChannel": "runtime.graphql.resolvers",
    "cancel_job": "runtime.graphql.resolvers",
    "cancel_waiting_jobs": "runtime.graphql.resolvers",
    "channel_counts": "runtime.graphql.resolvers",
    "discard_all_failed": "runtime.graphql.resolvers",
    "discard_job": "runtime.graphql.resolvers",
    "enqueue_payload": "runtime.graphql.resolvers",
    "enqueue_payloads": "runtime.graphql.resolvers",
    "find_job": "runtime.graphql.resolvers",
    "list_jobs": "runtime.graphql.resolvers",
    "pause_channel": "runtime.graphql.resolvers",
    "resume_channel": "runtime.graphql.resolvers",
    "retry_all_failed": "runtime.graphql.resolvers",
    "retry_job": "runtime.graphql.resolvers",
    "job_events": "runtime.graphql.subscriptions",
    "JSON": "runtime.graphql.types",
    "GraphQLBulkResult": "runtime.graphql.types",
    "GraphQLCancelResult": "runtime.graphql.types",
    "GraphQLChannelCounts": "runtime.graphql.types",
    "GraphQLEnqueuedBatch": "runtime.graphql.types",
    "GraphQLEnqueuedJob": "runtime.graphql.types",
    "GraphQLJob": "runtime.graphql.types",
    "GraphQLJobEvent": "runtime.graphql.types",
    "GraphQLJobPage": "runtime.graphql.types",
    "GraphQLJobState": "runtime.graphql.types",
    "Long": "runtime.graphql.types",
}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value  # found directly from now on
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})
