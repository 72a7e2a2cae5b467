"""GET /processes: the live `runtime serve` processes (runtime.engine.processes)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from litestar import get
from litestar.di import NamedDependency

from runtime.engine.client import Client
from runtime.engine.processes import ProcessInfo
from runtime.http.types import UNAVAILABLE

__all__ = ["ProcessList", "ProcessStatus", "list_processes"]


@dataclass(frozen=True, slots=True)
class ProcessStatus:
    """One process as it last described itself in its heartbeat."""

    id: str
    host: str
    pid: int
    version: str
    app: str
    started_at: datetime
    heartbeat_at: datetime
    worker_channels: list[str]
    http: str  # host:port; '' when its HTTP API is off
    grpc: str
    running_jobs: int

    @classmethod
    def of(cls, info: ProcessInfo) -> ProcessStatus:
        return cls(
            id=info.id,
            host=info.host,
            pid=info.pid,
            version=info.version,
            app=info.app,
            started_at=info.started_at,
            heartbeat_at=info.heartbeat_at,
            worker_channels=list(info.worker_channels),
            http=info.http,
            grpc=info.grpc,
            running_jobs=info.running_jobs,
        )


@dataclass(frozen=True, slots=True)
class ProcessList:
    processes: list[ProcessStatus]


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
async def list_processes(client: NamedDependency[Client]) -> ProcessList:
    return ProcessList([ProcessStatus.of(process) for process in await client.processes()])
