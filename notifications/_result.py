"""Build a channel's result model: every channel's result is schema/delivery_result.json.

The generated result classes (`EmailResult`, `SmsResult`, ...) are one schema under four
names, so one function fills any of them. Optional fields are left out rather than set to
None: the models, like the schema, refuse an explicit null.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import UTC, datetime
from typing import Any, TypeVar

from pydantic import BaseModel

__all__ = ["delivery_result"]

ResultT = TypeVar("ResultT", bound=BaseModel)


def delivery_result(
    model: type[ResultT],
    *,
    accepted: Iterable[str],
    rejected: Iterable[tuple[str, str]] = (),
    message_id: str | None = None,
    dry_run: bool = False,
) -> ResultT:
    """`rejected` holds (recipient, reason) pairs; `sent_at` is now, in UTC."""
    fields: dict[str, Any] = {"accepted": list(accepted), "sent_at": datetime.now(UTC)}
    refusals = [{"recipient": recipient, "reason": reason} for recipient, reason in rejected]
    if refusals:
        fields["rejected"] = refusals
    if message_id is not None:
        fields["provider_message_id"] = message_id
    if dry_run:
        fields["dry_run"] = True
    return model.model_validate(fields)
