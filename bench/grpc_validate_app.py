"""The gRPC baseline: a bare grpc.aio server whose servicer only validates the message.

    python bench/grpc_validate_app.py --project DIR --package PKG --port N

The project's generated `ChannelsServicer` (the same request-to-model conversion and
pydantic validation as `runtime serve`), handed an enqueuer that stores nothing and
answers a new id: no interceptors, no Redis. grpc.aio on uvloop, as `runtime serve` runs it.
"""

from __future__ import annotations

import argparse
import importlib
import sys
import uuid
from collections.abc import Sequence
from typing import Any

import grpc
import uvloop
from pydantic import BaseModel


class ValidateOnly:
    """An Enqueuer that keeps nothing: the bench's baseline, never a production path."""

    async def enqueue(
        self,
        channel: str,
        payload: BaseModel,
        *,
        job_id: str | None = None,
        delay_ms: int | None = None,
    ) -> str:
        return job_id or uuid.uuid4().hex

    async def enqueue_many(self, channel: str, payloads: Sequence[BaseModel]) -> list[str]:
        return [uuid.uuid4().hex for _ in payloads]


async def serve(package: str, port: int) -> None:
    service: Any = importlib.import_module(f"{package}.grpc_service")
    pb2_grpc: Any = importlib.import_module(f"{package}.proto").channels_pb2_grpc
    server = grpc.aio.server(options=[("grpc.so_reuseport", 0)])
    pb2_grpc.add_ChannelsServiceServicer_to_server(service.ChannelsServicer(ValidateOnly()), server)
    server.add_insecure_port(f"127.0.0.1:{port}")
    await server.start()
    await server.wait_for_termination()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--project", required=True)
    parser.add_argument("--package", required=True)
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args()
    sys.path.insert(0, args.project)
    uvloop.run(serve(args.package, args.port))


if __name__ == "__main__":
    main()
