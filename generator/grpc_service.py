"""Render `<package>/grpc_service.py`: the `service ChannelsService` servicer and its table.

The table (`runtime.grpc.payload.MessageTable`) is derived from the same mapping that
rendered `channels.proto` (`generator.proto.build_proto_file`), so the two cannot disagree;
the servicer hands each request to `runtime.grpc.payload.MessageEnqueuer`, which turns it
into the payload model and enqueues it. `service JobsService` is the same in every package: the
runtime's `JobsServicer`, given this package's messages, serves it. Output is
deterministic, formatted as ruff formats it, and parses (`ast.parse`) before it is returned.
"""

from __future__ import annotations

import ast
import json
from collections.abc import Sequence
from dataclasses import dataclass

from generator.proto import (
    JOBS_SERVICE_NAME,
    PROTO_PACKAGE,
    SERVICE_NAME,
    ConstDef,
    FieldDef,
    JsonScalar,
    ProtoChannel,
    build_proto_file,
)
from generator.templating import template_environment

__all__ = ["render_grpc_service"]


@dataclass(frozen=True, slots=True)
class _Arg:
    name: str
    value: str


_LINE_LENGTH = 100


@dataclass(frozen=True, slots=True)
class _ChannelView:
    name: str
    prefix: str
    payload: str  # the payload message's name in the table
    batch_max: int
    priority: int  # of jobs enqueued without one

    @property
    def constant(self) -> str:
        """The module constant holding the channel's ChannelSpec (`EMAIL_CHANNEL`)."""
        return f"{self.name.upper()}_CHANNEL"

    @property
    def enqueue_call(self) -> str:
        return _statement(
            "job_id = await self._enqueuer.enqueue", ["context", self.constant, "request"]
        )

    @property
    def batch_call(self) -> str:
        return _statement(
            "job_ids = await self._enqueuer.enqueue_batch",
            ["context", self.constant, "request"],
        )


def _statement(call: str, arguments: list[str], indent: int = 8) -> str:
    """`call(arguments)` at `indent`, wrapped as ruff format wraps it when too long."""
    joined = ", ".join(arguments)
    if indent + len(call) + len(joined) + 2 <= _LINE_LENGTH:
        return f"{call}({joined})"
    pad = " " * indent
    if indent + 4 + len(joined) <= _LINE_LENGTH:
        return f"{call}(\n{pad}    {joined}\n{pad})"
    lines = "".join(f"{pad}    {argument},\n" for argument in arguments)
    return f"{call}(\n{lines}{pad})"


def render_grpc_service(
    channels: Sequence[ProtoChannel], package: str, proto_package: str = PROTO_PACKAGE
) -> str:
    """Python source of `<package>/grpc_service.py` for these channels."""
    proto = build_proto_file(channels)
    messages = []
    for message in proto.messages():
        fields = [_field_args(f) for f in message.members if isinstance(f, FieldDef)]
        consts = [
            [_Arg("json", _literal(c.json)), _Arg("value", _literal(c.value))]
            for c in message.members
            if isinstance(c, ConstDef)
        ]
        messages.append(
            {"name": message.full, "fields": fields, "consts": consts, "oneof": message.oneof}
        )
    enums = [
        {"name": enum.full, "values": [(n, _literal(v)) for n, _, v in enum.numbered()]}
        for enum in sorted(proto.enums(), key=lambda e: e.full)
    ]
    views = [
        _ChannelView(
            c.channel.name,
            c.channel.type_prefix,
            c.payload.full,
            c.channel.batch_max,
            c.channel.priority,
        )
        for c in proto.channels
    ]
    source = (
        template_environment()
        .get_template("grpc_service.py.j2")
        .render(
            package=package,
            channels=views,
            messages=messages,
            enums=enums,
            stubs=f"{package}.proto.{proto_package}",
            service=f"{proto_package}.{SERVICE_NAME}",
            jobs_service=f"{proto_package}.{JOBS_SERVICE_NAME}",
            literal=_literal,
        )
    )
    ast.parse(source)
    return source


def _field_args(field: FieldDef) -> list[_Arg]:
    args = [_Arg("proto", _literal(field.proto)), _Arg("json", _literal(field.json))]
    if field.kind != "scalar":
        args += [_Arg("kind", _literal(field.kind)), _Arg("ref", _literal(field.type_name))]
    if field.shape != "single":
        args.append(_Arg("shape", _literal(field.shape)))
    if field.required:
        args.append(_Arg("required", "True"))
    if field.nullable:
        args.append(_Arg("nullable", "True"))
    if field.tags:
        tags = ", ".join(_literal(tag) for tag in field.tags)
        args.append(_Arg("tags", f"({tags},)" if len(field.tags) == 1 else f"({tags})"))
    return args


def _literal(value: JsonScalar) -> str:
    """A Python literal as ruff format writes it (double quotes)."""
    if isinstance(value, bool):
        return "True" if value else "False"
    if isinstance(value, str):
        return json.dumps(value)
    return repr(value)
