"""Render `<package>/graphql_schema.py`: the GraphQL schema, from the same mapping as gRPC.

The payload schemas are mapped once (`generator.proto.build_proto_file`); this module reads
that model, so GraphQL, gRPC and the pydantic models cannot disagree about a payload:

| JSON Schema                              | GraphQL                                         |
|------------------------------------------|-------------------------------------------------|
| the payload object                       | input `<Prefix>PayloadInput`                    |
| an object in `$defs` or inline           | input `<Prefix><Name>Input`                     |
| `oneOf` / `anyOf` of several             | a `@oneOf` input: one field per branch          |
| `enum` (and `const` outside a property)  | enum `<Prefix><Name>` (values upper snake case) |
| required property with one `const` value | left out; the server fills it in                |
| `string`, `number`, `boolean`            | `String`, `Float`, `Boolean`                    |
| `integer` bounded to 32 bits             | `Int`; otherwise `Long` (64 bits)               |
| `array`                                  | a list (`[T!]`)                                 |
| `additionalProperties: <schema>` (a map) | `JSON`                                          |
| required, not nullable                   | non-null (`T!`); otherwise nullable             |

Field names are the Python names of the proto mapping, camelCased by strawberry
(`reply_to` → `replyTo`); descriptions come from the schema's `description`s. The input
classes carry what the runtime needs to turn them back into the JSON a client would have
sent (runtime.graphql.inputs): each field's JSON name where it differs, union branch tags,
constants. Output is deterministic and parses (`ast.parse`); the pipeline formats it.
"""

from __future__ import annotations

import ast
import json
from collections.abc import Sequence
from dataclasses import dataclass, field

from generator.errors import GeneratorError
from generator.proto import ConstDef, EnumDef, FieldDef, MessageDef, ProtoChannel, build_proto_file
from generator.templating import template_environment

__all__ = ["RESERVED_NAMES", "GraphQLMappingError", "render_graphql_schema"]

# Type names the schema defines whatever the channels: a payload's type may not take one.
RESERVED_NAMES = frozenset(
    {
        "Query",
        "Mutation",
        "Subscription",
        "BulkResult",
        "CancelResult",
        "Job",
        "JobError",
        "JobEvent",
        "JobEventGap",
        "JobEventType",
        "JobState",
        "JobPage",
        "ChannelCounts",
        "LimiterWindow",
        "PriorityCount",
        "EnqueuedJob",
        "EnqueuedBatch",
        "ChannelName",
        "Long",
        "JSON",
        "DateTime",
        "ID",
        "String",
        "Int",
        "Float",
        "Boolean",
    }
)
_SCALARS = {"string": "str", "double": "float", "bool": "bool"}


class GraphQLMappingError(GeneratorError, ValueError):
    """A channel's payload types cannot be named in GraphQL's one namespace."""

    def __init__(self, channel: str, reason: str) -> None:
        self.channel = channel
        self.reason = reason
        super().__init__(f"channel {channel!r}: {reason}")


@dataclass(frozen=True, slots=True)
class _Enum:
    name: str
    description: str
    members: list[tuple[str, str]]  # (member name, Python literal of the JSON value)


@dataclass(frozen=True, slots=True)
class _Field:
    name: str
    annotation: str
    arguments: str  # of strawberry.field(...), or "" for a plain annotation


@dataclass(slots=True)
class _Input:
    name: str
    description: str
    one_of: bool
    fields: list[_Field] = field(default_factory=list)
    consts: str = ""  # a dict literal, or ""


@dataclass(frozen=True, slots=True)
class _Channel:
    name: str
    prefix: str
    input: str
    description: str
    batch_max: int
    priority: int

    @property
    def constant(self) -> str:
        return f"{self.name.upper()}_CHANNEL"

    @property
    def batch_description(self) -> str:
        bound = f" (at most {self.batch_max})" if self.batch_max else ""
        return _literal(f"All or nothing: one invalid payload rejects the whole batch{bound}.")


