"""The OpenAPI document: what the API accepts and answers, not what the Python type says.

A payload field that JSON Schema makes optional but not nullable is `X | None = None` in
Python (absent reads as None), marked `NotNull`, and Litestar documents such a type as
"X or null". The API rejects null there (runtime.engine.model.Payload, which lists those
fields in `_not_null_keys`), so this plugin documents just X.

With API keys, the protected routes carry the `ApiKey` security requirement (an HTTP
bearer scheme) and document their 401 answer (`document_api_keys`).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from litestar import Litestar
from litestar._openapi.plugin import OpenAPIPlugin
from litestar._openapi.schema_generation import SchemaCreator
from litestar.openapi.spec import Components, OpenAPIType, Reference, Schema, SecurityScheme
from litestar.plugins.pydantic import PydanticSchemaPlugin
from litestar.typing import FieldDefinition
from pydantic import BaseModel, TypeAdapter

from runtime.engine.model import Payload
from runtime.http.types import ErrorBody

__all__ = [
    "API_KEY_SECURITY",
    "PayloadSchemaPlugin",
    "api_key_components",
    "declare_tags",
    "document_api_keys",
    "use_exact_payload_schemas",
]

API_KEY_SCHEME = "ApiKey"
API_KEY_SECURITY: list[dict[str, list[str]]] = [{API_KEY_SCHEME: []}]
"""The security requirement of the routes behind API keys (a Router's `security`)."""


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
    """pydantic's `#/$defs/X` references as the document's components: each `$ref`, and
    the values of a discriminator's `mapping` (pydantic writes those as references too)."""
    if isinstance(node, list):
        return [_rewrite_refs(item, named) for item in node]
    if not isinstance(node, dict):
        return node
    out = {}
    for key, value in node.items():
        if key == "$ref" and isinstance(value, str):
            out[key] = _component_ref(value, named)
        elif key == "discriminator" and isinstance(value, dict):
            out[key] = {
                **value,
                **(
                    {"mapping": {k: _component_ref(v, named) for k, v in value["mapping"].items()}}
                    if isinstance(value.get("mapping"), dict)
                    else {}
                ),
            }
        else:
            out[key] = _rewrite_refs(value, named)
    return out


def _component_ref(ref: Any, named: Callable[[str], str]) -> Any:
    if isinstance(ref, str) and ref.startswith("#/$defs/"):
        return "#/components/schemas/" + named(ref.removeprefix("#/$defs/"))
    return ref


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


def api_key_components() -> Components:
    """The `ApiKey` security scheme: `Authorization: Bearer <one of API_KEYS>`."""
    return Components(
        security_schemes={
            API_KEY_SCHEME: SecurityScheme(
                type="http",
                scheme="bearer",
                description="One of the server's API_KEYS: `Authorization: Bearer <key>`.",
            )
        }
    )


def document_api_keys(app: Litestar) -> None:
    """Add the 401 answer to every operation of `app` that requires the API key."""
    document = app.plugins.get(OpenAPIPlugin).provide_openapi_schema()
    schemas: dict[str, Any] = document.setdefault("components", {}).setdefault("schemas", {})
    if "ErrorBody" not in schemas:  # no other route answers an error: pydantic's schema
        schemas["ErrorBody"] = TypeAdapter(ErrorBody).json_schema()
    unauthorized = {
        "description": "No API key, or a wrong one (`WWW-Authenticate: Bearer`)",
        "headers": {"WWW-Authenticate": {"schema": {"type": "string", "const": "Bearer"}}},
        "content": {"application/json": {"schema": {"$ref": "#/components/schemas/ErrorBody"}}},
    }
    for path_item in document.get("paths", {}).values():
        for operation in path_item.values():
            if isinstance(operation, dict) and operation.get("security"):
                operation.setdefault("responses", {})["401"] = unauthorized


def declare_tags(app: Litestar) -> None:
    """List every tag the operations of `app` use at the top of its document (a channel's
    routes are tagged with its name), as OpenAPI tools expect of a tag."""
    document = app.plugins.get(OpenAPIPlugin).provide_openapi_schema()
    declared = {tag["name"] for tag in document.get("tags", [])}
    used = {
        tag
        for path_item in document.get("paths", {}).values()
        for operation in path_item.values()
        if isinstance(operation, dict)
        for tag in operation.get("tags", [])
    }
    document.setdefault("tags", []).extend(
        {"name": tag, "description": _TAG_DESCRIPTIONS.get(tag, f"The {tag} channel's jobs")}
        for tag in sorted(used - declared)
    )


_TAG_DESCRIPTIONS = {
    "health": "Liveness and readiness of the process",
    "processes": "The live runtime serve processes",
}
