"""From a received protobuf message to the channel's payload model, as if JSON had been sent.

HTTP, gRPC and the Python producer must accept and reject exactly the same payloads, so a
gRPC request is turned into the very dict a JSON client would have sent and validated by the
same pydantic model. The generator emits a `MessageTable` describing every payload message
(`<package>/grpc_service.py`); `to_json` walks a message with it:

- a field without a value is left out (pydantic then says "Field required" if it must be
  there); a required nullable field without a value is `null`;
- a required scalar without `optional` is always present, even when it is the zero value;
- an enum is turned back into its JSON value; `<NAME>_UNSPECIFIED` (0) on a singular field
  means "not set"; an unknown number is passed on as that number, which the model rejects;
- the branch set in a union message's `oneof` is the value (the wrapper disappears);
- a `repeated` field of a required array is `[]` when empty, of an optional array absent
  when empty; maps alike (`{}`);
- a required property with one allowed value (a `const`) is filled in.

A `pydantic.ValidationError` becomes `PayloadInvalid`, whose problems name each bad field by
its path in the request, with proto field names (`payload.recipients[0].email: ...`);
`abort_invalid` ends the call with INVALID_ARGUMENT and those problems as details.

The generated `Channels` servicer names each channel once (`ChannelSpec`: name, model,
table entry, batch limit) and hands every request to a `MessageEnqueuer`, which does the
above and then enqueues; its methods are one line per RPC.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Generic, Literal, NoReturn, Protocol, TypeVar

import grpc
from google.protobuf.message import Message as ProtoMessage
from pydantic import BaseModel, ValidationError

from runtime.engine.client import Enqueuer, JobRequest
from runtime.engine.limits import DEFAULT_PRIORITY
from runtime.engine.tracing import ENABLED as TRACING
from runtime.engine.tracing import TRACE_HEADERS, remote_parent
from runtime.errors import ChannelkitError
from runtime.grpc.jobs import await_or_abort

__all__ = [
    "MAX_PROBLEMS",
    "ChannelSpec",
    "ConstSpec",
    "EnqueueRequest",
    "FieldSpec",
    "MessageEnqueuer",
    "MessageSpec",
    "MessageTable",
    "PayloadInvalid",
    "abort_invalid",
    "to_json",
    "validate",
    "validate_batch",
]

ModelT = TypeVar("ModelT", bound=BaseModel)
Context = grpc.aio.ServicerContext[Any, Any]
JsonScalar = str | int | float | bool

MAX_PROBLEMS = 20  # problems listed in one status message; gRPC trailers are small (8 KiB)
_MAX_DETAILS = 4000


@dataclass(frozen=True, slots=True)
class FieldSpec:
    """A message field, or one branch of a union message's `oneof`."""

    proto: str  # the proto field name
    json: str  # the JSON property name (the model's alias)
    kind: Literal["scalar", "enum", "message"] = "scalar"
    ref: str = ""  # the enum's or message's name in the table
    shape: Literal["single", "list", "map"] = "single"
    required: bool = False
    nullable: bool = False
    tags: tuple[str, ...] = ()  # union branches: the names pydantic may use in error paths

    @property
    def presence(self) -> bool:
        """Whether the proto field tracks presence (`optional` scalars and enums, messages)."""
        if self.shape != "single":
            return False
        return self.kind == "message" or not self.required or self.nullable


@dataclass(frozen=True, slots=True)
class ConstSpec:
    """A required property with a single allowed value: not in proto, filled in here."""

    json: str
    value: JsonScalar


@dataclass(frozen=True, slots=True)
class MessageSpec:
    """A proto message: an object's fields, or with `oneof`, a union of `fields`."""

    fields: tuple[FieldSpec, ...] = ()
    consts: tuple[ConstSpec, ...] = ()
    oneof: str = ""


@dataclass(frozen=True, slots=True)
class MessageTable:
    """Every payload message and enum, by name relative to the proto package."""

    messages: Mapping[str, MessageSpec]
    enums: Mapping[str, Mapping[int, JsonScalar]]


class PayloadInvalid(ChannelkitError, ValueError):
    """A received payload does not satisfy the channel's schema; `problems` name each field."""

    def __init__(self, problems: Sequence[str]) -> None:
        self.problems = tuple(problems)
        super().__init__(_details(self.problems))

    def __str__(self) -> str:
        return str(self.args[0])


class _Absent:
    def __repr__(self) -> str:
        return "<absent>"


_ABSENT = _Absent()


def to_json(message: ProtoMessage, table: MessageTable, name: str) -> Any:
    """The JSON value (usually a dict) that `message`, of table entry `name`, stands for."""
    value = _message(message, table, table.messages[name])
    return None if value is _ABSENT else value


def validate(
    message: ProtoMessage,
    model: type[ModelT],
    table: MessageTable,
    name: str,
    *,
    prefix: str = "payload",
) -> ModelT:
    """Convert `message` and validate it; raises `PayloadInvalid` with paths under `prefix`."""
    data = to_json(message, table, name)
    try:
        return model.model_validate(data)
    except ValidationError as error:
        raise PayloadInvalid(_problems(error, message, table, name, prefix)) from None


