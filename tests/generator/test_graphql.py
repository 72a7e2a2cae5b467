"""The GraphQL schema module: rendered from the same mapping as channels.proto, golden,
deterministic, and refused with a clear error where GraphQL's one namespace cannot hold
a payload's types. The served schema itself (SDL) is checked in test_output.py's golden
project, and over HTTP in tests/runtime/test_graphql.py."""

from __future__ import annotations

import difflib
import importlib.util
import os
import random
from pathlib import Path
from types import ModuleType

import pytest

from generator.graphql import RESERVED_NAMES, GraphQLMappingError, render_graphql_schema
from generator.proto import ProtoChannel

FIXTURES = Path(__file__).parent / "fixtures"
EXPECTED = FIXTURES / "expected" / "graphql_schema.py.expected"  # not linted: rendered text
UPDATE = "CHANNELKIT_UPDATE_GOLDEN"  # CHANNELKIT_UPDATE_GOLDEN=1 pytest tests/generator


def _load_sample() -> ModuleType:
    spec = importlib.util.spec_from_file_location("grpc_sample_gql", FIXTURES / "grpc_sample.py")
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


sample = _load_sample()


def test_graphql_module_matches_golden_file() -> None:
    text = render_graphql_schema(sample.sample_channels(), "generated")
    if os.environ.get(UPDATE):
        EXPECTED.write_text(text, encoding="utf-8")
    expected = EXPECTED.read_text(encoding="utf-8")
    diff = "".join(
        difflib.unified_diff(
            expected.splitlines(keepends=True),
            text.splitlines(keepends=True),
            str(EXPECTED),
            "rendered",
        )
    )
    assert not diff, f"graphql_schema.py changed; rerun with {UPDATE}=1 if intended:\n{diff}"


def test_render_is_deterministic_whatever_the_channel_order() -> None:
    channels = sample.sample_channels()
    shuffled = list(reversed(channels))
    random.Random(2).shuffle(shuffled)
    assert render_graphql_schema(shuffled, "generated") == render_graphql_schema(
        channels, "generated"
    )


def test_the_mapping_of_each_construct() -> None:
    text = render_graphql_schema(sample.sample_channels(), "generated")
    for line in (
        # bounded integer: Int; a union: @oneOf with its branch tags for error paths
        'retries: int = strawberry.field(description="required; minimum: 0;',
        "@strawberry.input(one_of=True,",
        # a map is JSON; a property whose JSON name is not its Python name says so
        "headers: JSON | None = strawberry.field(default=strawberry.UNSET)",
        "send_at: str | None = strawberry.field(",
        '"json": "sendAt"',
        # a required nullable property: null when left out, as proto's converter does
        'reply_to: str | None = strawberry.field(default=strawberry.UNSET, description="required;',
        'metadata={"null_if_unset": True})',
        # a const property is filled in by the server
        'CONSTS: ClassVar[dict[str, Any]] = {"kind": "email"}',
        "async def _enqueue_push_alerts(",
        "enqueue_push_alerts_batch: GraphQLEnqueuedBatch = strawberry.mutation(",
        # the job options, and the channel's default priority for a job without one
        "priority: Annotated[int | None, strawberry.argument(description=PRIORITY)] = None,",
        "timeout_ms: Annotated[Long | None, strawberry.argument(description=TIMEOUT_MS)]",
        "priority=5,",
    ):
        assert line in text, line
    declared = ProtoChannel("otp", "Otp", {"type": "object", "properties": {}}, priority=1)
    assert "priority=1," in render_graphql_schema([declared], "generated")


def _channel(name: str, prefix: str, defs: dict[str, object]) -> ProtoChannel:
    schema = {
        "type": "object",
        "properties": {"x": {"$ref": f"#/$defs/{next(iter(defs))}"}},
        "$defs": defs,
    }
    return ProtoChannel(name, prefix, schema)


def test_a_type_name_the_schema_reserves_is_refused() -> None:
    thing = {"type": "object", "properties": {"a": {"type": "string"}}}
    with pytest.raises(GraphQLMappingError, match="type JobPage is a name the schema reserves"):
        render_graphql_schema([_channel("job", "Job", {"Page": {"enum": ["a", "b"]}})], "g")
    with pytest.raises(GraphQLMappingError, match="is taken by channel 'a'"):
        render_graphql_schema(
            [
                _channel("a", "A", {"BThing": thing}),
                _channel("a_b", "AB", {"Thing": thing}),
            ],
            "g",
        )


def test_every_type_name_the_runtime_defines_is_reserved() -> None:
    """A payload type may not take a name the schema defines itself (Job, BulkResult, ...):
    RESERVED_NAMES must keep up with the runtime's types (runtime/graphql/types.py)."""
    import generated.graphql_schema as module

    defined_here = {
        name
        for name, value in vars(module).items()
        if isinstance(value, type) and value.__module__ == module.__name__
    }
    payload_types = defined_here - {"Query", "Mutation", "Subscription", "ChannelName"}
    assert "SmsPayloadInput" in payload_types  # the scan sees the payloads' types
    served = set(module.SCHEMA._schema.type_map)
    fixed = {name for name in served - payload_types if not name.startswith("__")}
    assert {"Job", "BulkResult", "CancelResult", "PriorityCount"} <= fixed
    assert fixed <= RESERVED_NAMES, sorted(fixed - RESERVED_NAMES)
