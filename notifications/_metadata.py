"""A payload's optional `metadata` labels, whatever model class the generator gave them."""

from __future__ import annotations

import json
from typing import Any

from pydantic import BaseModel

__all__ = ["for_log", "metadata_of"]


def metadata_of(payload: BaseModel) -> dict[str, str]:
    """The payload's `metadata` as a plain dict; empty when it has none."""
    dumped: dict[str, Any] = payload.model_dump(mode="json", include={"metadata"})
    return dict(dumped.get("metadata") or {})


def for_log(payload: BaseModel) -> str:
    """` metadata {...}` to end a log line with, or nothing when there is no metadata."""
    metadata = metadata_of(payload)
    return f" metadata {json.dumps(metadata, sort_keys=True)}" if metadata else ""
