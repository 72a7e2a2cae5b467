"""Decoding a stream entry into a job: taskiq's message with the channel's payload typed.

One pydantic pass decodes the JSON and validates the payload. What cannot become a job
is described here in words for the failed set: which field of the payload, or of the
message, is wrong.
"""

from __future__ import annotations

import json
from typing import Annotated, Any

from pydantic import Field, ValidationError, create_model

from runtime.engine.channel import Channel

__all__ = [
    "TIMEOUT_LABEL",
    "describe",
    "envelope_model",
    "is_payload_error",
    "job_id_of",
    "payload_of",
    "timeout_of",
]

TIMEOUT_LABEL = "timeout_ms"  # a job's own timeout, in the message's taskiq labels


def job_id_of(data: bytes) -> str | None:
    """The job id of a message that did not decode, when it has one."""
    try:
        message = json.loads(data)
    except ValueError:
        return None
    job_id = message.get("task_id") if isinstance(message, dict) else None
    return job_id if isinstance(job_id, str) and job_id else None


_PAYLOAD_LOCATIONS = (("kwargs", "payload"), ("args", 0))


def _where(loc: tuple[int | str, ...]) -> str:
    """A field path inside the payload (`to.0.email`), or inside the message."""
    if loc[:2] in _PAYLOAD_LOCATIONS:
        return ".".join(str(part) for part in loc[2:]) or "payload"
    return ".".join(str(part) for part in loc) or "message"


def is_payload_error(error: ValidationError) -> bool:
    return all(
        tuple(e["loc"][:2]) in _PAYLOAD_LOCATIONS and len(e["loc"]) > 2 for e in error.errors()
    )


def envelope_model(channel: Channel[Any, Any]) -> type[Any]:
    """taskiq's message with the payload typed: one pydantic pass decodes and validates.

    Channelkit's producers send the payload as `kwargs.payload`; a taskiq producer calling
    the generated task positionally (`task.kiq(payload)`) sends it as `args[0]`.
    """
    model = channel.payload_model
    kwargs = create_model(
        f"_{channel.name}_kwargs",
        payload=(model | None, None),  # type: ignore[arg-type]  # a runtime union
    )
    return create_model(
        f"_{channel.name}_envelope",
        task_id=(str, ...),
        labels=(dict[str, Any], {}),
        kwargs=(kwargs | None, None),
        args=(Annotated[list[model], Field(max_length=1)], []),  # type: ignore[valid-type,arg-type]
    )


def payload_of(envelope: Any) -> Any:
    if envelope.kwargs is not None and envelope.kwargs.payload is not None:
        return envelope.kwargs.payload
    return envelope.args[0] if envelope.args else None


def timeout_of(envelope: Any) -> int | None:
    """The job's own timeout in ms (None: the channel's applies)."""
    value = envelope.labels.get(TIMEOUT_LABEL) if envelope.labels else None
    return value if isinstance(value, int) and value > 0 else None


def describe(error: ValidationError) -> str:
    """Every problem of a failed decode, by its field path."""
    return "; ".join(
        f"{_where(e['loc'])}: {e['msg']}"
        for e in error.errors(include_input=False, include_url=False)
    )
