"""The base class of every generated payload and result model.

It makes pydantic accept and reject what the channel's JSON Schema accepts and rejects,
where the two would otherwise differ:

- An optional property that the schema does not allow to be null may be left out but not
  sent as `null`. Pydantic models such a field as `X | None = None`, which would accept an
  explicit null; the generator marks those fields with `NotNull`
  (`Annotated[X | None, NotNull, Field(...)] = None`), and this class turns an explicit
  null into a validation error on that very field, with its path.
- The same fields are published in OpenAPI without the null branch, so the document says
  what the API does.
"""

from __future__ import annotations

from typing import Any, ClassVar, Final, final

from pydantic import (
    BaseModel,
    ConfigDict,
    GetJsonSchemaHandler,
    SerializerFunctionWrapHandler,
    model_serializer,
    model_validator,
)
from pydantic.json_schema import JsonSchemaValue
from pydantic_core import core_schema

__all__ = ["NotNull", "Payload"]


@final
class _NotNullMarker:
    """The type of `NotNull`: metadata that pydantic keeps on the field and ignores."""

    def __repr__(self) -> str:
        return "NotNull"


NotNull: Final = _NotNullMarker()
"""Field metadata: "optional, but not null". The field may be left out (it then reads as
None), but an explicit null is rejected like any other invalid value."""


class _NullSent:
    """Stands in for an explicit null so that the field's own validator rejects it."""

    def __repr__(self) -> str:
        return "null"


NULL_SENT = _NullSent()


class Payload(BaseModel):
    # Field docstrings (the generator writes each description as one) become the JSON
    # Schema descriptions, so OpenAPI and AsyncAPI readers see them.
    model_config = ConfigDict(populate_by_name=True, use_attribute_docstrings=True)

    _not_null_keys: ClassVar[frozenset[str]] = frozenset()

    @classmethod
    def __pydantic_init_subclass__(cls, **kwargs: Any) -> None:
        super().__pydantic_init_subclass__(**kwargs)
        keys: set[str] = set(cls._not_null_keys)  # inherited ones too
        for name, field in cls.model_fields.items():
            if any(item is NotNull for item in field.metadata):
                keys.add(name)
                if field.alias:
                    keys.add(field.alias)
        cls._not_null_keys = frozenset(keys)

    @model_validator(mode="before")
    @classmethod
    def _reject_explicit_null(cls, data: Any) -> Any:
        if not cls._not_null_keys or not isinstance(data, dict):
            return data
        if None not in data.values():  # the usual case, one scan in C
            return data
        return {
            key: NULL_SENT if value is None and key in cls._not_null_keys else value
            for key, value in data.items()
        }

    @model_serializer(mode="wrap")
    def _omit_null(self, serialize: SerializerFunctionWrapHandler) -> Any:
        # Such a field reads as None when left out; written out, it is left out again, so
        # any serialisation (taskiq's included) is valid input for the same model.
        data = serialize(self)
        if self._not_null_keys and isinstance(data, dict):
            for key in self._not_null_keys:
                if key in data and data[key] is None:
                    del data[key]
        return data

    @classmethod
    def __get_pydantic_json_schema__(
        cls, schema: core_schema.CoreSchema, handler: GetJsonSchemaHandler
    ) -> JsonSchemaValue:
        json_schema = handler(schema)
        resolved = handler.resolve_ref_schema(json_schema)
        for key, prop in resolved.get("properties", {}).items():
            if key in cls._not_null_keys:
                _drop_null_branch(prop)
        return json_schema


def _drop_null_branch(prop: dict[str, Any]) -> None:
    branches = prop.get("anyOf")
    if not isinstance(branches, list):
        return
    kept = [branch for branch in branches if branch != {"type": "null"}]
    if len(kept) == 1:
        del prop["anyOf"]
        prop.update(kept[0])
    else:
        prop["anyOf"] = kept
    if prop.get("default", NULL_SENT) is None:
        del prop["default"]
