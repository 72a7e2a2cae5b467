"""Payload and result schemas: read, bundle into one document per channel, check.

A channel's schema may be inline in channels.yaml or a `$ref` to a file, and files may
reference each other (`common.json#/$defs/Recipient`). Every output (pydantic models, proto
messages, OpenAPI, AsyncAPI) wants one self-contained document, so we bundle: every
referenced definition is copied into the root's `$defs` and every `$ref` becomes local.
"""

from __future__ import annotations

import copy
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import unquote

import jsonschema
import yaml

from generator.config import ChannelConfig, ChannelsConfig
from generator.errors import ConfigError, Problem
from generator.yaml_source import KeyPath, LocatedDocument, SafeDepthLoader, too_deep

__all__ = ["NOT_NULL_MARKER", "ChannelSchemas", "SchemaSource", "load_schemas"]

# "Optional, but not null", as a key datamodel-code-generator passes through. Internal to
# the generator: generator.models renders it as the runtime's `NotNull` field marker.
NOT_NULL_MARKER = "x-channelkit-not-null"

# Keywords that pydantic, proto and JSON Schema cannot be made to agree on.
UNSUPPORTED_KEYWORDS = frozenset(
    {
        "anyOf",
        "allOf",
        "not",
        "if",
        "then",
        "else",
        "patternProperties",
        "prefixItems",
        "dependentSchemas",
        "dependentRequired",
        "unevaluatedProperties",
        "unevaluatedItems",
        "contains",
        "$dynamicRef",
        "$anchor",
        "propertyNames",
    }
)


@dataclass(frozen=True, slots=True)
class SchemaSource:
    """Where one bundled schema came from: `file` when the channel's schema is a `$ref` to
    a whole file (several channels may share it), and every file read to bundle it."""

    file: Path | None
    files: tuple[Path, ...]


@dataclass(frozen=True, slots=True)
class ChannelSchemas:
    """`payload` and `result` are bundled and plain: what OpenAPI, proto and docs show.
    `payload_for_models` and `result_for_models` carry the not-null markers as well."""

    payload: dict[str, Any]
    result: dict[str, Any] | None
    payload_for_models: dict[str, Any]
    result_for_models: dict[str, Any] | None
    payload_source: SchemaSource
    result_source: SchemaSource | None

    @property
    def source_files(self) -> tuple[Path, ...]:
        """Every schema file the channel uses, sorted."""
        files = set(self.payload_source.files)
        if self.result_source is not None:
            files.update(self.result_source.files)
        return tuple(sorted(files))


class _SchemaProblem(Exception):
    def __init__(self, message: str) -> None:
        self.message = message


