"""channels.proto rendering, protoc compilation, the servicer module, and their types."""

from __future__ import annotations

import difflib
import importlib.util
import os
import random
import shutil
import subprocess
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

from generator.grpc_service import render_grpc_service
from generator.proto import ProtoChannel, ProtoMappingError, render_proto
from generator.protoc import ProtocError, compile_proto

FIXTURES = Path(__file__).parent / "fixtures"
EXPECTED_PROTO = FIXTURES / "expected" / "channels.proto"
UPDATE = (
    "CHANNELKIT_UPDATE_GOLDEN"  # CHANNELKIT_UPDATE_GOLDEN=1 pytest tests/generator/test_proto.py
)


def _load_sample() -> ModuleType:
    spec = importlib.util.spec_from_file_location("grpc_sample_gen", FIXTURES / "grpc_sample.py")
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


sample = _load_sample()


def test_proto_matches_golden_file() -> None:
    text = render_proto(sample.sample_channels())
    if os.environ.get(UPDATE):
        EXPECTED_PROTO.parent.mkdir(exist_ok=True)
        EXPECTED_PROTO.write_text(text, encoding="utf-8")
    expected = EXPECTED_PROTO.read_text(encoding="utf-8")
    diff = "".join(
        difflib.unified_diff(
            expected.splitlines(keepends=True),
            text.splitlines(keepends=True),
            str(EXPECTED_PROTO),
            "rendered",
        )
    )
    assert not diff, f"channels.proto changed; rerun with {UPDATE}=1 if intended:\n{diff}"


def test_render_is_deterministic_and_sorted() -> None:
    channels = sample.sample_channels()
    first = render_proto(channels)
    shuffled = list(reversed(channels))
    random.Random(1).shuffle(shuffled)
    assert render_proto(shuffled) == first
    assert render_grpc_service(channels, "generated") == render_grpc_service(shuffled, "generated")


def test_proto_shape() -> None:
    text = render_proto(sample.sample_channels())
    assert text.startswith('syntax = "proto3";\n\npackage channels.v1;\n')
    for line in (
        "service ChannelsService {",
        "  rpc EnqueueEmail(EnqueueEmailRequest) returns (EnqueueEmailResponse);",
        "  rpc EnqueueEmailBatch(EnqueueEmailBatchRequest) returns (EnqueueEmailBatchResponse);",
        "  rpc EnqueuePushAlerts(EnqueuePushAlertsRequest) returns (EnqueuePushAlertsResponse);",
        "message EnqueuePushAlertsBatchResponse {",
        "service JobsService {",
        "  rpc RetryJob(RetryJobRequest) returns (RetryJobResponse);",
        "  google.protobuf.Value result = 14;",
        '  reserved "result_json";',
        "  EmailPayload payload = 1;",
        "  optional string job_id = 2;",
        "  optional uint64 delay_ms = 3;",
        "  repeated PushAlertsPayload payloads = 1;",
        "  repeated string job_ids = 1;",
        "    PRIORITY_UNSPECIFIED = 0;",
        '    PRIORITY_HIGH_PRIORITY = 3; // "high-priority"',
        "  repeated EmailPayload.Recipient recipients = 1;",
        "  string subject = 2;",
        "  reserved 4;",
        '  optional string reply_to = 5 [json_name = "reply_to"];',
        "  int64 retries = 6;",
        "  optional double score = 14;",
        "  map<string, string> headers = 16;",
        "  map<string, EmailPayload.Attachment> attachments = 17;",
        "    oneof variant {",
        "      EmailPayload.SmtpRoute smtp = 1;",
        "      int64 integer_value = 2;",
        "  PushAlertsPayload.Recipient target = 1;",
        "  optional int64 badge = 3;",
        "  // Who gets it.",
        "  // required; minItems: 1; maxItems: 50",
    ):
        assert f"\n{line}\n" in text, line
    # each channel's $defs/Recipient is its own message
    assert text.count("  message Recipient {") == 2


BAD_SCHEMAS: list[tuple[dict[str, Any], str, str]] = [
    (
        {
            "properties": {
                "grid": {"type": "array", "items": {"type": "array", "items": {"type": "string"}}}
            }
        },
        "#/properties/grid",
        "array of arrays",
    ),
    (
        {"properties": {"x": {"type": ["string", "integer"]}}},
        "#/properties/x",
        "only [T, 'null']",
    ),
    ({"properties": {"meta": {"type": "object"}}}, "#/properties/meta", "free-form object"),
    (
        {
            "properties": {
                "m": {
                    "type": "object",
                    "additionalProperties": {"type": "array", "items": {"type": "string"}},
                }
            }
        },
        "#/properties/m",
        "map of arrays",
    ),
    (
        {
            "properties": {
                "v": {"oneOf": [{"type": "string"}, {"type": "array", "items": {"type": "string"}}]}
            }
        },
        "#/properties/v/oneOf/1",
        "oneOf branch",
    ),
    ({"properties": {"r": {"$ref": "other.json#/x"}}}, "#/properties/r", "not a local"),
    ({"properties": {"n": {"not": {"type": "string"}}}}, "#/properties/n", "'not'"),
    ({"properties": {"z": {"type": "null"}}}, "#/properties/z", "only be null"),
    ({"type": "string"}, "#", "must be an object"),
    (
        {
            "properties": {"t": {"$ref": "#/$defs/T"}},
            "$defs": {"T": {"type": "array", "items": {"$ref": "#/$defs/T"}}},
        },
        "#/$defs/T",
        "contains itself",
    ),
]


