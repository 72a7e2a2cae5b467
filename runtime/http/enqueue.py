"""The HTTP side of enqueueing: batch bodies validated all or nothing, and their OpenAPI.

`Enqueuer` (what every enqueue path calls) is the engine's; it is re-exported here for
the generated routes."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, TypeVar

from litestar.exceptions import ValidationException
from litestar.openapi.spec import (
    OpenAPIMediaType,
    OpenAPIType,
    Operation,
    Reference,
    RequestBody,
    Schema,
)
from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, ValidationError

from runtime.engine.client import Enqueuer, JobRequest
from runtime.engine.limits import (
    HIGHEST_PRIORITY,
    LOWEST_PRIORITY,
    MAX_DELAY_MS,
    MAX_JOB_ID_LENGTH,
    MAX_TIMEOUT_MS,
)

__all__ = ["Enqueuer", "JobRequest", "batch_operation", "check_batch_size", "validate_batch"]

ModelT = TypeVar("ModelT", bound=BaseModel)


def check_batch_size(size: int, limit: int) -> None:
    """A batch route's guard: an empty or too large batch is a 422, nothing enqueued."""
    if not 1 <= size <= limit:
        raise ValidationException(
            detail=f"a batch holds 1 to {limit} jobs; got {size}",
            extra=[{"key": "body", "message": f"expected 1 to {limit} items, got {size}"}],
        )


class _BatchItem(BaseModel):
    """One item of the `{"jobs": [...]}` batch form: a payload with its own options."""

    model_config = ConfigDict(extra="forbid")
    payload: dict[str, Any]
    job_id: str | None = Field(None, min_length=1, max_length=MAX_JOB_ID_LENGTH)
    delay_ms: int | None = Field(None, ge=0, le=MAX_DELAY_MS)
    priority: int | None = Field(None, ge=HIGHEST_PRIORITY, le=LOWEST_PRIORITY)
    timeout_ms: int | None = Field(None, ge=1, le=MAX_TIMEOUT_MS)


class _ItemsBody(BaseModel):
    model_config = ConfigDict(extra="forbid")
    jobs: list[_BatchItem]


_ITEMS = TypeAdapter(_ItemsBody)


def validate_batch(
    adapter: TypeAdapter[list[ModelT]], body: list[Any] | dict[str, Any], limit: int
) -> list[ModelT | JobRequest]:
    """Validate a batch body all or nothing; each error names its item: `3.to` (a list
    of payloads) or `jobs.3.payload.to` / `jobs.3.priority` (the `{"jobs": [...]}`
    form, whose items carry their own job id, delay, priority and timeout)."""
    if isinstance(body, list):
        check_batch_size(len(body), limit)
        try:
            return list(adapter.validate_python(body))
        except ValidationError as error:
            raise _invalid(_problems(error)) from None
    # Options and payloads are checked together, so that every bad field is named at once.
    problems: list[dict[str, Any]] = []
    items: list[_BatchItem] = []
    try:
        items = _ITEMS.validate_python(body).jobs
    except ValidationError as error:
        problems += _problems(error)
    raw_items = body.get("jobs")
    if not isinstance(raw_items, list):
        raise _invalid(problems)  # `jobs` missing or not a list: _ITEMS said so
    check_batch_size(len(raw_items), limit)
    checked = [
        (index, item["payload"])
        for index, item in enumerate(raw_items)
        if isinstance(item, dict) and isinstance(item.get("payload"), dict)
    ]
    payloads: list[ModelT] = []
    try:
        payloads = adapter.validate_python([payload for _, payload in checked])
    except ValidationError as error:
        for problem in _problems(error):  # `3.to` → `jobs.<index of that item>.payload.to`
            position, _, rest = str(problem["key"]).partition(".")
            index = checked[int(position)][0]
            problem["key"] = f"jobs.{index}.payload" + (f".{rest}" if rest else "")
            problems.append(problem)
    if problems:
        raise _invalid(problems)
    return [
        JobRequest(
            payload,
            job_id=item.job_id,
            delay_ms=item.delay_ms,
            priority=item.priority,
            timeout_ms=item.timeout_ms,
        )
        for item, payload in zip(items, payloads, strict=True)
    ]


def _problems(error: ValidationError) -> list[dict[str, Any]]:
    return [
        {"key": ".".join(str(part) for part in item["loc"]), "message": item["msg"]}
        for item in error.errors(include_url=False, include_input=False)
    ]


def _invalid(problems: list[dict[str, Any]]) -> ValidationException:
    return ValidationException(detail="invalid batch: nothing was enqueued", extra=problems)


def batch_operation(payload_model: type[BaseModel], limit: int) -> type[Operation]:
    """The OpenAPI operation of a batch route: its body is a list of the channel's payload.

    The route takes the list as plain JSON and validates it itself (`validate_batch`), so
    that errors can name the item; this puts the typed schema back into the document.
    """

    @dataclass
    class BatchOperation(Operation):
        def __post_init__(self) -> None:
            payload = Reference(ref=f"#/components/schemas/{payload_model.__name__}")
            plain = Schema(type=OpenAPIType.ARRAY, items=payload, min_items=1, max_items=limit)
            item = Schema(
                type=OpenAPIType.OBJECT,
                required=["payload"],
                properties={
                    "payload": payload,
                    "job_id": Schema(
                        type=OpenAPIType.STRING, min_length=1, max_length=MAX_JOB_ID_LENGTH
                    ),
                    "delay_ms": Schema(type=OpenAPIType.INTEGER, minimum=0, maximum=MAX_DELAY_MS),
                    "priority": Schema(
                        type=OpenAPIType.INTEGER, minimum=HIGHEST_PRIORITY, maximum=LOWEST_PRIORITY
                    ),
                    "timeout_ms": Schema(
                        type=OpenAPIType.INTEGER, minimum=1, maximum=MAX_TIMEOUT_MS
                    ),
                },
                additional_properties=False,
            )
            with_options = Schema(
                type=OpenAPIType.OBJECT,
                required=["jobs"],
                properties={
                    "jobs": Schema(type=OpenAPIType.ARRAY, items=item, min_items=1, max_items=limit)
                },
                additional_properties=False,
                description="Items with their own job id (idempotent per item), delay, "
                "priority and timeout.",
            )
            schema = Schema(one_of=[plain, with_options])
            self.request_body = RequestBody(
                required=True, content={"application/json": OpenAPIMediaType(schema=schema)}
            )

    return BatchOperation
