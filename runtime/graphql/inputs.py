"""From a GraphQL input object to the channel's payload model, as if JSON had been sent.

HTTP, gRPC and GraphQL accept and reject exactly the same payloads: an input object is
turned into the very dict a JSON client would have sent and validated by the same pydantic
model. The generated input classes say how (`strawberry.field(metadata=...)`):

- a field left out (`UNSET`) is left out; an explicit `null` is passed on as `null` (the
  model then decides, as it does for JSON); `null_if_unset` marks a required nullable
  property, sent as `null` when left out;
- `json` names the JSON property where it differs from the Python attribute;
- an enum value becomes its JSON value; a `JSON` scalar (maps) is passed on as it is;
- a `@oneOf` input (a JSON Schema oneOf/anyOf) is the one branch set, the wrapper gone;
  `tags` are the names pydantic may use for that branch in an error's location;
- `CONSTS` on a class: required properties with one allowed value, filled in here.

A `pydantic.ValidationError` becomes `PayloadInvalid`, whose problems name each bad field
by its GraphQL path (`payload.to[0].email`, GraphQL field names). `InputInvalid`, its
base, also names bad arguments beside the payload (`priority`, `delayMs`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from enum import Enum
from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError
from strawberry.types.base import StrawberryObjectDefinition
from strawberry.types.field import StrawberryField
from strawberry.types.unset import UNSET
from strawberry.utils.str_converters import to_camel_case

from runtime.errors import ChannelkitError

__all__ = [
    "InputInvalid",
    "PathSegment",
    "PayloadInvalid",
    "Problem",
    "field_paths",
    "to_json",
    "validate",
    "validate_batch",
]

ModelT = TypeVar("ModelT", bound=BaseModel)
PathSegment = str | int
MAX_PROBLEMS = 50  # problems listed in one error


@dataclass(frozen=True, slots=True)
class Problem:
    """One bad field: its path from the argument (`["payload", "to", 0, "email"]`)."""

    path: tuple[PathSegment, ...]
    message: str

    @property
    def field(self) -> str:
        """The path as text: `payload.to[0].email`."""
        text = ""
        for segment in self.path:
            text += f"[{segment}]" if isinstance(segment, int) else f".{segment}"
        return text.lstrip(".")


class InputInvalid(ChannelkitError, ValueError):
    """Arguments of an operation out of bounds; `problems` name each (`priority`, or a
    payload's field `payload.to`)."""

    summary = "invalid input"

    def __init__(self, problems: Sequence[Problem]) -> None:
        self.problems = tuple(problems)
        shown = "; ".join(f"{p.field}: {p.message}" for p in self.problems[:MAX_PROBLEMS])
        more = len(self.problems) - MAX_PROBLEMS
        super().__init__(f"{self.summary}: {shown}" + (f"; and {more} more" if more > 0 else ""))

    def __str__(self) -> str:
        return str(self.args[0])


class PayloadInvalid(InputInvalid):
    """A payload input does not satisfy the channel's schema; `problems` name each field."""

    summary = "invalid payload"


def _definition(value: object) -> StrawberryObjectDefinition | None:
    definition = getattr(type(value), "__strawberry_definition__", None)
    return definition if isinstance(definition, StrawberryObjectDefinition) else None


def _json_name(field: StrawberryField) -> str:
    return str(field.metadata.get("json", field.python_name))


def _graphql_name(field: StrawberryField) -> str:
    return field.graphql_name or to_camel_case(field.python_name)


def to_json(value: Any) -> Any:
    """The JSON value an input object (or list, enum, scalar) stands for."""
    if isinstance(value, Enum):
        return value.value
    if isinstance(value, list):
        return [to_json(item) for item in value]
    definition = _definition(value)
    if definition is None:
        return value  # a scalar, or a JSON scalar's value
    if definition.is_one_of:
        for field in definition.fields:
            chosen = getattr(value, field.python_name)
            if chosen is not UNSET and chosen is not None:
                return to_json(chosen)
        return None
    out: dict[str, Any] = dict(getattr(type(value), "CONSTS", {}))
    for field in definition.fields:
        item = getattr(value, field.python_name)
        if item is UNSET:
            if field.metadata.get("null_if_unset"):
                out[_json_name(field)] = None
            continue
        out[_json_name(field)] = to_json(item)
    return out


def validate(value: Any, model: type[ModelT], *, prefix: Sequence[PathSegment]) -> ModelT:
    """Convert `value` and validate it; raises `PayloadInvalid` with paths under `prefix`."""
    try:
        return model.model_validate(to_json(value))
    except ValidationError as error:
        raise PayloadInvalid(_problems(error, value, tuple(prefix))) from None


def validate_batch(
    values: Sequence[Any], model: type[ModelT], *, max_size: int, argument: str = "payloads"
) -> list[ModelT]:
    """All or nothing: every problem of every item, or every model. A batch holds 1 to
    `max_size` payloads (0: no upper bound)."""
    if not values or (max_size and len(values) > max_size):
        limit = f"1 to {max_size}" if max_size else "at least 1"
        raise PayloadInvalid(
            [Problem((argument,), f"a batch holds {limit} payloads; got {len(values)}")]
        )
    models: list[ModelT] = []
    problems: list[Problem] = []
    for index, value in enumerate(values):
        try:
            models.append(validate(value, model, prefix=(argument, index)))
        except PayloadInvalid as error:
            problems.extend(error.problems)
    if problems:
        raise PayloadInvalid(problems)
    return models


def _problems(error: ValidationError, value: Any, prefix: tuple[PathSegment, ...]) -> list[Problem]:
    found: list[Problem] = []
    everything: list[Problem] = []
    for item in error.errors(include_url=False, include_context=False, include_input=False):
        path, chosen = _path(tuple(item["loc"]), value)
        problem = Problem(prefix + path, item["msg"])
        everything.append(problem)
        if chosen and problem not in found:
            found.append(problem)
    return found or everything


def _path(loc: tuple[int | str, ...], value: Any) -> tuple[tuple[PathSegment, ...], bool]:
    """The GraphQL path of a pydantic error location (JSON names and union tags).

    The second item is False when the error is about a union branch the client did not
    send (pydantic reports every branch of a union that failed); those are left out.
    """
    path: list[PathSegment] = []
    current = value
    index = 0
    while index < len(loc):
        definition = _definition(current)
        if definition is None:
            if isinstance(current, list) and isinstance(loc[index], int):
                position = int(loc[index])
                path.append(position)
                current = current[position] if 0 <= position < len(current) else None
                index += 1
                continue
            break
        if definition.is_one_of:
            chosen = next(
                (
                    f
                    for f in definition.fields
                    if getattr(current, f.python_name) not in (UNSET, None)
                ),
                None,
            )
            tagged = next(
                (f for f in definition.fields if loc[index] in f.metadata.get("tags", ())), None
            )
            if tagged is not None and chosen is not None and tagged is not chosen:
                return tuple(path), False
            if chosen is None:
                break
            path.append(_graphql_name(chosen))
            current = getattr(current, chosen.python_name)
            if tagged is not None:
                index += 1  # the tag names the branch: consumed
            continue
        field = next((f for f in definition.fields if _json_name(f) == loc[index]), None)
        if field is None:
            break
        path.append(_graphql_name(field))
        current = getattr(current, field.python_name)
        index += 1
    path.extend(loc[index:])
    return tuple(path), True


def field_paths(problems: Sequence[Problem]) -> list[Mapping[str, Any]]:
    """The problems as GraphQL error extensions list them."""
    return [
        {"path": list(p.path), "field": p.field, "message": p.message}
        for p in problems[:MAX_PROBLEMS]
    ]
