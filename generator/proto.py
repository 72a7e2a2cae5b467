"""Map each channel's bundled JSON Schema to proto3 and render `channels.proto`.

`build_proto_file` turns the schemas into a small model of messages, enums and fields
(`ProtoFile`); `render_proto` prints it, and `generator.grpc_service` derives from the very
same model the table that turns a received message back into the dict a JSON client would
have sent. The mapping is documented in docs/grpc.md:

- an object becomes a message (`<Prefix>Payload` for the payload; `$defs` and inline objects
  become messages nested inside it, so two channels' `$defs/Recipient` do not collide);
- `enum` (and `const` outside a property) becomes an enum with a zero `<NAME>_UNSPECIFIED`;
- a required property whose only allowed value is a `const` is left out of the message,
  its number reserved, and filled in by the server;
- `oneOf`/`anyOf` becomes a message holding a `oneof variant` with a field per branch;
- arrays are `repeated`, `additionalProperties: <schema>` is a `map<string, V>`;
- scalars not required (or nullable) are `optional`; integers are int64, numbers double.

What proto cannot express raises `ProtoMappingError` naming the channel and JSON pointer.
The file passes `buf lint` with the STANDARD rules: services end in `Service`, every RPC has
its own `<Rpc>Request` and `<Rpc>Response`, and the file lives at `proto_path(package)`
(`channels/v1/channels.proto` for `channels.v1`). It ends with `service JobsService` and
`service SchedulesService` and their messages (generator.proto_jobs,
generator.proto_schedules), the same in every project.
"""

from __future__ import annotations

import json
import keyword
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, NoReturn

from generator.errors import GeneratorError
from generator.lock import Allocator, ChannelLock
from generator.proto_jobs import JOBS_IMPORTS, JOBS_PROTO, JOBS_SERVICE_NAME, JOBS_TOP_LEVEL
from generator.proto_schedules import SCHEDULES_PROTO, SCHEDULES_TOP_LEVEL

__all__ = [
    "JOBS_SERVICE_NAME",
    "PROTO_FILE_NAME",
    "PROTO_PACKAGE",
    "SERVICE_NAME",
    "ConstDef",
    "EnumDef",
    "FieldDef",
    "MessageDef",
    "ProtoChannel",
    "ProtoFile",
    "ProtoMappingError",
    "build_proto_file",
    "proto_path",
    "render_proto",
]

PROTO_PACKAGE = "channels.v1"
SERVICE_NAME = "ChannelsService"
PROTO_FILE_NAME = "channels.proto"

Kind = Literal["scalar", "enum", "message"]
Shape = Literal["single", "list", "map"]
JsonScalar = str | int | float | bool

_SCALARS = {"string": "string", "integer": "int64", "number": "double", "boolean": "bool"}
_PYTHON_TYPES = {"string": "str", "integer": "int", "number": "float", "boolean": "bool"}
_UNSUPPORTED = ("not", "if", "then", "else", "prefixItems", "patternProperties", "contains")
_CONSTRAINTS = (
    "format",
    "pattern",
    "minLength",
    "maxLength",
    "minimum",
    "maximum",
    "exclusiveMinimum",
    "exclusiveMaximum",
    "multipleOf",
    "minItems",
    "maxItems",
    "uniqueItems",
    "default",
)


class ProtoMappingError(GeneratorError, ValueError):
    """A channel's payload schema uses a construct that proto3 cannot express."""

    def __init__(self, channel: str, pointer: str, reason: str) -> None:
        self.channel = channel
        self.pointer = pointer
        self.reason = reason
        super().__init__(f"channel {channel!r}: payload schema at {pointer}: {reason}")


@dataclass(frozen=True, slots=True)
class ProtoChannel:
    """One channel as the proto generator needs it (channels are rendered sorted by name)."""

    name: str  # snake_case channel name, e.g. `push_alerts`
    type_prefix: str  # Python class prefix, e.g. `PushAlerts`
    payload_schema: Mapping[str, Any]  # bundled: only local `#/$defs/Name` references
    description: str = ""
    batch_max: int = 0  # the most payloads one batch RPC takes; 0: no limit
    lock: ChannelLock | None = None  # numbers kept from the lock file (generator.lock)
    priority: int = 5  # of jobs enqueued without one