def validate_batch(
    messages: Sequence[ProtoMessage],
    model: type[ModelT],
    table: MessageTable,
    name: str,
    *,
    prefix: str = "payloads",
    max_size: int = 0,
) -> list[ModelT]:
    """All or nothing: every problem of every item (`payloads[3].field: ...`), or every model.

    A batch holds at least one payload, and at most `max_size` when that is not 0.
    """
    if not messages or (max_size and len(messages) > max_size):
        limit = f"1 to {max_size}" if max_size else "at least 1"
        raise PayloadInvalid([f"{prefix}: a batch holds {limit} payloads; got {len(messages)}"])
    models: list[ModelT] = []
    problems: list[str] = []
    for index, message in enumerate(messages):
        try:
            models.append(validate(message, model, table, name, prefix=f"{prefix}[{index}]"))
        except PayloadInvalid as error:
            problems.extend(error.problems)
    if problems:
        raise PayloadInvalid(problems)
    return models


async def abort_invalid(context: Context, error: PayloadInvalid) -> NoReturn:
    """End the call with INVALID_ARGUMENT; the details list the problems, `; `-separated."""
    await context.abort(grpc.StatusCode.INVALID_ARGUMENT, str(error))


@dataclass(frozen=True, slots=True)
class ChannelSpec(Generic[ModelT]):
    """One channel as its `Enqueue<Channel>` RPCs see it."""

    name: str  # the channel
    model: type[ModelT]  # its payload model
    message: str  # its payload message's name in the table
    batch_max: int = 0  # the most payloads in one batch; 0: no limit
    priority: int = DEFAULT_PRIORITY  # of jobs enqueued without one


class EnqueueRequest(Protocol):
    """`Enqueue<Channel>Request`, whichever the channel."""

    @property
    def payload(self) -> ProtoMessage: ...

    @property
    def job_id(self) -> str: ...

    @property
    def delay_ms(self) -> int: ...

    @property
    def priority(self) -> int: ...

    @property
    def timeout_ms(self) -> int: ...

    def HasField(
        self, field_name: Literal["job_id", "delay_ms", "priority", "timeout_ms"]
    ) -> bool: ...


class EnqueueBatchRequest(Protocol):
    """`Enqueue<Channel>BatchRequest`: payloads, or jobs with options of their own."""

    @property
    def payloads(self) -> Sequence[ProtoMessage]: ...

    @property
    def jobs(self) -> Sequence[EnqueueRequest]: ...


class MessageEnqueuer:
    """Validates payload messages like the HTTP API does, then hands them to `enqueuer`.

    An invalid payload ends the call with INVALID_ARGUMENT naming each bad field, and
    nothing is enqueued; a batch is all or nothing. Redis trouble (EnqueueError) ends it
    with UNAVAILABLE, by runtime.grpc.jobs.STATUS_CODES.
    """

    def __init__(self, enqueuer: Enqueuer, table: MessageTable) -> None:
        self._enqueuer = enqueuer
        self._table = table

    async def enqueue(
        self, context: Context, channel: ChannelSpec[Any], request: EnqueueRequest
    ) -> str:
        """The job id of `request`'s payload, enqueued on `channel`."""
        try:
            payload = validate(request.payload, channel.model, self._table, channel.message)
        except PayloadInvalid as error:
            await abort_invalid(context, error)
        job = _job_request(request, payload, channel)
        enqueued = self._enqueuer.enqueue(
            channel.name,
            job.payload,
            job_id=job.job_id,
            delay_ms=job.delay_ms,
            priority=job.priority,
            timeout_ms=job.timeout_ms,
        )
        if TRACING:
            with remote_parent(_trace_metadata(context)):
                return await await_or_abort(context, enqueued)
        return await await_or_abort(context, enqueued)

    async def enqueue_batch(
        self, context: Context, channel: ChannelSpec[Any], request: EnqueueBatchRequest
    ) -> list[str]:
        """The job ids of the request's payloads (or jobs), in order; every one valid, or
        none enqueued."""
        if request.payloads and request.jobs:
            await context.abort(
                grpc.StatusCode.INVALID_ARGUMENT,
                "payloads, jobs: send either payloads or jobs, not both",
            )
        jobs = list(request.jobs)
        try:
            models = validate_batch(
                [job.payload for job in jobs] if jobs else request.payloads,
                channel.model,
                self._table,
                channel.message,
                max_size=channel.batch_max,
            )
        except PayloadInvalid as error:
            await abort_invalid(context, error)
        items: list[Any] = list(models)
        if jobs:
            items = [
                _job_request(job, model, channel) for job, model in zip(jobs, models, strict=True)
            ]
        enqueued = self._enqueuer.enqueue_many(channel.name, items, priority=channel.priority)
        if TRACING:
            with remote_parent(_trace_metadata(context)):
                return await await_or_abort(context, enqueued)
        return await await_or_abort(context, enqueued)


