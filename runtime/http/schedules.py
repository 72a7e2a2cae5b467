"""HTTP routes of a channel's schedules, part of every channel's controller (through
`JobRoutes`):

    GET    /channels/{name}/schedules                 every schedule of the channel
    GET    /channels/{name}/schedules/{schedule}      one: definition, next and last run
    PUT    /channels/{name}/schedules/{schedule}      create or change (upsertJobScheduler)
    POST   /channels/{name}/schedules/{schedule}/pause
    POST   /channels/{name}/schedules/{schedule}/resume
    DELETE /channels/{name}/schedules/{schedule}      remove (its jobs stay)

The payload is validated with the channel's payload model (422 naming each bad field);
a bad cron expression, time zone or interval is 422 naming it; a schedule declared in
channels.yaml can be paused and resumed, not changed or removed (409).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal

from litestar import Controller, delete, get, post, put
from litestar.di import NamedDependency
from litestar.exceptions import ClientException, NotFoundException, ValidationException
from litestar.openapi import ResponseSpec
from litestar.params import FromPath, JSONBody
from litestar.status_codes import HTTP_409_CONFLICT
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from runtime.engine.cadence import as_ms, check_timezone
from runtime.engine.client import Client
from runtime.engine.schedules import Schedule, ScheduleInfo
from runtime.errors import (
    InvalidScheduleError,
    ScheduleConflict,
    ScheduleNotFound,
    ScheduleOperationError,
)
from runtime.http.operation_ids import operation_id
from runtime.http.types import BAD_REQUEST, INVALID, UNAVAILABLE, ErrorBody

__all__ = ["ScheduleRequest", "ScheduleRoutes", "ScheduleStatus"]

_NOT_FOUND = {404: ResponseSpec(ErrorBody, description="No schedule of that name")}
_CONFLICT = {409: ResponseSpec(ErrorBody, description="Declared in channels.yaml")}


class ScheduleRequest(BaseModel):
    """A schedule's definition: `cron` or `every_ms`, and the payload of its jobs."""

    model_config = ConfigDict(extra="forbid")

    cron: str | None = Field(
        None, description="5 fields, or 6 with seconds first (`*/15 * * * * *`)"
    )
    every_ms: int | None = Field(None, description="A fixed interval instead of cron, >= 1000")
    timezone: str = Field("UTC", description="IANA name the cron expression is read in")
    payload: dict[str, Any] = Field(description="The channel's payload, for every job")
    start: datetime | None = Field(None, description="No tick before (ISO 8601)")
    end: datetime | None = Field(None, description="No tick after (ISO 8601)")
    catch_up: Literal["once", "skip"] = Field(
        "once", description="Ticks missed while no process ran: one job, or none"
    )
    paused: bool = False


@dataclass(frozen=True, slots=True)
class ScheduleStatus:
    """A schedule as stored: its definition, state and history (times in UTC)."""

    name: str
    channel: str
    cron: str | None
    every_ms: int | None
    timezone: str
    payload: dict[str, Any]
    start: str | None
    end: str | None
    catch_up: str
    paused: bool
    source: str
    next_run: str | None
    last_run: str | None
    last_job_id: str | None
    enqueued: int
    error: str | None

    @classmethod
    def of(cls, info: ScheduleInfo) -> ScheduleStatus:
        return cls(**info.to_dict())


@dataclass(frozen=True, slots=True)
class ScheduleList:
    channel: str
    schedules: list[ScheduleStatus]


class _Conflict(ClientException):
    status_code = HTTP_409_CONFLICT


def _answer(error: ScheduleOperationError) -> ClientException:
    if isinstance(error, ScheduleNotFound):
        return NotFoundException(detail=str(error))
    assert isinstance(error, ScheduleConflict)
    return _Conflict(detail=str(error))


def _moment(value: datetime | None, timezone: str) -> int | None:
    if value is None:
        return None
    if value.tzinfo is None:
        value = value.replace(tzinfo=check_timezone(timezone))
    return as_ms(value)


