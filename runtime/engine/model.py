"""The base class of every generated payload and result model.

It makes pydantic accept and reject what the channel's JSON Schema accepts and rejects,
where the two would otherwise differ:

- An optional property that the schema does not allow to be null may be left out but not
  sent as `null`. Pydantic models such a field as `X | None = None`, which would accept an
  explicit null; the generator marks those fields with `NotNull`
  (`Annotated[X | None, NotNull, Field(...)] = None`), which validates the field as `X`
  alone (its default None is not validated), so an explicit null is that field's own
  validation error, with its path. This is done in the field's core schema rather than by
  a model validator because a Python validator per model costs more than all of
  pydantic-core's checks of a nested payload (bench/payload_formats.py).
- The same fields are published in OpenAPI without the null branch, so the document says
  what the API does.
"""

from __future__ import annotations

from typing import Any, ClassVar, Final, cast, final

from pydantic import (
    BaseModel,
    ConfigDict,
    GetCoreSchemaHandler,
    GetJsonSchemaHandler,
    SerializerFunctionWrapHandler,
    model_serializer,
)
from pydantic.json_schema import JsonSchemaValue
from pydantic_core import core_schema

__all__ = ["NotNull", "Payload"]


@final
class _NotNullMarker:
    """The type of `NotNull`: pydantic field metadata that narrows `X | None` to `X`."""

    def __repr__(self) -> str:
        return "NotNull"

    def __get_pydantic_core_schema__(
        self, source: Any, handler: GetCoreSchemaHandler
    ) -> core_schema.CoreSchema:
        schema = handler(source)
        if schema["type"] != "nullable":
            raise TypeError(f"NotNull marks an optional field (X | None), not {source!r}")
        inner: dict[str, Any] = dict(schema["schema"])
        # Serialised by what it holds: the None of a field left out writes as null (the
        # model serializer below then leaves it out); the inner type's own serializer
        # would warn about a None. JSON Schema still comes from the inner type.
        inner["serialization"] = core_schema.simple_ser_schema("any")
        return cast(core_schema.CoreSchema, inner)


NotNull: Final = _NotNullMarker()
"""Field metadata: "optional, but not null". The field may be left out (it then reads as
None), but an explicit null is rejected like any other invalid value."""


_MISSING = object()


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
    if isinstance(branches, list):
        kept = [branch for branch in branches if branch != {"type": "null"}]
        if len(kept) == 1:
            del prop["anyOf"]
            prop.update(kept[0])
        else:
            prop["anyOf"] = kept
    if prop.get("default", _MISSING) is None:
        del prop["default"]
