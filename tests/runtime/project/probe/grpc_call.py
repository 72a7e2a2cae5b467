"""`python -m probe.grpc_call APP TARGET CALLS`: gRPC calls through the generated stubs.

CALLS is a JSON list of `{"method": "EnqueueFast", "request": {...}, "metadata": [[k, v]]}`
where `request` is the `<method>Request` message in protobuf's JSON form; `"service":
"JobsService"` calls that service instead of ChannelsService. Prints a JSON
list with, for each call, `{"code": "OK" or a status name, "details": ..., "reply": {...}}`.

A process of its own because every generated package registers the proto package
`channels.v1` in protobuf's default descriptor pool: two generated packages cannot be
imported into one process, and the test runner may already hold another one.
"""

from __future__ import annotations

import asyncio
import importlib
import json
import sys
from typing import Any

import grpc
from google.protobuf import json_format


async def call_all(app: str, target: str, calls: list[dict[str, Any]]) -> list[dict[str, Any]]:
    pb2 = importlib.import_module(f"{app}.proto").channels_pb2
    pb2_grpc = importlib.import_module(f"{app}.proto").channels_pb2_grpc
    results: list[dict[str, Any]] = []
    async with grpc.aio.insecure_channel(target) as channel:
        stubs = {
            "ChannelsService": pb2_grpc.ChannelsServiceStub(channel),
            "JobsService": pb2_grpc.JobsServiceStub(channel),
        }
        for call in calls:
            stub = stubs[call.get("service", "ChannelsService")]
            method = call["method"]
            request = json_format.ParseDict(call["request"], getattr(pb2, f"{method}Request")())
            metadata = [(key, value) for key, value in call.get("metadata", [])]
            try:
                reply = await getattr(stub, method)(request, timeout=10, metadata=metadata)
            except grpc.aio.AioRpcError as error:
                results.append({"code": error.code().name, "details": error.details() or ""})
            else:
                as_dict = json_format.MessageToDict(reply, preserving_proto_field_name=True)
                results.append({"code": "OK", "details": "", "reply": as_dict})
    return results


def main() -> None:
    app, target, calls = sys.argv[1], sys.argv[2], json.loads(sys.argv[3])
    print(json.dumps(asyncio.run(call_all(app, target, calls))))


if __name__ == "__main__":
    main()