class _Bundler:
    def __init__(self, root: Path) -> None:
        self.root = root
        self.defs: dict[str, Any] = {}
        self.names: dict[tuple[Path, str], str] = {}
        self.files: dict[Path, Any] = {}
        self.root_file = root
        self.root_schema: dict[str, Any] = {}

    def load(self, file: Path) -> Any:
        file = file.resolve()
        if file not in self.files:
            shown = _shown(file, self.root)
            try:
                text = file.read_text(encoding="utf-8")
            except FileNotFoundError:
                raise _SchemaProblem(f"schema file not found: {shown}") from None
            except OSError as error:
                raise _SchemaProblem(f"cannot read schema file {shown}: {error.strerror}") from None
            try:
                if file.suffix in (".yaml", ".yml"):
                    data = yaml.load(text, Loader=SafeDepthLoader)
                else:
                    data = json.loads(text)
            except json.JSONDecodeError as error:
                raise _SchemaProblem(
                    f"{shown}:{error.lineno}:{error.colno}: invalid JSON: {error.msg}"
                ) from None
            except yaml.YAMLError as error:
                raise _SchemaProblem(f"{shown}: invalid YAML: {error}") from None
            except RecursionError:  # json's decoder recurses per level, down to Python's limit
                raise _SchemaProblem(f"{shown}: nested too deeply to read") from None
            # Bundling and every output walk schemas recursively: bounded as channels.yaml is.
            problem = too_deep(data)
            if problem:
                raise _SchemaProblem(f"{shown}: {problem}")
            self.files[file] = data
        return self.files[file]

    def bundle(self, schema: dict[str, Any], base: Path) -> dict[str, Any]:
        """`base` is the file the schema is in (channels.yaml for an inline schema)."""
        if set(schema) == {"$ref"} and "#" not in schema["$ref"]:
            base = (base.parent / schema["$ref"]).resolve()
            schema = self.load(base)
            if not isinstance(schema, dict):
                raise _SchemaProblem(f"{_shown(base, self.root)}: a schema must be an object")
        self.root_file = base.resolve()
        self.root_schema = schema
        own_defs = schema.get("$defs", {})
        for name in own_defs:
            self.names[(self.root_file, f"/$defs/{name}")] = name
        body: dict[str, Any] = self.rewrite(
            {k: v for k, v in schema.items() if k != "$defs"}, self.root_file
        )
        for name, definition in own_defs.items():
            self.defs[name] = self.rewrite(definition, self.root_file)
        if self.defs:
            body["$defs"] = dict(sorted(self.defs.items()))
        return body

    def rewrite(self, node: Any, file: Path) -> Any:
        if isinstance(node, list):
            return [self.rewrite(item, file) for item in node]
        if not isinstance(node, dict):
            return node
        out: dict[str, Any] = {}
        for key, value in node.items():
            if key == "$ref" and isinstance(value, str):
                out[key] = f"#/$defs/{self.definition(value, file)}"
            elif key in ("properties", "$defs") and isinstance(value, dict):
                out[key] = {name: self.rewrite(sub, file) for name, sub in value.items()}
            elif key in ("const", "enum", "default", "examples"):
                out[key] = copy.deepcopy(value)
            else:
                out[key] = self.rewrite(value, file)
        return out

    def definition(self, ref: str, file: Path) -> str:
        target, _, fragment = ref.partition("#")
        target_file = (file.parent / unquote(target)).resolve() if target else file
        fragment = unquote(fragment)
        key = (target_file, fragment)
        if key in self.names:
            return self.names[key]
        in_root = target_file == self.root_file
        if in_root and not fragment.strip("/"):
            raise _SchemaProblem(
                f"$ref {ref!r} points at the schema itself; recursion on the root is not supported"
            )
        node: Any = self.root_schema if in_root else self.load(target_file)
        for part in [p for p in fragment.split("/") if p]:
            part = part.replace("~1", "/").replace("~0", "~")
            if not isinstance(node, dict) or part not in node:
                raise _SchemaProblem(
                    f"$ref {ref!r}: nothing at '#{fragment}' in {_shown(target_file, self.root)}"
                )
            node = node[part]
        last = [p for p in fragment.split("/") if p]
        base_name = last[-1] if last else _pascal(target_file.stem)
        name = base_name
        counter = 2
        while name in self.names.values():
            name = f"{base_name}{counter}"
            counter += 1
        self.names[key] = name
        self.defs[name] = self.rewrite(node, target_file)
        return name


def _pascal(stem: str) -> str:
    return "".join(part.capitalize() for part in stem.replace("-", "_").split("_"))


def _shown(file: Path, root: Path) -> str:
    try:
        return str(file.relative_to(root.resolve()))
    except ValueError:
        return str(file)


def _unsupported(node: Any, pointer: str) -> str | None:
    if isinstance(node, list):
        for index, item in enumerate(node):
            found = _unsupported(item, f"{pointer}/{index}")
            if found:
                return found
        return None
    if not isinstance(node, dict):
        return None
    for key, value in node.items():
        if key in UNSUPPORTED_KEYWORDS:
            return (
                f"keyword {key!r} at '#{pointer}' is not supported: "
                "models, proto and JSON Schema cannot agree on it"
            )
        if key in ("const", "enum", "default", "examples", "description", "title"):
            continue
        found = _unsupported(value, f"{pointer}/{key}")
        if found:
            return found
    return None


def _allows_null(schema: Any, defs: dict[str, Any]) -> bool:
    if not isinstance(schema, dict):
        return False
    kind = schema.get("type")
    if kind == "null" or (isinstance(kind, list) and "null" in kind):
        return True
    if "const" in schema and schema["const"] is None:
        return True
    if None in schema.get("enum", [1]):
        return True
    if any(_allows_null(branch, defs) for branch in schema.get("oneOf", [])):
        return True
    ref = schema.get("$ref", "")
    if ref.startswith("#/$defs/"):
        return _allows_null(defs.get(ref.removeprefix("#/$defs/")), defs)
    return False


def _mark_not_null(node: Any, defs: dict[str, Any]) -> Any:
    """Mark optional properties that JSON Schema forbids to be null (see runtime.engine.model
    and generator.models)."""
    if isinstance(node, list):
        return [_mark_not_null(item, defs) for item in node]
    if not isinstance(node, dict):
        return node
    out = {
        key: _mark_not_null(value, defs) if key not in ("const", "enum", "default") else value
        for key, value in node.items()
    }
    properties = out.get("properties")
    if isinstance(properties, dict):
        required = set(out.get("required", []))
        for name, prop in properties.items():
            if name not in required and isinstance(prop, dict) and not _allows_null(prop, defs):
                properties[name] = {**prop, NOT_NULL_MARKER: True}
    return out