@dataclass(frozen=True, slots=True)
class _Type:
    kind: Kind
    name: str  # proto scalar type, or the package-relative name of a message or enum
    shape: Shape = "single"
    nullable: bool = False


@dataclass(slots=True)
class FieldDef:
    """A message field; in a union message, one branch of its `oneof`."""

    json: str
    proto: str
    number: int
    kind: Kind
    type_name: str
    shape: Shape
    required: bool
    nullable: bool
    comment: list[str]
    tags: tuple[str, ...] = ()  # union branches: names pydantic may use for this branch
    int32: bool = False  # an integer whose bounds fit 32 bits (GraphQL's Int; proto: int64)

    @property
    def presence(self) -> bool:
        """Whether the field has explicit presence (`optional`, or a message)."""
        if self.shape != "single":
            return False
        return self.kind == "message" or not self.required or self.nullable


@dataclass(slots=True)
class ConstDef:
    """A required property with one allowed value: reserved in proto, filled in by the server."""

    json: str
    number: int
    value: JsonScalar
    comment: list[str]


@dataclass(slots=True)
class EnumDef:
    name: str
    full: str
    values: list[tuple[str, JsonScalar]]  # 0 is `<NAME>_UNSPECIFIED`
    unspecified: str
    comment: list[str]
    numbers: list[int] = field(default_factory=list)  # of `values`, from the lock
    reserved: list[tuple[int, str]] = field(default_factory=list)  # removed values

    def numbered(self) -> list[tuple[int, str, JsonScalar]]:
        """(number, proto name, JSON value) of every value, in declaration order."""
        return [
            (n, name, value) for n, (name, value) in zip(self.numbers, self.values, strict=True)
        ]


@dataclass(slots=True)
class MessageDef:
    name: str
    full: str
    comment: list[str]
    members: list[FieldDef | ConstDef] = field(default_factory=list)
    messages: list[MessageDef] = field(default_factory=list)
    enums: list[EnumDef] = field(default_factory=list)
    oneof: str = ""  # non-empty: a union; exactly one branch is set and is the value
    symbols: set[str] = field(default_factory=set)
    reserved: list[tuple[int, str]] = field(default_factory=list)  # removed: number, JSON name

    @property
    def fields(self) -> list[FieldDef]:
        return [m for m in self.members if isinstance(m, FieldDef)]

    @property
    def consts(self) -> list[ConstDef]:
        return [m for m in self.members if isinstance(m, ConstDef)]

    def walk(self) -> list[MessageDef]:
        """This message and every message nested in it, depth first, in output order."""
        found = [self]
        for nested in sorted(self.messages, key=lambda m: m.name):
            found.extend(nested.walk())
        return found


@dataclass(slots=True)
class ProtoChannelDef:
    channel: ProtoChannel
    payload: MessageDef


@dataclass(slots=True)
class ProtoFile:
    channels: list[ProtoChannelDef]

    def messages(self) -> list[MessageDef]:
        return [m for c in self.channels for m in c.payload.walk()]

    def enums(self) -> list[EnumDef]:
        return [e for m in self.messages() for e in m.enums]


def proto_path(proto_package: str) -> str:
    """Where channels.proto lives, relative to the proto root: `channels/v1/channels.proto`
    for package `channels.v1` (buf's PACKAGE_DIRECTORY_MATCH)."""
    return "/".join([*proto_package.split("."), PROTO_FILE_NAME])


def build_proto_file(channels: Sequence[ProtoChannel]) -> ProtoFile:
    """Map every channel's payload schema; raises `ProtoMappingError`."""
    ordered = sorted(channels, key=lambda c: c.name)
    top_level = {SERVICE_NAME, *JOBS_TOP_LEVEL, *SCHEDULES_TOP_LEVEL}
    defs = []
    for channel in ordered:
        prefix = channel.type_prefix
        names = [
            f"{prefix}Payload",
            f"Enqueue{prefix}Request",
            f"Enqueue{prefix}Response",
            f"Enqueue{prefix}BatchRequest",
            f"Enqueue{prefix}BatchResponse",
        ]
        for name in names:
            if name in top_level:
                raise ProtoMappingError(channel.name, "#", f"top-level name {name} is taken twice")
            top_level.add(name)
        defs.append(ProtoChannelDef(channel, _Builder(channel).build()))
    return ProtoFile(defs)


