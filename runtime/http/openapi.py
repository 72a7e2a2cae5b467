"""OpenAPI for payload models: what the API accepts, not what the Python type says.

A payload field that JSON Schema makes optional but not nullable is `X | None = None` in
Python (absent reads as None), marked `NotNull`, and Litestar documents such a type as
"X or null". The API rejects null there (runtime.engine.model.Payload, which lists those
fields in `_not_null_keys`), so this plugin documents just X.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from litestar import Litestar
from litestar._openapi.plugin import OpenAPIPlugin
from litestar._openapi.schema_generation import SchemaCreator
from litestar.openapi.spec import OpenAPIType, Reference, Schema
from litestar.plugins.pydantic import PydanticSchemaPlugin
from litestar.typing import FieldDefinition
from pydantic import BaseModel

from runtime.engine.model import Payload

__all__ = ["PayloadSchemaPlugin", "use_exact_payload_schemas"]


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


def use_exact_payload_schemas(app: Litestar, payload_models: Sequence[type[BaseModel]]) -> None:
    """Replace the payload components of `app`'s OpenAPI document with pydantic's own
    JSON Schema of each model.

    Litestar derives its components from the models' fields and drops what it has no slot
    for (string patterns, nested constraints, field descriptions); pydantic's schema is
    what the API enforces. Nested models get the channel's prefix (`EmailRecipient`) so
    two channels' `Recipient`s cannot collide; components nothing refers to any more are
    removed.
    """
    document = app.plugins.get(OpenAPIPlugin).provide_openapi_schema()
    components: dict[str, Any] = document.setdefault("components", {}).setdefault("schemas", {})
    for model in payload_models:
        prefix = model.__name__.removesuffix("Payload")
        schema = model.model_json_schema(mode="validation")
        definitions = schema.pop("$defs", {})

        def named(name: str, prefix: str = prefix) -> str:
            return name if name.startswith(prefix) else prefix + name

        for name, definition in definitions.items():
            components[named(name)] = _rewrite_refs(definition, named)
        components[model.__name__] = _rewrite_refs(schema, named)
    _prune_unreferenced(document, components)


def _rewrite_refs(node: Any, named: Callable[[str], str]) -> Any:
    if isinstance(node, list):
        return [_rewrite_refs(item, named) for item in node]
    if not isinstance(node, dict):
        return node
    out = {}
    for key, value in node.items():
        if key == "$ref" and isinstance(value, str) and value.startswith("#/$defs/"):
            out[key] = "#/components/schemas/" + named(value.removeprefix("#/$defs/"))
        else:
            out[key] = _rewrite_refs(value, named)
    return out


def _refs(node: Any, found: set[str]) -> None:
    if isinstance(node, list):
        for item in node:
            _refs(item, found)
    elif isinstance(node, dict):
        for key, value in node.items():
            if key == "$ref" and isinstance(value, str):
                found.add(value.rsplit("/", 1)[-1])
            else:
                _refs(value, found)


def _prune_unreferenced(document: dict[str, Any], components: dict[str, Any]) -> None:
    while True:
        used: set[str] = set()
        _refs({k: v for k, v in document.items() if k != "components"}, used)
        _refs(components, used)
        unused = [name for name in components if name not in used]
        if not unused:
            return
        for name in unused:
            del components[name]
