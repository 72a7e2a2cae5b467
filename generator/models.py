"""Pydantic v2 models from bundled JSON Schemas, through datamodel-code-generator's API."""

from __future__ import annotations

import json
from typing import Any

from datamodel_code_generator import generate
from datamodel_code_generator.enums import DataModelType, InputFileType, StrictTypes
from datamodel_code_generator.format import PythonVersion

__all__ = ["render_model_module"]

# Options chosen so that the model accepts exactly what the JSON Schema accepts:
# strict scalars ("5" is not an integer), enum defaults as members (typed for mypy),
# population by field name (taskiq and our producer ship models by field name).
_OPTIONS: dict[str, Any] = {
    "input_file_type": InputFileType.JsonSchema,
    "output_model_type": DataModelType.PydanticV2BaseModel,
    "target_python_version": PythonVersion.PY_311,
    "base_class": "runtime.engine.model.Payload",
    "disable_timestamp": True,
    "use_annotated": True,
    "field_constraints": True,
    "use_union_operator": True,
    "use_standard_collections": True,
    "set_default_enum_member": True,
    "use_schema_description": True,
    "use_field_description": True,
    "allow_population_by_field_name": True,
    "strict_types": [StrictTypes.str, StrictTypes.int, StrictTypes.float, StrictTypes.bool],
    "field_extra_keys": {"x-channelkit-not-null"},
    "capitalise_enum_members": True,
    # A constrained string in $defs (PhoneNumber) becomes an annotated str, not a wrapper.
    "collapse_root_models": True,
    "formatters": [],
    "custom_file_header": "",
}


def render_model_module(schema: dict[str, Any], class_name: str) -> str:
    """Python source of a module defining `class_name` and its nested models."""
    document = {k: v for k, v in schema.items() if k not in ("title", "$id")}
    source = generate(json.dumps(document), class_name=class_name, **_OPTIONS)
    if not isinstance(source, str):
        raise TypeError("datamodel-code-generator returned no module text")
    return source
