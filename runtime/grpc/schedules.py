"""`service SchedulesService`, the same in every generated package: create, list, pause,
resume and remove a channel's schedules (generator/proto_schedules.py).

    SchedulesServicer(schedules, payloads, messages)   the servicer; `add_to_server(server)`
                                                       serves it with the package's messages

Payloads arrive as JSON text (`payload_json`) and are validated with the channel's payload
model: a bad field ends the call with INVALID_ARGUMENT naming it (`payload_json.to: ...`),
as a bad cron, time zone or interval does (`cron: ...`). Errors become statuses through
`runtime.grpc.jobs.STATUS_CODES`, the one table.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable, Mapping
from datetime import UTC, datetime
from typing import Any, Protocol

import grpc
from google.protobuf import json_format
from google.protobuf.descriptor import FileDescriptor
from google.protobuf.message import Message as ProtoMessage
from google.protobuf.timestamp_pb2 import Timestamp
from pydantic import BaseModel, ValidationError

from runtime.engine.schedules import Schedule, ScheduleInfo, Schedules
from runtime.errors import InvalidScheduleError, UnknownChannelError
from runtime.grpc.jobs import await_or_abort

__all__ = ["SERVICE", "SchedulesServicer"]

SERVICE = "SchedulesService"
Context = grpc.aio.ServicerContext[Any, Any]

_CATCH_UP_NUMBERS = {"once": 1, "skip": 2}
_CATCH_UP_BY_NUMBER = {0: "once", 1: "once", 2: "skip"}


class _Messages(Protocol):
    """A generated `channels_pb2` module: its `service SchedulesService` messages are
    looked up by name."""

    @property
    def DESCRIPTOR(self) -> FileDescriptor: ...


# An RPC: its implementation, request class and reply class.
_Method = tuple[Callable[..., Awaitable[ProtoMessage]], type[ProtoMessage], type[ProtoMessage]]


class SchedulesServicer:
    """`service SchedulesService` of one generated package; `payloads` maps each channel
    to its payload model."""

    def __init__(
        self,
        schedules: Schedules,
        payloads: Mapping[str, type[BaseModel]],
        messages: _Messages,
    ) -> None:
        self._schedules = schedules
        self._payloads = dict(payloads)
        self._messages = messages
        self.service_name = messages.DESCRIPTOR.services_by_name[SERVICE].full_name

    def _message(self, name: str) -> type[ProtoMessage]:
        found: type[ProtoMessage] = getattr(self._messages, name)
        return found

    def _reply(self, name: str, data: dict[str, Any]) -> ProtoMessage:
        return json_format.ParseDict(data, self._message(name)())

    def _channel(self, channel: str) -> type[BaseModel]:
        model = self._payloads.get(channel)
        if model is None:
            raise UnknownChannelError(channel, sorted(self._payloads))
        return model

    async def UpsertSchedule(self, request: Any, context: Context) -> ProtoMessage:
        async def upsert() -> ScheduleInfo:
            schedule = self._build(request)
            return await self._schedules.upsert(request.channel, schedule)

        info = await await_or_abort(context, upsert())
        return self._reply("UpsertScheduleResponse", {"schedule": _schedule_data(info)})

    async def GetSchedule(self, request: Any, context: Context) -> ProtoMessage:
        async def get() -> ScheduleInfo:
            self._channel(request.channel)
            return await self._schedules.get(request.channel, request.name)

        info = await await_or_abort(context, get())
        return self._reply("GetScheduleResponse", {"schedule": _schedule_data(info)})

    async def ListSchedules(self, request: Any, context: Context) -> ProtoMessage:
        async def listed() -> list[ScheduleInfo]:
            self._channel(request.channel)
            return list(await self._schedules.list(request.channel))

        found = await await_or_abort(context, listed())
        return self._reply(
            "ListSchedulesResponse", {"schedules": [_schedule_data(info) for info in found]}
        )

    async def PauseSchedule(self, request: Any, context: Context) -> ProtoMessage:
        async def pause() -> ScheduleInfo:
            self._channel(request.channel)
            return await self._schedules.pause(request.channel, request.name)

        info = await await_or_abort(context, pause())
        return self._reply("PauseScheduleResponse", {"schedule": _schedule_data(info)})

    async def ResumeSchedule(self, request: Any, context: Context) -> ProtoMessage:
        async def resume() -> ScheduleInfo:
            self._channel(request.channel)
            return await self._schedules.resume(request.channel, request.name)

        info = await await_or_abort(context, resume())
        return self._reply("ResumeScheduleResponse", {"schedule": _schedule_data(info)})

    async def RemoveSchedule(self, request: Any, context: Context) -> ProtoMessage:
        async def remove() -> None:
            self._channel(request.channel)
            await self._schedules.remove(request.channel, request.name)

        await await_or_abort(context, remove())
        return self._reply("RemoveScheduleResponse", {"removed": True})

    def _build(self, request: Any) -> Schedule:
        """The request as a Schedule; InvalidScheduleError naming the bad field."""
        model = self._channel(request.channel)
        try:
            data = json.loads(request.payload_json or "{}")
        except ValueError as error:
            raise InvalidScheduleError(f"payload_json: not JSON: {error}") from None
        try:
            payload = model.model_validate(data)
        except ValidationError as invalid:
            details = "; ".join(
                f"payload_json.{'.'.join(str(part) for part in error['loc'])}: {error['msg']}"
                for error in invalid.errors()
            )
            raise InvalidScheduleError(details) from None
        cadence = request.WhichOneof("cadence")
        return Schedule.with_payload(
            request.name,
            payload,
            cron=request.cron if cadence == "cron" else None,
            every_ms=request.every_ms if cadence == "every_ms" else None,
            timezone=request.timezone or "UTC",
            start_ms=_ms(request, "start"),
            end_ms=_ms(request, "end"),
            catch_up=_CATCH_UP_BY_NUMBER.get(request.catch_up, "once"),
            paused=request.paused,
        )

    def add_to_server(self, server: grpc.aio.Server) -> None:
        """Serve the six methods on `server`."""
        behaviours = {
            "UpsertSchedule": self.UpsertSchedule,
            "GetSchedule": self.GetSchedule,
            "ListSchedules": self.ListSchedules,
            "PauseSchedule": self.PauseSchedule,
            "ResumeSchedule": self.ResumeSchedule,
            "RemoveSchedule": self.RemoveSchedule,
        }
        methods: dict[str, _Method] = {
            name: (behaviour, self._message(f"{name}Request"), self._message(f"{name}Response"))
            for name, behaviour in behaviours.items()
        }
        handlers = {
            name: grpc.unary_unary_rpc_method_handler(
                behaviour,
                request_deserializer=request.FromString,
                response_serializer=reply.SerializeToString,
            )
            for name, (behaviour, request, reply) in methods.items()
        }
        generic = grpc.method_handlers_generic_handler(self.service_name, handlers)
        server.add_generic_rpc_handlers((generic,))
        server.add_registered_method_handlers(self.service_name, handlers)


def _ms(request: Any, field: str) -> int | None:
    if not request.HasField(field):
        return None
    stamp: Timestamp = getattr(request, field)
    return stamp.ToMilliseconds()


def _schedule_data(info: ScheduleInfo) -> dict[str, Any]:
    """`info` in the proto JSON form of `channels.v1.Schedule`."""
    schedule = info.schedule
    data: dict[str, Any] = {
        "name": schedule.name,
        "channel": info.channel,
        "timezone": schedule.timezone,
        "payload_json": json.dumps(dict(schedule.payload), separators=(",", ":")),
        "catch_up": _CATCH_UP_NUMBERS[schedule.catch_up],
        "paused": info.paused,
        "source": info.source,
        "last_job_id": info.last_job_id or "",
        "enqueued": info.enqueued,
        "error": info.error or "",
    }
    if schedule.cron is not None:
        data["cron"] = schedule.cron
    if schedule.every_ms is not None:
        data["every_ms"] = schedule.every_ms
    times = {
        "start": schedule.start_ms,
        "end": schedule.end_ms,
        "next_run": info.next_run_ms,
        "last_run": info.last_run_ms,
    }
    data.update((name, _timestamp(ms)) for name, ms in times.items() if ms is not None)
    return data


def _timestamp(ms: int) -> str:
    stamp = Timestamp()
    stamp.FromDatetime(datetime.fromtimestamp(ms / 1000, tz=UTC))
    return stamp.ToJsonString()
