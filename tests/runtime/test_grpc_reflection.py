"""A gRPC client that has no .proto file: it learns the service through server reflection,
builds the request message from the descriptors it received, and enqueues a job."""

from __future__ import annotations

import asyncio
from typing import Any

import grpc
from google.protobuf import descriptor_pool, message_factory
from grpc_reflection.v1alpha.proto_reflection_descriptor_database import (
    ProtoReflectionDescriptorDatabase,
)

from tests.runtime.conftest import Probe, ServeFactory, events_of


def _enqueue_by_reflection(target: str, job: str) -> tuple[list[str], str]:
    """(the Channels service's methods, the job id returned), using only reflection."""
    with grpc.insecure_channel(target) as channel:
        database = ProtoReflectionDescriptorDatabase(channel)
        services = list(database.get_services())
        service_name = next(name for name in services if name.endswith(".Channels"))
        # A pool of our own: nothing here comes from generated stubs.
        pool = descriptor_pool.DescriptorPool(database)
        service = pool.FindServiceByName(service_name)
        method = service.FindMethodByName("EnqueueFast")
        request_class = message_factory.GetMessageClass(method.input_type)
        reply_class = message_factory.GetMessageClass(method.output_type)
        request: Any = request_class()  # built at runtime: its fields are not typed
        request.payload.id = job
        call = channel.unary_unary(
            f"/{service_name}/{method.name}",
            request_serializer=request_class.SerializeToString,
            response_deserializer=reply_class.FromString,
        )
        reply: Any = call(request, timeout=10)
        return [m.name for m in service.methods], str(reply.job_id)


async def test_a_reflection_client_lists_and_calls_enqueue(
    serve: ServeFactory, probe: Probe
) -> None:
    server = await serve()
    methods, job_id = await asyncio.to_thread(
        _enqueue_by_reflection, server.grpc_target, "via-reflection"
    )
    assert {"EnqueueFast", "EnqueueFastBatch", "EnqueueSlow", "EnqueueOther"} <= set(methods)
    assert job_id
    events = await probe.wait_for(lambda seen: bool(events_of(seen, "fast")))
    assert events_of(events, "fast") == [("via-reflection", server.pid)]
