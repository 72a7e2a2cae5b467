"""The lock file: proto numbers survive removals, renames are declared, bad locks are refused."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from generator.errors import ConfigError
from generator.lock import Lock, lock_from_proto, parse_lock, render_lock
from generator.proto import ProtoChannel, build_proto_file, render_proto
from generator.protoc import compile_proto
from tests.generator.conftest import OUT, ProjectFactory, run_generate

SMS: dict[str, Any] = {
    "type": "object",
    "required": ["to", "body"],
    "properties": {
        "to": {"type": "string"},
        "sender_id": {"type": "string"},
        "body": {"type": "string"},
        "priority": {"enum": ["low", "normal", "high"]},
        "metadata": {"type": "object", "additionalProperties": {"type": "string"}},
    },
}


def without(schema: dict[str, Any], *names: str) -> dict[str, Any]:
    properties = {k: v for k, v in schema["properties"].items() if k not in names}
    return {**schema, "properties": properties}


def generation(schema: dict[str, Any], lock: Lock | None = None) -> tuple[str, Lock, str]:
    """One generation: (channels.proto, the lock it leaves, that lock's text)."""
    channel = ProtoChannel("sms", "Sms", schema, lock=(lock or Lock()).channels.get("sms"))
    after = lock_from_proto(build_proto_file([channel]))
    text = render_lock(after, "channels.yaml")
    return render_proto([channel]), parse_lock(text, "channels.lock.yaml"), text


def field_line(proto: str, name: str) -> str:
    return next(line.strip() for line in proto.splitlines() if f" {name} = " in line)


def test_removing_a_field_keeps_later_numbers_and_reserves_the_removed_one() -> None:
    _, lock, _ = generation(SMS)
    proto, lock, text = generation(without(SMS, "sender_id"), lock)
    assert field_line(proto, "body") == "string body = 3;"
    assert field_line(proto, "metadata") == "map<string, string> metadata = 5;"
    assert "reserved 2;" in proto
    assert 'reserved "sender_id";' in proto
    assert "        reserved:\n          2: sender_id\n" in text
    compile_proto(proto, "generated")  # protoc accepts the reserved statements


def test_a_new_field_takes_the_next_number_never_a_reserved_one() -> None:
    _, lock, _ = generation(SMS)
    _, lock, _ = generation(without(SMS, "metadata"), lock)  # 5 reserved
    grown = {**SMS, "properties": {"campaign": {"type": "string"}, **SMS["properties"]}}
    proto, _, _ = generation(without(grown, "metadata"), lock)
    assert field_line(proto, "campaign") == "optional string campaign = 6;"
    assert field_line(proto, "to") == "string to = 1;"


def test_a_removed_field_that_returns_gets_a_new_number() -> None:
    _, lock, _ = generation(SMS)
    _, lock, _ = generation(without(SMS, "sender_id"), lock)
    proto, lock, _ = generation(SMS, lock)
    assert field_line(proto, "sender_id").startswith("optional string sender_id = 6 ")
    assert "reserved 2;" in proto
    assert 'reserved "sender_id"' not in proto  # its name is live again, its number is not
    compile_proto(proto, "generated")


def test_enum_values_keep_their_numbers() -> None:
    _, lock, _ = generation(SMS)
    schema = dict(SMS)
    schema["properties"] = {**SMS["properties"], "priority": {"enum": ["normal", "high"]}}
    proto, _, text = generation(schema, lock)
    assert 'PRIORITY_NORMAL = 2; // "normal"' in proto
    assert 'PRIORITY_HIGH = 3; // "high"' in proto
    assert 'reserved "PRIORITY_LOW";' in proto
    assert "1: PRIORITY_LOW" in text
    compile_proto(proto, "generated")


def test_a_rename_declared_in_the_lock_keeps_the_number() -> None:
    _, _, text = generation(SMS)
    renamed_text = text.replace("sender_id: 2", "sender: 2")
    renamed = {
        **SMS,
        "properties": {
            ("sender" if k == "sender_id" else k): v for k, v in SMS["properties"].items()
        },
    }
    proto, _, after = generation(renamed, parse_lock(renamed_text, "channels.lock.yaml"))
    assert field_line(proto, "sender") == "optional string sender = 2;"
    assert "reserved" not in proto.split("service Jobs")[0]
    assert after == renamed_text


def test_the_lock_is_byte_identical_run_to_run() -> None:
    _, lock, first = generation(SMS)
    assert generation(SMS, lock)[2] == first


@pytest.mark.parametrize(
    ("edit", "message", "line"),
    [
        ("          body: 3\n", "          body: 2\n", "number 2 is used twice in Payload"),
        ("          body: 3\n", "          body: 0\n", "number 0 is out of range"),
        ("version: 1\n", "version: 7\n", "unsupported lock version"),
        ("    messages:\n", "    mesages:\n", "unknown key 'mesages'"),
    ],
)
def test_an_inconsistent_lock_is_a_config_error_naming_its_line(
    edit: str, message: str, line: str
) -> None:
    _, _, text = generation(SMS)
    broken = text.replace(edit, message, 1)
    with pytest.raises(ConfigError) as caught:
        parse_lock(broken, "channels.lock.yaml")
    problem = caught.value.problems[0]
    assert line in problem.message
    assert problem.file == "channels.lock.yaml"
    assert problem.line == broken.splitlines().index(message.rstrip("\n")) + 1


def test_a_reserved_number_reused_is_refused() -> None:
    _, lock, _ = generation(SMS)
    _, _, text = generation(without(SMS, "sender_id"), lock)
    reused = text.replace("          body: 3\n", "          body: 2\n")
    with pytest.raises(ConfigError, match="number 2 is used twice"):
        parse_lock(reused, "channels.lock.yaml")


def test_generate_writes_the_lock_and_check_fails_when_it_would_change(
    make_project: ProjectFactory,
) -> None:
    project = make_project()
    lock = project / "channels.lock.yaml"
    assert run_generate(project).returncode == 0
    assert "invoice_id: 1" in lock.read_text()
    assert run_generate(project, "--check").returncode == 0
    config = project / "channels.yaml"
    config.write_text(config.read_text().replace("        note: {type: string}\n", ""))
    checked = run_generate(project, "--check")
    assert checked.returncode == 1
    assert "stale: channels.lock.yaml" in checked.stderr
    assert run_generate(project).returncode == 0
    assert "reserved:\n          2: note" in lock.read_text()
    lock.unlink()
    checked = run_generate(project, "--check")
    assert checked.returncode == 1
    assert "missing: channels.lock.yaml" in checked.stderr


def test_generate_refuses_a_broken_lock_and_writes_nothing(make_project: ProjectFactory) -> None:
    project = make_project()
    assert run_generate(project).returncode == 0
    lock = project / "channels.lock.yaml"
    text = lock.read_text().replace("note: 2", "note: 1")
    lock.write_text(text)
    before = {p: p.read_bytes() for p in Path(project / OUT).rglob("*.py")}
    result = run_generate(project)
    assert result.returncode == 2
    line = text.splitlines().index("          note: 1") + 1
    assert f"channels.lock.yaml:{line}:17: channels.invoices.messages.Payload.fields.note" in (
        result.stderr
    )
    assert "nothing was written" in result.stderr
    assert lock.read_text() == text
    assert {p: p.read_bytes() for p in Path(project / OUT).rglob("*.py")} == before
