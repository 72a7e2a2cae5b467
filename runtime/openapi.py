"""OpenAPI for payload models: what the API accepts, not what the Python type says.

A payload field that JSON Schema makes optional but not nullable is `X | None = None` in
Python (absent reads as None), and Litestar documents such a type as "X or null". The
API rejects null there (runtime.model.Payload), so this plugin documents just X.
"""

from __future__ import annotations

from typing import Any

from litestar._openapi.schema_generation import SchemaCreator
from litestar.openapi.spec import OpenAPIType, Reference, Schema
from litestar.plugins.pydantic import PydanticSchemaPlugin
from litestar.typing import FieldDefinition

from runtime.model import Payload

__all__ = ["PayloadSchemaPlugin"]


class PayloadSchemaPlugin(PydanticSchemaPlugin):
    @staticmethod
    def is_plugin_supported_type(value: Any) -> bool:
        return isinstance(value, type) and issubclass(value, Payload)

    def to_openapi_schema(
        self, field_definition: FieldDefinition, schema_creator: SchemaCreator
    ) -> Schema:
        schema = super().to_openapi_schema(field_definition, schema_creator)
        model = field_definition.annotation
        component = (
            schema_creator.schema_registry.from_reference(schema)
            if isinstance(schema, Reference)
            else None
        )
        target = component.schema if component is not None else schema
        for name, prop in (target.properties or {}).items():
            if name in model._not_null_keys and isinstance(prop, Schema):
                target.properties[name] = _without_null(prop)  # type: ignore[index]
        return schema


def _without_null(schema: Schema) -> Schema | Reference:
    branches = [
        branch
        for branch in schema.one_of or ()
        if not (isinstance(branch, Schema) and branch.type == OpenAPIType.NULL)
    ]
    if schema.one_of is None or len(branches) == len(schema.one_of):
        return schema
    if len(branches) == 1:
        return branches[0]
    schema.one_of = branches
    return schema