def _check_one(
    schema: Any, field: str, bundler: _Bundler, config: ChannelsConfig, validate: bool
) -> dict[str, Any]:
    if not isinstance(schema, dict):
        raise _SchemaProblem("a schema must be a mapping")
    bundled = bundler.bundle(schema, config.path.resolve())
    if validate:
        _META_VALIDATOR.check_schema(bundled)
    reason = _unsupported(bundled, "")
    if reason:
        raise _SchemaProblem(reason)
    if bundled.get("type") != "object":
        raise _SchemaProblem(f'the {field} schema must have "type": "object" at its top level')
    return bundled


class _MetaValidator:
    """Checks schemas against the 2020-12 meta-schema with one validator for all of them."""

    def __init__(self) -> None:
        self._validator: jsonschema.Draft202012Validator | None = None

    def check_schema(self, schema: dict[str, Any]) -> None:
        if self._validator is None:
            meta = jsonschema.Draft202012Validator.META_SCHEMA
            self._validator = jsonschema.Draft202012Validator(meta)
        error = jsonschema.exceptions.best_match(self._validator.iter_errors(schema))
        if error is not None:
            where = "/".join(str(part) for part in error.absolute_path)
            raise _SchemaProblem(f"not a valid JSON Schema at '#/{where}': {error.message}")


_META_VALIDATOR = _MetaValidator()


def load_schemas(config: ChannelsConfig, *, validate: bool = True) -> dict[str, ChannelSchemas]:
    """Every channel's bundled payload and result schema; ConfigError lists all problems.

    `validate=False` skips the meta-schema check (the slow part), for a caller that only
    needs to know whether the inputs changed since they were last validated.
    """
    problems: list[Problem] = []
    loaded: dict[str, ChannelSchemas] = {}
    document: LocatedDocument = config.document
    for channel in config.channels:
        schemas: dict[str, dict[str, Any] | None] = {"payload": None, "result": None}
        sources: dict[str, SchemaSource] = {}
        for field in ("payload", "result"):
            raw = channel.payload if field == "payload" else channel.result
            if raw is None:
                continue
            bundler = _Bundler(config.root)
            path: KeyPath = (*channel.key_path, field)
            try:
                schemas[field] = _check_one(raw, field, bundler, config, validate)
            except _SchemaProblem as problem:
                problems.append(document.problem(path, problem.message))
                continue
            whole_file = isinstance(raw, dict) and set(raw) == {"$ref"} and "#" not in raw["$ref"]
            sources[field] = SchemaSource(
                file=bundler.root_file if whole_file else None,
                files=tuple(sorted(bundler.files)),
            )
        payload = schemas["payload"]
        if payload is None:
            continue
        limiter_key = channel.limiter.key if channel.limiter else None
        if limiter_key and limiter_key not in payload.get("properties", {}):
            problems.append(
                document.problem(
                    (*channel.key_path, "limiter", "key"),
                    f"limiter key {limiter_key!r} is not a top-level property "
                    "of the payload schema",
                )
            )
        problems += _check_schedule_payloads(channel, payload, document)
        result = schemas["result"]
        loaded[channel.name] = ChannelSchemas(
            payload=payload,
            result=result,
            payload_for_models=_mark_not_null(payload, payload.get("$defs", {})),
            result_for_models=_mark_not_null(result, result.get("$defs", {})) if result else None,
            payload_source=sources["payload"],
            result_source=sources.get("result"),
        )
    if problems:
        raise ConfigError(problems)
    return loaded


def _check_schedule_payloads(
    channel: ChannelConfig, payload: dict[str, Any], document: LocatedDocument
) -> list[Problem]:
    """Each schedule's payload against the channel's payload schema, as a job's would be
    (formats included): a schedule that could never enqueue is a config error."""
    if not channel.schedules:
        return []
    validator = jsonschema.Draft202012Validator(
        payload, format_checker=jsonschema.Draft202012Validator.FORMAT_CHECKER
    )
    problems = []
    for entry in channel.schedules:
        for error in validator.iter_errors(dict(entry.schedule.payload)):
            path: KeyPath = (*entry.key_path, "payload", *error.absolute_path)
            problems.append(
                document.problem(
                    path,
                    f"schedule {entry.schedule.name!r}: the payload does not match the "
                    f"channel's payload schema: {error.message}",
                )
            )
    return problems