def render_proto(channels: Sequence[ProtoChannel], proto_package: str = PROTO_PACKAGE) -> str:
    """The text of `channels.proto` for these channels, byte-identical across runs.

    `proto_package` names the messages and services (`channels.v1.ChannelsService`): two
    projects whose stubs are imported into one Python process need different ones,
    since protobuf keeps one registry of full names per process.
    """
    proto = build_proto_file(channels)
    nested = {m.name for m in proto.messages() if "." in m.full} | {e.name for e in proto.enums()}
    top = {c.payload.name for c in proto.channels}
    qualifier = f".{proto_package}." if nested & top else ""
    out = _Printer(qualifier)
    out.line('syntax = "proto3";')
    out.line()
    out.line(f"package {proto_package};")
    out.line()
    for path in JOBS_IMPORTS:
        out.line(f'import "{path}";')
    out.line()
    out.line("// Enqueue jobs on the channels declared in channels.yaml.")
    out.line(f"service {SERVICE_NAME} {{")
    for index, item in enumerate(proto.channels):
        channel, prefix = item.channel, item.channel.type_prefix
        if index:
            out.line()
        out.comment(_lines(channel.description) or [f"The {channel.name!r} channel."], 1)
        out.line(
            f"  rpc Enqueue{prefix}(Enqueue{prefix}Request) returns (Enqueue{prefix}Response);"
        )
        out.comment(["All or nothing: one invalid payload rejects the whole batch."], 1)
        out.line(
            f"  rpc Enqueue{prefix}Batch(Enqueue{prefix}BatchRequest)"
            f" returns (Enqueue{prefix}BatchResponse);"
        )
    out.line("}")
    for item in proto.channels:
        prefix, payload = item.channel.type_prefix, out.ref(item.payload.full)
        out.line()
        out.line(f"message Enqueue{prefix}Request {{")
        out.line(f"  {payload} payload = 1;")
        out.line("  // Defaults to a generated id; enqueueing an id that exists is a no-op.")
        out.line("  optional string job_id = 2;")
        out.line("  // Run no earlier than this many milliseconds from now.")
        out.line("  optional uint64 delay_ms = 3;")
        out.line("  // 1 starts first, 10 last (FIFO within one); unset: the channel's default.")
        out.line("  optional uint32 priority = 4;")
        out.line("  // Cancel a run after this many milliseconds (error type `timeout`); unset:")
        out.line("  // the channel's timeout.")
        out.line("  optional uint64 timeout_ms = 5;")
        out.line("}")
        out.line()
        out.line(f"message Enqueue{prefix}Response {{")
        out.line("  string job_id = 1;")
        out.line("}")
        out.line()
        out.line(f"message Enqueue{prefix}BatchRequest {{")
        out.line("  // Payloads with the channel's defaults; or use `jobs`, not both.")
        out.line(f"  repeated {payload} payloads = 1;")
        out.line("  // Items with their own job id (idempotent per item), delay, priority and")
        out.line("  // timeout.")
        out.line(f"  repeated Enqueue{prefix}Request jobs = 2;")
        out.line("}")
        out.line()
        out.line(f"message Enqueue{prefix}BatchResponse {{")
        out.line("  // In the order of the request's payloads (or jobs).")
        out.line("  repeated string job_ids = 1;")
        out.line("}")
        out.line()
        out.message(item.payload, 0)
    out.line()
    out.line(JOBS_PROTO.rstrip("\n"))
    out.line()
    out.line(SCHEDULES_PROTO.rstrip("\n"))
    return out.text()


