"""GET /processes: the live `runtime serve` processes (runtime.engine.processes)."""

from __future__ import annotations

from typing import Any

from litestar import get
from litestar.di import NamedDependency

from runtime.engine.client import Client
from runtime.http.types import UNAVAILABLE

__all__ = ["list_processes"]


@get(
    "/processes",
    summary="Live runtime serve processes",
    description="Every process that heartbeated within the last 15 s (each beats every "
    "5 s): id, host, pid, version, app, start time, last heartbeat, worker channels, "
    "HTTP and gRPC addresses, jobs running now. Oldest start first.",
    tags=("processes",),
    operation_id="list_processes",
    responses=UNAVAILABLE,
)
async def list_processes(client: NamedDependency[Client]) -> dict[str, list[dict[str, Any]]]:
    return {"processes": [process.as_dict() for process in await client.processes()]}
