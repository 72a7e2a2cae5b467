"""The contract between generated code and the runtime: the one module `generated/` imports.

Everything a generated package (`runtime generate`) needs from the runtime is named here,
and only here, so the runtime's own modules can move without changing anyone's committed
`generated/`. A name may be added; one that generated code uses is never removed or
changed incompatibly without a major version.

Engine names load with this module: the generated models, producers, processors and the
registry need nothing else, and a service that only enqueues (`generated.channels.<name>`)
imports neither Litestar nor grpc. The HTTP and gRPC names load on first use, when the
generated `routes` or `grpc_service` module asks for them.

    models       Payload (the base of every model), NotNull (optional, but not null)
    channels     Client, Enqueuer
    processors   JobContext, register_channel_task
    registry     Channel, Backoff, Keep, Limiter, Retention, Retry, Schedule, Stalled,
                 ResourcesFactory
    routes       JobRoutes, ENQUEUE_ERRORS, DelayMs, IdempotencyKey, EnqueuedJob,
                 EnqueuedBatch, batch_operation, validate_batch        (Litestar)
    grpc_service MessageTable, MessageSpec, FieldSpec, ConstSpec, ChannelSpec,
                 MessageEnqueuer, JobsServicer, ChannelBackend        (grpc)
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
    "Backoff",
    "BatchBody",
    "Channel",
    "ChannelBackend",
    "ChannelSpec",
    "Client",
    "ConstSpec",
    "DelayMs",
    "EnqueuedBatch",
    "EnqueuedJob",
    "Enqueuer",
    "FieldSpec",
    "IdempotencyKey",
    "JobContext",
    "JobRequest",
    "JobRoutes",
    "JobsServicer",
    "Keep",
    "Limiter",
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
    "register_channel_task",
    "validate_batch",
]

# Transport names → the module that defines them, imported on first use.
_LAZY: dict[str, str] = {
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