class _Printer:
    def __init__(self, qualifier: str) -> None:
        self._lines: list[str] = []
        self._qualifier = qualifier

    def text(self) -> str:
        return "\n".join(self._lines) + "\n"

    def line(self, text: str = "") -> None:
        self._lines.append(text)

    def comment(self, lines: list[str], depth: int) -> None:
        for text in lines:
            self.line(f"{'  ' * depth}//{' ' if text else ''}{text}")

    def ref(self, full: str) -> str:
        return self._qualifier + full

    def message(self, message: MessageDef, depth: int) -> None:
        pad = "  " * depth
        self.comment(message.comment, depth)
        self.line(f"{pad}message {message.name} {{")
        body: list[list[str]] = []
        for enum in sorted(message.enums, key=lambda e: e.name):
            body.append(self._enum(enum, depth + 1))
        for nested in sorted(message.messages, key=lambda m: m.name):
            sub = _Printer(self._qualifier)
            sub.message(nested, depth + 1)
            body.append(sub._lines)
        members = [self._member(m, depth + 1 + bool(message.oneof)) for m in message.members]
        if message.oneof:
            branches = [line for member in members for line in member]
            members = [[f"{pad}  oneof {message.oneof} {{", *branches, f"{pad}  }}"]]
        body.extend(members)
        if message.reserved:
            live = {m.proto for m in message.fields}
            reserved = [(number, _field_name(name)) for number, name in message.reserved]
            body.append(_reserved_lines(reserved, live, depth + 1, "fields"))
        for index, block in enumerate(body):
            if index:
                self.line()
            self._lines.extend(block)
        self.line(f"{pad}}}")

    def _enum(self, enum: EnumDef, depth: int) -> list[str]:
        pad = "  " * depth
        lines = [f"{pad}//{' ' if text else ''}{text}" for text in enum.comment]
        lines.append(f"{pad}enum {enum.name} {{")
        lines.append(f"{pad}  {enum.unspecified} = 0;")
        for number, name, value in enum.numbered():
            lines.append(f"{pad}  {name} = {number}; // {_json(value)}")
        if enum.reserved:
            live = {name for name, _ in enum.values}
            lines.extend(_reserved_lines(enum.reserved, live, depth + 1, "values"))
        lines.append(f"{pad}}}")
        return lines

    def _member(self, member: FieldDef | ConstDef, depth: int) -> list[str]:
        pad = "  " * depth
        lines = [f"{pad}//{' ' if text else ''}{text}" for text in member.comment]
        if isinstance(member, ConstDef):
            lines.append(f"{pad}reserved {member.number};")
            return lines
        type_name = member.type_name if member.kind == "scalar" else self.ref(member.type_name)
        if member.shape == "list":
            type_name = f"repeated {type_name}"
        elif member.shape == "map":
            type_name = f"map<string, {type_name}>"
        elif member.presence and member.kind != "message" and not member.tags:
            type_name = f"optional {type_name}"
        option = ""
        if member.json != _lower_camel(member.proto) and not member.tags:
            option = f" [json_name = {json.dumps(member.json, ensure_ascii=False)}]"
        lines.append(f"{pad}{type_name} {member.proto} = {member.number}{option};")
        return lines


def _reserved_lines(
    reserved: list[tuple[int, str]], live: set[str], depth: int, what: str
) -> list[str]:
    """`reserved` statements for removed numbers, and for their names unless live again."""
    pad = "  " * depth
    numbers = ", ".join(str(number) for number, _ in reserved)
    names = sorted({name for _, name in reserved} - live)
    lines = [
        f"{pad}// Removed {what}: never used again (kept in the lock file beside channels.yaml).",
        f"{pad}reserved {numbers};",
    ]
    if names:
        lines.append(f"{pad}reserved {', '.join(json.dumps(name) for name in names)};")
    return lines


