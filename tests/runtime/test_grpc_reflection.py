"""A gRPC client that has no .proto file: it learns the service through server reflection,
builds the request message from the descriptors it received, and enqueues a job."""

from __future__ import annotations

import asyncio
import json
import subprocess
from typing import Any

import grpc
import pytest
from google.protobuf import descriptor_pool, message_factory
from grpc_reflection.v1alpha.proto_reflection_descriptor_database import (
    ProtoReflectionDescriptorDatabase,
)

from tests.conftest import ROOT
from tests.runtime.conftest import Probe, ServeFactory, events_of


def _enqueue_by_reflection(target: str, job: str) -> tuple[list[str], str]:
    """(the ChannelsService's methods, the job id returned), using only reflection."""
    with grpc.insecure_channel(target) as channel:
        database = ProtoReflectionDescriptorDatabase(channel)
        services = list(database.get_services())
        service_name = next(name for name in services if name.endswith(".ChannelsService"))
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


BUF = ROOT / "node_modules" / ".bin" / "buf"


def _buf_curl(target: str, protocol: str, *args: str) -> subprocess.CompletedProcess[str]:
    """`buf curl` (an independent gRPC client) learning the schema by reflection only."""
    command = [
        str(BUF),
        "curl",
        "--protocol",
        "grpc",
        "--http2-prior-knowledge",
        "--reflect-protocol",
        protocol,
        *args,
    ]
    return subprocess.run(
        [*command, f"http://{target}/probe.v1.ChannelsService/EnqueueFast"]
        if "--list-methods" not in args
        else [*command, f"http://{target}"],
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )


@pytest.mark.skipif(not BUF.is_file(), reason="buf is not installed: run `npm ci` (see .ci/run)")
@pytest.mark.parametrize("protocol", ["grpc-v1", "grpc-v1alpha"])
async def test_reflection_v1_and_v1alpha_serve_an_independent_client(
    serve: ServeFactory, probe: Probe, protocol: str
) -> None:
    server = await serve()
    listed = await asyncio.to_thread(_buf_curl, server.grpc_target, protocol, "--list-methods")
    assert listed.returncode == 0, listed.stderr
    assert "probe.v1.ChannelsService/EnqueueFast" in listed.stdout.split()
    job = f"buf-{protocol}"
    called = await asyncio.to_thread(
        _buf_curl, server.grpc_target, protocol, "-d", json.dumps({"payload": {"id": job}})
    )
    assert called.returncode == 0, called.stderr
    assert json.loads(called.stdout)["jobId"]
    events = await probe.wait_for(lambda seen: (job, server.pid) in events_of(seen, "fast"))
    assert (job, server.pid) in events_of(events, "fast")
