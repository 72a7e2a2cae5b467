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
from pydantic import BaseModel, TypeAdapter, ValidationError

from runtime.engine.client import Enqueuer

__all__ = ["Enqueuer", "batch_operation", "check_batch_size", "validate_batch"]

ModelT = TypeVar("ModelT", bound=BaseModel)


def check_batch_size(size: int, limit: int) -> None:
    """A batch route's guard: an empty or too large batch is a 422, nothing enqueued."""
    if not 1 <= size <= limit:
        raise ValidationException(
            detail=f"a batch holds 1 to {limit} jobs; got {size}",
            extra=[{"key": "body", "message": f"expected 1 to {limit} items, got {size}"}],
        )


def validate_batch(
    adapter: TypeAdapter[list[ModelT]], items: list[Any], limit: int
) -> list[ModelT]:
    """Validate a batch body all or nothing; each error names its item: `3.to`."""
    check_batch_size(len(items), limit)
    try:
        return adapter.validate_python(items)
    except ValidationError as error:
        problems = [
            {"key": ".".join(str(part) for part in item["loc"]), "message": item["msg"]}
            for item in error.errors(include_url=False, include_input=False)
        ]
        raise ValidationException(
            detail="invalid batch: nothing was enqueued", extra=problems
        ) from None


def batch_operation(payload_model: type[BaseModel], limit: int) -> type[Operation]:
    """The OpenAPI operation of a batch route: its body is a list of the channel's payload.

    The route takes the list as plain JSON and validates it itself (`validate_batch`), so
    that errors can name the item; this puts the typed schema back into the document.
    """

    @dataclass
    class BatchOperation(Operation):
        def __post_init__(self) -> None:
            items = Reference(ref=f"#/components/schemas/{payload_model.__name__}")
            schema = Schema(type=OpenAPIType.ARRAY, items=items, min_items=1, max_items=limit)
            self.request_body = RequestBody(
                required=True, content={"application/json": OpenAPIMediaType(schema=schema)}
            )

    return BatchOperation