class _Builder:
    def __init__(self, channel: ProtoChannel) -> None:
        self.channel = channel
        self.schema = channel.payload_schema
        defs = self.schema.get("$defs", {})
        if not isinstance(defs, Mapping):
            self.fail("#/$defs", "$defs must be an object")
        self.defs: Mapping[str, Any] = defs
        self.def_types: dict[str, _Type] = {}
        self.resolving: set[str] = set()
        self.root = MessageDef(f"{channel.type_prefix}Payload", f"{channel.type_prefix}Payload", [])

    def fail(self, pointer: str, reason: str) -> NoReturn:
        raise ProtoMappingError(self.channel.name, pointer, reason)

    def numbers(self, full: str, *, enum: bool = False) -> Allocator:
        """The kept numbers of a message (or enum) named `full`, from the channel's lock."""
        lock = self.channel.lock
        if lock is None:
            return Allocator(None)
        relative = full[len(self.channel.type_prefix) :]
        return Allocator((lock.enums if enum else lock.messages).get(relative))

    def build(self) -> MessageDef:
        root, schema = self.root, self.schema
        root.comment = _lines(schema.get("description")) or [f"The {self.channel.name!r} payload."]
        for name in sorted(self.defs):
            if _pascal(name) in root.symbols or not _pascal(name):
                self.fail(f"#/$defs/{_escape(name)}", f"two $defs map to message {_pascal(name)}")
            root.symbols.add(_pascal(name))
        branches = _branches(schema)
        if branches is not None and len(_without_null(branches)) > 1:
            self.union_body(root, schema, "#")
        elif _is_object(schema) and "properties" in schema:
            self.object_body(root, schema, "#")
        else:
            self.fail("#", "the payload must be an object with properties, or a oneOf of them")
        return root

    def nest(self, parent: MessageDef, hint: str, pointer: str, *, fixed: bool = False) -> str:
        """A fresh name for a type nested in `parent` (definitions keep their own name)."""
        name = _pascal(hint) or "Value"
        if fixed:
            return name
        candidate, index = name, 2
        while candidate in parent.symbols:
            candidate, index = f"{name}{index}", index + 1
        parent.symbols.add(candidate)
        return candidate

    def resolve(self, schema: Any, pointer: str, parent: MessageDef, hint: str) -> _Type:
        if not isinstance(schema, Mapping):
            self.fail(pointer, "expected a schema object")
        for word in _UNSUPPORTED:
            if word in schema:
                self.fail(pointer, f"{word!r} cannot be expressed in proto")
        if "$ref" in schema:
            return self.reference(schema["$ref"], pointer)
        if "allOf" in schema:
            parts = schema["allOf"]
            if isinstance(parts, list) and len(parts) == 1:
                return self.resolve(parts[0], f"{pointer}/allOf/0", parent, hint)
            self.fail(pointer, "allOf with more than one schema cannot be expressed in proto")
        branches = _branches(schema)
        if branches is not None:
            key = "oneOf" if "oneOf" in schema else "anyOf"
            kept = _without_null(branches)
            nullable = len(kept) < len(branches)
            if not kept:
                self.fail(pointer, f"{key} allows only null")
            if len(kept) == 1:
                index = branches.index(kept[0])
                inner = self.resolve(kept[0], f"{pointer}/{key}/{index}", parent, hint)
                return _Type(inner.kind, inner.name, inner.shape, inner.nullable or nullable)
            message = self.new_message(parent, hint, pointer, schema)
            self.union_body(message, schema, pointer)
            return _Type("message", message.full, nullable=nullable)
        type_name, nullable = self.json_type(schema, pointer)
        if "enum" in schema or "const" in schema:
            return self.enum(schema, pointer, parent, hint, nullable)
        if type_name == "object":
            return self.object(schema, pointer, parent, hint, nullable)
        if type_name == "array":
            items = schema.get("items")
            if not isinstance(items, Mapping):
                self.fail(pointer, "an array needs an `items` schema")
            item = self.resolve(items, f"{pointer}/items", parent, f"{hint}Item")
            if item.shape != "single":
                self.fail(pointer, f"an array of {_plural(item.shape)} cannot be expressed")
            return _Type(item.kind, item.name, "list", nullable)
        if type_name in _SCALARS:
            return _Type("scalar", _SCALARS[type_name], nullable=nullable)
        self.fail(pointer, f"type {type_name!r} cannot be expressed in proto")

    def json_type(self, schema: Mapping[str, Any], pointer: str) -> tuple[str, bool]:
        declared = schema.get("type")
        if isinstance(declared, list):
            kinds = [t for t in declared if t != "null"]
            if len(kinds) != 1 or len(declared) > 2 or not all(isinstance(t, str) for t in kinds):
                self.fail(pointer, f"type {declared!r}: only [T, 'null'] can be expressed in proto")
            return kinds[0], len(declared) == 2
        if isinstance(declared, str):
            if declared == "null":
                self.fail(pointer, "a property that can only be null cannot be expressed in proto")
            return declared, False
        if "enum" in schema or "const" in schema:
            return "", False
        if "properties" in schema or "additionalProperties" in schema:
            return "object", False
        if "items" in schema:
            return "array", False
        self.fail(pointer, "a schema without a type cannot be expressed in proto")

    def reference(self, ref: Any, pointer: str) -> _Type:
        prefix = "#/$defs/"
        name = ref[len(prefix) :] if isinstance(ref, str) and ref.startswith(prefix) else ""
        if name not in self.defs:
            self.fail(pointer, f"$ref {ref!r} is not a local #/$defs/Name")
        if name in self.def_types:
            return self.def_types[name]
        if name in self.resolving:
            self.fail(f"#/$defs/{name}", "a definition that contains itself must be an object")
        self.resolving.add(name)
        schema = self.defs[name]
        def_pointer = f"#/$defs/{_escape(name)}"
        if not isinstance(schema, Mapping):
            self.fail(def_pointer, "expected a schema object")
        branches = _branches(schema)
        if branches is not None and len(_without_null(branches)) > 1:
            message = self.new_message(self.root, name, def_pointer, schema, fixed=True)
            nullable = len(_without_null(branches)) < len(branches)
            self.def_types[name] = _Type("message", message.full, nullable=nullable)
            self.union_body(message, schema, def_pointer)
        elif branches is None and "properties" in schema:
            type_name, nullable = self.json_type(schema, def_pointer)
            if type_name != "object":
                self.fail(def_pointer, f"properties on a schema of type {type_name!r}")
            if isinstance(schema.get("additionalProperties"), Mapping):
                self.fail(def_pointer, "properties together with an additionalProperties schema")
            message = self.new_message(self.root, name, def_pointer, schema, fixed=True)
            self.def_types[name] = _Type("message", message.full, nullable=nullable)
            self.object_body(message, schema, def_pointer)
        elif branches is None and ("enum" in schema or "const" in schema):
            _, nullable = self.json_type(schema, def_pointer)
            self.def_types[name] = self.enum(
                schema, def_pointer, self.root, name, nullable, fixed=True
            )
        else:
            self.def_types[name] = self.resolve(schema, def_pointer, self.root, name)
        self.resolving.discard(name)
        return self.def_types[name]

    def new_message(
        self,
        parent: MessageDef,
        hint: str,
        pointer: str,
        schema: Mapping[str, Any],
        *,
        fixed: bool = False,
    ) -> MessageDef:
        name = self.nest(parent, hint, pointer, fixed=fixed)
        comment = _lines(schema.get("description")) if fixed else []  # else on the field
        message = MessageDef(name, f"{parent.full}.{name}", comment)
        parent.messages.append(message)
        return message

    def object(
        self, schema: Mapping[str, Any], pointer: str, parent: MessageDef, hint: str, nullable: bool
    ) -> _Type:
        extra = schema.get("additionalProperties")
        if "properties" in schema:
            if isinstance(extra, Mapping):
                self.fail(pointer, "properties together with an additionalProperties schema")
            message = self.new_message(parent, hint, pointer, schema)
            self.object_body(message, schema, pointer)
            return _Type("message", message.full, nullable=nullable)
        if isinstance(extra, Mapping):
            value = self.resolve(extra, f"{pointer}/additionalProperties", parent, f"{hint}Value")
            if value.shape != "single":
                self.fail(pointer, f"a map of {_plural(value.shape)} cannot be expressed in proto")
            return _Type(value.kind, value.name, "map", nullable)
        if extra is False:
            message = self.new_message(parent, hint, pointer, schema)
            return _Type("message", message.full, nullable=nullable)
        self.fail(pointer, "a free-form object (no properties, no additionalProperties schema)")

    def object_body(self, message: MessageDef, schema: Mapping[str, Any], pointer: str) -> None:
        properties = schema.get("properties")
        required = schema.get("required", [])
        if not isinstance(properties, Mapping) or not isinstance(required, list):
            self.fail(pointer, "properties must be an object and required a list")
        seen: dict[str, str] = {}
        numbers = self.numbers(message.full)
        for key, prop in properties.items():
            number = numbers.number(key)
            prop_pointer = f"{pointer}/properties/{_escape(key)}"
            is_required = key in required
            constant = _single_value(prop) if isinstance(prop, Mapping) else None
            comment = _field_comment(prop, is_required)
            if is_required and constant is not None:
                note = f"{json.dumps(key)} is always {_json(constant[0])}: the server fills it in."
                message.members.append(ConstDef(key, number, constant[0], [*comment, note]))
                continue
            name = _field_name(key)
            if name in seen:
                self.fail(prop_pointer, f"{key!r} and {seen[name]!r} both map to field {name!r}")
            seen[name] = key
            resolved = self.resolve(prop, prop_pointer, message, key)
            message.members.append(
                FieldDef(
                    key,
                    name,
                    number,
                    resolved.kind,
                    resolved.name,
                    resolved.shape,
                    is_required,
                    resolved.nullable,
                    comment,
                    int32=resolved.name == "int64" and _fits_int32(prop),
                )
            )
        message.reserved = numbers.reserved(set(properties))

    def union_body(self, message: MessageDef, schema: Mapping[str, Any], pointer: str) -> None:
        key = "oneOf" if "oneOf" in schema else "anyOf"
        branches = schema[key]
        discriminator = schema.get("discriminator")
        prop = discriminator.get("propertyName") if isinstance(discriminator, Mapping) else None
        seen: set[str] = set()
        numbers = self.numbers(message.full)
        for index, branch in enumerate(branches):
            if branch == {"type": "null"}:
                continue
            branch_pointer = f"{pointer}/{key}/{index}"
            tags = self.branch_tags(branch, prop, branch_pointer)
            base = _field_name(tags[0]) if tags else f"option_{index + 1}"
            name, suffix = base, 2
            while name in seen:
                name, suffix = f"{base}_{suffix}", suffix + 1
            seen.add(name)
            number = numbers.number(name)
            resolved = self.resolve(branch, branch_pointer, message, name)
            if resolved.shape != "single":
                self.fail(branch_pointer, f"a oneOf branch that is an {resolved.shape}")
            comment = _lines(branch.get("description")) if isinstance(branch, Mapping) else []
            message.members.append(
                FieldDef(
                    name,
                    name,
                    number,
                    resolved.kind,
                    resolved.name,
                    "single",
                    False,
                    resolved.nullable,
                    comment,
                    tags or (name,),
                )
            )
        oneof = "variant"
        while oneof in seen:
            oneof += "_"
        message.oneof = oneof
        message.reserved = numbers.reserved(seen)

    def branch_tags(self, branch: Any, prop: Any, pointer: str) -> tuple[str, ...]:
        """Names of a branch, most specific first: discriminator value, $defs name, title, type."""
        if not isinstance(branch, Mapping):
            self.fail(pointer, "expected a schema object")
        tags: list[str] = []
        target = branch
        ref = branch.get("$ref")
        if isinstance(ref, str) and ref.startswith("#/$defs/"):
            target = self.defs.get(ref[len("#/$defs/") :], {})
        if isinstance(prop, str):
            props = target.get("properties", {}) if isinstance(target, Mapping) else {}
            value = _single_value(props.get(prop, {}))
            if value is None or not isinstance(value[0], str):
                self.fail(pointer, f"discriminator {prop!r} needs a const string in every branch")
            tags.append(str(value[0]))
        if isinstance(ref, str):
            tags.append(ref.rsplit("/", 1)[-1])
        for source in (branch, target):
            title = source.get("title") if isinstance(source, Mapping) else None
            if isinstance(title, str) and title not in tags:
                tags.append(title)
        declared = branch.get("type")
        if isinstance(declared, str) and declared in _PYTHON_TYPES:
            if not tags:
                tags.append(f"{declared}_value")
            tags.append(_PYTHON_TYPES[declared])  # pydantic names plain scalar branches so
        return tuple(tags)

    def enum(
        self,
        schema: Mapping[str, Any],
        pointer: str,
        parent: MessageDef,
        hint: str,
        nullable: bool,
        *,
        fixed: bool = False,
    ) -> _Type:
        values = list(schema["enum"]) if "enum" in schema else [schema["const"]]
        if None in values:
            values = [v for v in values if v is not None]
            nullable = True
        if not values or not all(isinstance(v, str | int) for v in values):
            self.fail(pointer, "enum values must be strings, integers or booleans")
        name = self.nest(parent, hint, pointer, fixed=fixed)
        upper = _snake(name).upper()
        enum = EnumDef(name, f"{parent.full}.{name}", [], "", _lines(schema.get("description")))
        enum.unspecified = self.enum_value_name(parent, f"{upper}_UNSPECIFIED")
        numbers = self.numbers(enum.full, enum=True)
        for value in values:
            label = str(value).upper() if isinstance(value, bool) else _snake(str(value)).upper()
            if isinstance(value, int) and value < 0:
                label = f"MINUS_{-value}"
            value_name = self.enum_value_name(parent, f"{upper}_{label or 'VALUE'}")
            enum.values.append((value_name, value))
            enum.numbers.append(numbers.number(value_name))
        enum.reserved = numbers.reserved({name for name, _ in enum.values})
        parent.enums.append(enum)
        return _Type("enum", enum.full, nullable=nullable)

    def enum_value_name(self, parent: MessageDef, name: str) -> str:
        candidate, index = name.rstrip("_"), 2
        base = candidate
        while candidate in parent.symbols:
            candidate, index = f"{base}_{index}", index + 1
        parent.symbols.add(candidate)
        return candidate