def _job_request(
    request: EnqueueRequest, payload: BaseModel, channel: ChannelSpec[Any]
) -> JobRequest:
    """A request's validated payload with its job options (unset: the channel's)."""
    return JobRequest(
        payload,
        job_id=request.job_id if request.HasField("job_id") else None,
        delay_ms=request.delay_ms if request.HasField("delay_ms") else None,
        priority=request.priority if request.HasField("priority") else channel.priority,
        timeout_ms=request.timeout_ms if request.HasField("timeout_ms") else None,
    )


def _trace_metadata(context: Context) -> dict[str, str]:
    """The call's W3C trace context metadata (`traceparent`, `tracestate`)."""
    return {
        key: value
        for key, value in context.invocation_metadata() or ()
        if key in TRACE_HEADERS and isinstance(value, str)
    }


def _message(message: ProtoMessage, table: MessageTable, spec: MessageSpec) -> Any:
    if spec.oneof:
        chosen = message.WhichOneof(spec.oneof)
        for branch in spec.fields:
            if branch.proto == chosen:
                return _single(getattr(message, chosen), branch, table)
        return _ABSENT
    out: dict[str, Any] = {const.json: const.value for const in spec.consts}
    for field in spec.fields:
        value = getattr(message, field.proto)
        if field.shape == "list":
            if value or field.required:
                out[field.json] = [_item(item, field, table) for item in value]
        elif field.shape == "map":
            if value or field.required:
                out[field.json] = {key: _item(value[key], field, table) for key in sorted(value)}
        else:
            present = not field.presence or message.HasField(field.proto)
            converted = _single(value, field, table) if present else _ABSENT
            if converted is not _ABSENT:
                out[field.json] = converted
            elif field.required and field.nullable:
                out[field.json] = None
    return out


def _single(value: Any, field: FieldSpec, table: MessageTable) -> Any:
    if field.kind == "enum" and value == 0:
        return _ABSENT  # <NAME>_UNSPECIFIED: not set
    return _item(value, field, table)


def _item(value: Any, field: FieldSpec, table: MessageTable) -> Any:
    if field.kind == "scalar":
        return value
    if field.kind == "enum":
        return table.enums[field.ref].get(value, value)
    converted = _message(value, table, table.messages[field.ref])
    return None if converted is _ABSENT else converted


def _problems(
    error: ValidationError, message: ProtoMessage, table: MessageTable, name: str, prefix: str
) -> list[str]:
    found: list[str] = []
    everything: list[str] = []
    for item in error.errors(include_url=False, include_context=False, include_input=False):
        path, chosen = _path(item["loc"], message, table, name, prefix)
        line = f"{path}: {item['msg']}"
        everything.append(line)
        if chosen and line not in found:
            found.append(line)
    return found or everything


def _path(
    loc: tuple[int | str, ...], message: ProtoMessage, table: MessageTable, name: str, prefix: str
) -> tuple[str, bool]:
    """The request path of a pydantic error location, with proto field names.

    The second item is False when the error is about a union branch the client did not send
    (pydantic reports every branch of a union that failed); those errors are left out.
    """
    path = prefix
    spec: MessageSpec | None = table.messages[name]
    current: Any = message
    index = 0
    while spec is not None and index < len(loc):
        segment = loc[index]
        if spec.oneof:
            chosen = current.WhichOneof(spec.oneof) if isinstance(current, ProtoMessage) else None
            field = next((f for f in spec.fields if segment in f.tags), None)
            if field is not None and chosen is not None and field.proto != chosen:
                return path, False
            field = field or next((f for f in spec.fields if f.proto == chosen), None)
            if field is None:
                break
        else:
            field = next((f for f in spec.fields if f.json == segment), None)
            if field is None:
                break
        path += f".{field.proto}"
        index += 1
        current = getattr(current, field.proto, None) if current is not None else None
        if field.shape != "single" and index < len(loc):
            key = loc[index]
            path += f"[{key}]" if field.shape == "list" else f"[{json.dumps(key)}]"
            index += 1
            current = _element(current, key)
        elif field.shape != "single":
            break
        spec = table.messages[field.ref] if field.kind == "message" else None
    for segment in loc[index:]:
        path += f"[{segment}]" if isinstance(segment, int) else f".{segment}"
    return path, True


def _element(container: Any, key: int | str) -> Any:
    try:
        if isinstance(key, int):
            return container[key] if 0 <= key < len(container) else None
        return container.get(key)
    except (TypeError, AttributeError):
        return None


def _details(problems: Sequence[str]) -> str:
    shown = list(problems[:MAX_PROBLEMS])
    while len(shown) > 1 and len("; ".join(shown)) > _MAX_DETAILS:
        shown.pop()
    text = "; ".join(shown)[:_MAX_DETAILS]
    if len(shown) < len(problems):
        text += f"; and {len(problems) - len(shown)} more"
    return text
