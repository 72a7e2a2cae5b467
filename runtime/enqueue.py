"""What every enqueue path (HTTP, gRPC, the Python producer) calls."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol, runtime_checkable

from litestar.exceptions import ValidationException
from pydantic import BaseModel

__all__ = ["Enqueuer", "check_batch_size"]


@runtime_checkable
class Enqueuer(Protocol):
    async def enqueue(
        self,
        channel: str,
        payload: BaseModel,
        *,
        job_id: str | None = None,
        delay_ms: int | None = None,
    ) -> str: ...

    async def enqueue_many(self, channel: str, payloads: Sequence[BaseModel]) -> list[str]: ...


def check_batch_size(size: int, limit: int) -> None:
    """A batch route's guard: an empty or too large batch is a 422, nothing enqueued."""
    if not 1 <= size <= limit:
        raise ValidationException(
            detail=f"a batch holds 1 to {limit} jobs; got {size}",
            extra=[{"key": "body", "message": f"expected 1 to {limit} items, got {size}"}],
        )