_INT32 = (-(2**31), 2**31 - 1)


def _fits_int32(schema: Any) -> bool:
    """Whether an integer property (or its items, or its map values) is bounded to 32 bits
    by its own minimum and maximum."""
    if not isinstance(schema, Mapping):
        return False
    for key in ("items", "additionalProperties"):
        if isinstance(schema.get(key), Mapping):
            return _fits_int32(schema[key])
    low = schema.get("minimum", schema.get("exclusiveMinimum"))
    high = schema.get("maximum", schema.get("exclusiveMaximum"))
    numbers = all(isinstance(v, int | float) and not isinstance(v, bool) for v in (low, high))
    return numbers and _INT32[0] <= low and high <= _INT32[1]


def _branches(schema: Mapping[str, Any]) -> list[Any] | None:
    for key in ("oneOf", "anyOf"):
        if key in schema and isinstance(schema[key], list):
            return list(schema[key])
    return None


def _without_null(branches: list[Any]) -> list[Any]:
    return [b for b in branches if not (isinstance(b, Mapping) and b.get("type") == "null")]


def _is_object(schema: Mapping[str, Any]) -> bool:
    return bool(schema.get("type", "object") == "object")


def _single_value(schema: Mapping[str, Any]) -> tuple[JsonScalar] | None:
    """`(value,)` when a schema allows exactly one non-null scalar value."""
    if "const" in schema:
        value = schema["const"]
    elif isinstance(schema.get("enum"), list) and len(schema["enum"]) == 1:
        value = schema["enum"][0]
    else:
        return None
    if isinstance(value, str | int | float | bool):
        return (value,)
    return None