@pytest.mark.parametrize(("schema", "pointer", "reason"), BAD_SCHEMAS)
def test_unmappable_schema_names_channel_and_pointer(
    schema: dict[str, Any], pointer: str, reason: str
) -> None:
    channel = ProtoChannel("sms", "Sms", {"type": "object", **schema})
    with pytest.raises(ProtoMappingError) as caught:
        render_proto([channel])
    assert caught.value.channel == "sms"
    assert caught.value.pointer == pointer
    assert reason in str(caught.value)
    assert str(caught.value).startswith(f"channel 'sms': payload schema at {pointer}: ")


def test_names_are_made_safe_for_proto_and_python() -> None:
    schema = {
        "type": "object",
        "properties": {
            "from": {"type": "string"},
            "sendAt": {"type": "string"},
            "x-trace": {"type": "string"},
            "class": {"type": "object", "properties": {"a": {"type": "string"}}},
            "state": {"enum": ["on", "off", None]},
        },
        "required": ["from", "state"],
    }
    text = render_proto([ProtoChannel("sms", "Sms", schema)])
    assert "\n  // required\n  string from_ = 1;\n" in text  # protoc's JSON name: "from"
    assert "\n  optional string send_at = 2;\n" in text
    assert '\n  optional string x_trace = 3 [json_name = "x-trace"];\n' in text
    assert "\n  SmsPayload.Class class_ = 4;\n" in text
    assert "\n  optional SmsPayload.State state = 5;\n" in text  # nullable: explicit presence
    compile_proto(text, "generated")


def test_colliding_property_names_are_an_error() -> None:
    schema = {"type": "object", "properties": {"sendAt": {"type": "string"}, "send_at": {}}}
    with pytest.raises(ProtoMappingError, match="both map to field 'send_at'"):
        render_proto([ProtoChannel("sms", "Sms", schema)])


def test_compile_returns_the_four_files_deterministically() -> None:
    text = render_proto(sample.sample_channels())
    first = compile_proto(text, "generated")
    assert sorted(first) == [
        "channels/v1/channels_pb2.py",
        "channels/v1/channels_pb2.pyi",
        "channels/v1/channels_pb2_grpc.py",
        "channels/v1/channels_pb2_grpc.pyi",
    ]
    grpc_module = first["channels/v1/channels_pb2_grpc.py"]
    assert "from generated.proto.channels.v1 import channels_pb2" in grpc_module
    assert compile_proto(text, "generated") == first
    nested = compile_proto(text, "acme.jobs.generated", "acme.billing.v2")
    assert (
        "from acme.jobs.generated.proto.acme.billing.v2 import channels_pb2"
        in (nested["acme/billing/v2/channels_pb2_grpc.py"])
    )


def test_a_proto_package_part_that_is_a_python_keyword_is_refused() -> None:
    """Each part of the proto package is a folder, and a Python package, of the stubs."""
    text = render_proto(sample.sample_channels())
    with pytest.raises(ProtocError, match=r"invalid proto package name 'acme\.class\.v1'"):
        compile_proto(text, "generated", "acme.class.v1")


def test_compile_error_carries_protoc_stderr() -> None:
    with pytest.raises(ProtocError) as caught:
        compile_proto('syntax = "proto3";\npackage x;\nmessage A { strin b = 1; }\n', "generated")
    assert "channels.proto:3" in caught.value.stderr
    assert '"strin" is not defined' in str(caught.value)


def test_servicer_module_is_formatted() -> None:
    ruff = Path(sys.executable).parent / "ruff"
    if not ruff.is_file():
        pytest.skip("ruff is not installed beside the interpreter")
    source = render_grpc_service(sample.sample_channels(), "generated")
    result = subprocess.run(
        [str(ruff), "format", "--diff", "--stdin-filename", "grpc_service.py", "-"],
        input=source,
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.timeout(300)
def test_generated_package_passes_mypy_strict(tmp_path: Path) -> None:
    mypy = Path(sys.executable).parent / "mypy"
    if shutil.which(str(mypy)) is None:
        pytest.skip("mypy is not installed beside the interpreter")
    project = Path(__file__).resolve().parents[2]
    sample.build_package(tmp_path, "ckgrpc_typed")
    result = subprocess.run(
        [
            str(mypy),
            "--strict",
            "--config-file",
            str(project / "pyproject.toml"),
            "--cache-dir",
            str(tmp_path / ".mypy_cache"),
            "ckgrpc_typed/proto",
            "ckgrpc_typed/grpc_service.py",
        ],
        cwd=tmp_path,
        env={**os.environ, "MYPYPATH": str(project)},
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
