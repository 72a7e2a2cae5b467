"""Pydantic v2 models from bundled JSON Schemas, through datamodel-code-generator's API.

Optional properties that the schema forbids to be null reach datamodel-code-generator
with the generator-internal key `NOT_NULL_MARKER` (generator.schemas), which it can only
render as `Field(json_schema_extra={...: True})`. `_use_not_null` rewrites each of those
into the runtime's marker, `Annotated[X | None, NotNull, Field(...)]`: located with `ast`,
spliced into the text by position (so docstrings and layout stay datamodel-code-generator's
own), deterministic, and checked to parse. No internal key reaches the generated code.
"""

from __future__ import annotations

import ast
import json
from typing import Any

from datamodel_code_generator import generate
from datamodel_code_generator.enums import DataModelType, InputFileType, StrictTypes
from datamodel_code_generator.format import PythonVersion

from generator.schemas import NOT_NULL_MARKER

__all__ = ["SUPPORT_MODULE", "render_model_module"]

# The one runtime module generated code imports (runtime/generated_support.py).
SUPPORT_MODULE = "runtime.generated_support"

# Options chosen so that the model accepts exactly what the JSON Schema accepts:
# strict scalars ("5" is not an integer), enum defaults as members (typed for mypy),
# population by field name (taskiq and our producer ship models by field name).
_OPTIONS: dict[str, Any] = {
    "input_file_type": InputFileType.JsonSchema,
    "output_model_type": DataModelType.PydanticV2BaseModel,
    "target_python_version": PythonVersion.PY_311,
    "base_class": f"{SUPPORT_MODULE}.Payload",
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
    "field_extra_keys": {NOT_NULL_MARKER},
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
    return _use_email(_use_not_null(source))


def _use_not_null(source: str) -> str:
    """`Field(json_schema_extra={MARKER: True}, k=v)` → `NotNull, Field(k=v)` (or just
    `NotNull` when nothing else is left), and `NotNull` imported beside `Payload`."""
    lines = _Lines(source)
    tree = ast.parse(source)
    edits: list[tuple[slice, str]] = []
    rewritten: set[int] = set()
    for node in ast.walk(tree):
        if not (
            isinstance(node, ast.Subscript)
            and isinstance(node.value, ast.Name)
            and node.value.id == "Annotated"
            and isinstance(node.slice, ast.Tuple)
        ):
            continue
        for item in node.slice.elts[1:]:
            marker = _marker(item)
            if marker is None or not isinstance(item, ast.Call):
                continue
            arguments: list[ast.expr | ast.keyword] = [*item.args, *item.keywords]
            rest = [source[lines.span(arg)] for arg in arguments]
            rest.remove(source[lines.span(marker)])
            text = f"NotNull, Field({', '.join(rest)})" if rest else "NotNull"
            edits.append((lines.span(item), text))
            rewritten.add(id(item))
    stray = [node for node in ast.walk(tree) if _marker(node) and id(node) not in rewritten]
    if stray:
        raise ValueError(f"{NOT_NULL_MARKER} outside Annotated[...]: {ast.unparse(stray[0])}")
    if not edits:
        return source
    for where, text in sorted(edits, key=lambda edit: edit[0].start, reverse=True):
        source = source[: where.start] + text + source[where.stop :]
    source = _import_not_null(source)
    ast.parse(source)
    return source


def _use_email(source: str) -> str:
    """Every `EmailStr` → `Email`, imported from the support module, not from pydantic."""
    tree = ast.parse(source)
    names = [n for n in ast.walk(tree) if isinstance(n, ast.Name) and n.id == "EmailStr"]
    if not names:
        return source
    lines = _Lines(source)
    edits = [(lines.span(name), "Email") for name in names]
    for node in tree.body:
        if isinstance(node, ast.ImportFrom) and node.module in ("pydantic", SUPPORT_MODULE):
            imported = {alias.name for alias in node.names} - {"EmailStr"}
            if node.module == SUPPORT_MODULE:
                imported.add("Email")
            statement = (
                f"from {node.module} import {', '.join(sorted(imported))}" if imported else ""
            )
            edits.append((lines.span(node), statement))
    for where, text in sorted(edits, key=lambda edit: edit[0].start, reverse=True):
        source = source[: where.start] + text + source[where.stop :]
    ast.parse(source)
    return source


def _import_not_null(source: str) -> str:
    statement = f"from {SUPPORT_MODULE} import Payload\n"
    if statement not in source:
        raise ValueError(f"expected {statement.strip()!r} in datamodel-code-generator's output")
    return source.replace(statement, f"from {SUPPORT_MODULE} import NotNull, Payload\n", 1)


def _marker(node: ast.AST) -> ast.keyword | None:
    """In a `Field(...)` call, its `json_schema_extra={MARKER: True}` (the only extra key
    the generator passes)."""
    if not (isinstance(node, ast.Call) and isinstance(node.func, ast.Name)):
        return None
    if node.func.id != "Field":
        return None
    for keyword in node.keywords:
        if keyword.arg == "json_schema_extra" and isinstance(keyword.value, ast.Dict):
            keys = [k.value for k in keyword.value.keys if isinstance(k, ast.Constant)]
            if keys == [NOT_NULL_MARKER]:
                return keyword
    return None


class _Lines:
    """Turns ast positions (line, UTF-8 byte column) into offsets in the source text."""

    def __init__(self, source: str) -> None:
        self._lines = source.splitlines(keepends=True)
        self._starts = [0]
        for line in self._lines:
            self._starts.append(self._starts[-1] + len(line))

    def span(self, node: ast.expr | ast.keyword | ast.stmt) -> slice:
        if node.end_lineno is None or node.end_col_offset is None:
            raise ValueError("ast node without an end position")
        return slice(
            self._offset(node.lineno, node.col_offset),
            self._offset(node.end_lineno, node.end_col_offset),
        )

    def _offset(self, line: int, byte_column: int) -> int:
        text = self._lines[line - 1]
        return self._starts[line - 1] + len(text.encode()[:byte_column].decode())