def _field_comment(prop: Any, required: bool) -> list[str]:
    if not isinstance(prop, Mapping):
        return []
    lines = _lines(prop.get("description"))
    facts = ["required"] if required else []
    facts.extend(f"{key}: {_json(prop[key])}" for key in _CONSTRAINTS if key in prop)
    if facts:
        lines.append("; ".join(facts))
    return lines


def _lines(text: Any) -> list[str]:
    if not isinstance(text, str):
        return []
    return [line.rstrip() for line in text.strip().splitlines()]


def _json(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, sort_keys=True)


def _plural(shape: Shape) -> str:
    return "arrays" if shape == "list" else "maps"


def _escape(key: str) -> str:
    return key.replace("~", "~0").replace("/", "~1")


_WORD = re.compile(r"[A-Z]+(?=[A-Z][a-z0-9])|[A-Z]?[a-z0-9]+|[A-Z]+")


def _words(text: str) -> list[str]:
    return [w.lower() for part in re.split(r"[^A-Za-z0-9]+", text) for w in _WORD.findall(part)]


def _snake(text: str) -> str:
    return "_".join(_words(text))


def _pascal(text: str) -> str:
    name = "".join(w[:1].upper() + w[1:] for w in _words(text))
    return f"T{name}" if name[:1].isdigit() else name


def _field_name(key: str) -> str:
    name = _snake(key) or "field"
    if name[0].isdigit():
        name = f"f_{name}"
    return f"{name}_" if keyword.iskeyword(name) else name


def _lower_camel(name: str) -> str:
    """protoc's default json_name for a field name."""
    parts = name.split("_")
    return parts[0] + "".join(p[:1].upper() + p[1:] for p in parts[1:])