def build_schedule(name: str, request: ScheduleRequest, payload_model: type[BaseModel]) -> Schedule:
    """The request as a Schedule, its payload validated by the channel's model.

    Raises ValidationException (422) naming each bad payload field, InvalidScheduleError
    (422) naming the bad setting."""
    try:
        payload = payload_model.model_validate(request.payload)
    except ValidationError as invalid:
        errors = [
            {
                "key": ".".join(("payload", *(str(part) for part in error["loc"]))),
                "message": error["msg"],
            }
            for error in invalid.errors()
        ]
        detail = "; ".join(f"{error['key']}: {error['message']}" for error in errors)
        raise ValidationException(detail=f"invalid request: {detail}", extra=errors) from None
    try:
        check_timezone(request.timezone)
    except ValueError as error:
        raise InvalidScheduleError(f"timezone: {error}") from None
    return Schedule.with_payload(
        name,
        payload,
        cron=request.cron,
        every_ms=request.every_ms,
        timezone=request.timezone,
        start_ms=_moment(request.start, request.timezone),
        end_ms=_moment(request.end, request.timezone),
        catch_up=request.catch_up,
        paused=request.paused,
    )


class ScheduleRoutes(Controller):
    """The schedule routes of one channel's controller (`channel_name` is set there)."""

    channel_name: str

    @get(
        "/schedules",
        summary="Every schedule of the channel",
        operation_id=operation_id("list_{channel}_schedules"),
        responses=UNAVAILABLE,
    )
    async def list_schedules(self, client: NamedDependency[Client]) -> ScheduleList:
        found = await client.schedules.list(self.channel_name)
        return ScheduleList(self.channel_name, [ScheduleStatus.of(info) for info in found])

    @get(
        "/schedules/{schedule:str}",
        operation_id=operation_id("get_{channel}_schedule"),
        summary="One schedule: definition, next and last run, jobs enqueued",
        responses={**BAD_REQUEST, **_NOT_FOUND, **INVALID, **UNAVAILABLE},
    )
    async def get_schedule(
        self, schedule: FromPath[str], client: NamedDependency[Client]
    ) -> ScheduleStatus:
        try:
            return ScheduleStatus.of(await client.schedules.get(self.channel_name, schedule))
        except ScheduleOperationError as error:
            raise _answer(error) from None

    @put(
        "/schedules/{schedule:str}",
        operation_id=operation_id("put_{channel}_schedule"),
        summary="Create or change a schedule (BullMQ's upsertJobScheduler)",
        description="The same definition again changes nothing (its next run and history "
        "stay); a new one starts from now. 422 names a bad cron, timezone, every_ms or "
        "payload field.",
        responses={**BAD_REQUEST, **INVALID, **_CONFLICT, **UNAVAILABLE},
    )
    async def put_schedule(
        self,
        schedule: FromPath[str],
        data: JSONBody[ScheduleRequest],
        client: NamedDependency[Client],
        schedule_payloads: NamedDependency[Mapping[str, type[BaseModel]]],
    ) -> ScheduleStatus:
        built = build_schedule(schedule, data, schedule_payloads[self.channel_name])
        try:
            return ScheduleStatus.of(await client.schedules.upsert(self.channel_name, built))
        except ScheduleOperationError as error:
            raise _answer(error) from None

    @post(
        "/schedules/{schedule:str}/pause",
        operation_id=operation_id("pause_{channel}_schedule"),
        status_code=200,
        summary="Pause a schedule cluster-wide (it survives restarts)",
        responses={**BAD_REQUEST, **_NOT_FOUND, **INVALID, **UNAVAILABLE},
    )
    async def pause_schedule(
        self, schedule: FromPath[str], client: NamedDependency[Client]
    ) -> ScheduleStatus:
        try:
            return ScheduleStatus.of(await client.schedules.pause(self.channel_name, schedule))
        except ScheduleOperationError as error:
            raise _answer(error) from None

    @post(
        "/schedules/{schedule:str}/resume",
        operation_id=operation_id("resume_{channel}_schedule"),
        status_code=200,
        summary="Resume a schedule from now (ticks while paused are not owed)",
        responses={**BAD_REQUEST, **_NOT_FOUND, **INVALID, **UNAVAILABLE},
    )
    async def resume_schedule(
        self, schedule: FromPath[str], client: NamedDependency[Client]
    ) -> ScheduleStatus:
        try:
            return ScheduleStatus.of(await client.schedules.resume(self.channel_name, schedule))
        except ScheduleOperationError as error:
            raise _answer(error) from None

    @delete(
        "/schedules/{schedule:str}",
        operation_id=operation_id("remove_{channel}_schedule"),
        status_code=204,
        summary="Remove a schedule (the jobs it enqueued stay)",
        responses={**BAD_REQUEST, **_NOT_FOUND, **_CONFLICT, **INVALID, **UNAVAILABLE},
    )
    async def remove_schedule(
        self, schedule: FromPath[str], client: NamedDependency[Client]
    ) -> None:
        try:
            await client.schedules.remove(self.channel_name, schedule)
        except ScheduleOperationError as error:
            raise _answer(error) from None