class _Names:
    """GraphQL type names, unique across every channel."""

    def __init__(self) -> None:
        self.taken: dict[str, str] = {}  # name -> the channel that took it
        self.of: dict[str, str] = {}  # proto full name -> GraphQL name

    def add(self, channel: ProtoChannel, full: str, suffix: str) -> str:
        parts = full.split(".")
        rest = "".join(parts[1:])
        prefix = channel.type_prefix
        base = parts[0] if not rest else (rest if rest.startswith(prefix) else prefix + rest)
        name = base + suffix
        if name in RESERVED_NAMES:
            raise GraphQLMappingError(channel.name, f"type {name} is a name the schema reserves")
        if name in self.taken:
            raise GraphQLMappingError(
                channel.name,
                f"type {name} (from {full}) is taken by channel {self.taken[name]!r}; "
                "rename a $defs entry or a title",
            )
        self.taken[name] = channel.name
        self.of[full] = name
        return name


def render_graphql_schema(channels: Sequence[ProtoChannel], package: str) -> str:
    """Python source of `<package>/graphql_schema.py` for these channels."""
    proto = build_proto_file(channels)
    names = _Names()
    for item in proto.channels:
        for message in item.payload.walk():
            names.add(item.channel, message.full, "Input")
            for enum in message.enums:
                names.add(item.channel, enum.full, "")
    enums: list[_Enum] = []
    inputs: list[_Input] = []
    views: list[_Channel] = []
    for item in proto.channels:
        for message in item.payload.walk():
            enums.extend(_enum(enum, names) for enum in message.enums)
            inputs.append(_input(message, names))
        channel = item.channel
        views.append(
            _Channel(
                channel.name,
                channel.type_prefix,
                names.of[item.payload.full],
                channel.description.strip() or f"Enqueue a {channel.name} job.",
                channel.batch_max,
                channel.priority,
            )
        )
    source = (
        template_environment()
        .get_template("graphql_schema.py.j2")
        .render(
            package=package,
            channels=views,
            enums=enums,
            inputs=inputs,
            literal=_literal,
        )
    )
    ast.parse(source)
    return source


def _enum(enum: EnumDef, names: _Names) -> _Enum:
    prefix = enum.unspecified.removesuffix("UNSPECIFIED")
    members: list[tuple[str, str]] = []
    seen: set[str] = set()
    for value_name, value in enum.values:
        member = value_name.removeprefix(prefix) or "VALUE"
        if member[0].isdigit():
            member = f"V_{member}"
        candidate, index = member, 2
        while candidate in seen:
            candidate, index = f"{member}_{index}", index + 1
        seen.add(candidate)
        members.append((candidate, _literal(value)))
    return _Enum(names.of[enum.full], "\n".join(enum.comment), members)


def _input(message: MessageDef, names: _Names) -> _Input:
    description = "\n".join(message.comment)
    if message.oneof and not description:
        description = "Set exactly one of its fields: " + ", ".join(f.proto for f in message.fields)
    found = _Input(names.of[message.full], description, bool(message.oneof))
    consts = {m.json: m.value for m in message.members if isinstance(m, ConstDef)}
    if consts:
        found.consts = (
            "{" + ", ".join(f"{_literal(k)}: {_literal(v)}" for k, v in consts.items()) + "}"
        )
    for member in message.fields:
        found.fields.append(_field(member, names, union=bool(message.oneof)))
    return found


def _field(member: FieldDef, names: _Names, *, union: bool) -> _Field:
    if member.kind == "scalar":
        annotation = ("int" if member.int32 else "Long") if member.type_name == "int64" else ""
        annotation = annotation or _SCALARS[member.type_name]
    else:
        annotation = names.of[member.type_name]
    if member.shape == "list":
        annotation = f"list[{annotation}]"
    elif member.shape == "map":
        annotation = "JSON"
    optional = union or not member.required or member.nullable
    metadata: dict[str, str] = {}
    if not union and member.json != member.proto:
        metadata["json"] = _literal(member.json)
    if not union and member.required and member.nullable:
        metadata["null_if_unset"] = "True"
    if union:
        metadata["tags"] = "(" + "".join(f"{_literal(tag)}, " for tag in member.tags) + ")"
    arguments = []
    if optional:
        annotation = f"{annotation} | None"
        arguments.append("default=strawberry.UNSET")
    description = "\n".join(member.comment)
    if description:
        arguments.append(f"description={_literal(description)}")
    if metadata:
        pairs = ", ".join(f"{_literal(key)}: {value}" for key, value in metadata.items())
        arguments.append(f"metadata={{{pairs}}}")
    return _Field(member.proto, annotation, ", ".join(arguments))


def _literal(value: str | int | float | bool) -> str:
    if isinstance(value, bool):
        return "True" if value else "False"
    if isinstance(value, str):
        return json.dumps(value, ensure_ascii=False)
    return repr(value)
