"""`runtime generate --check-compat`: every rule with a pair of configs, old and new."""

from __future__ import annotations

import copy
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from generator.compat import check_compat
from generator.config import load_config
from generator.lock import lock_from_proto, lock_path, render_lock
from generator.proto import build_proto_file
from generator.render import proto_channels
from generator.schemas import load_schemas

HANDLER = """\
def handle(payload: object) -> None:
    print(payload)
"""

PAYLOAD: dict[str, Any] = {
    "type": "object",
    "additionalProperties": False,
    "required": ["to", "body"],
    "properties": {
        "to": {"type": "string", "pattern": "^\\\\+[1-9][0-9]{6,14}$"},
        "body": {"type": "string", "minLength": 1, "maxLength": 160},
        "sender_id": {"type": "string"},
        "priority": {"enum": ["low", "normal", "high"]},
        "retries": {"type": "integer", "minimum": 0, "maximum": 10},
        "tags": {"type": "array", "items": {"type": "string"}, "maxItems": 5},
    },
}

RESULT: dict[str, Any] = {
    "type": "object",
    "required": ["provider_id", "status"],
    "properties": {
        "provider_id": {"type": "string"},
        "status": {"enum": ["sent", "queued"]},
        "cost": {"type": "integer", "maximum": 100},
    },
}


def write(
    folder: Path,
    payload: dict[str, Any],
    result: dict[str, Any] | None = RESULT,
    *,
    extra_channel: bool = True,
    lock: bool = True,
) -> Path:
    """A project with channel `sms` (payload in schema/sms.json) and, optionally, `push`."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "app").mkdir(exist_ok=True)
    (folder / "app" / "__init__.py").write_text("")
    (folder / "app" / "handlers.py").write_text(HANDLER)
    (folder / "schema").mkdir(exist_ok=True)
    (folder / "schema" / "sms.json").write_text(json.dumps(payload, indent=2) + "\n")
    lines = ["version: 1", "channels:", "  sms:", "    handler: app.handlers:handle"]
    lines.append("    payload: {$ref: schema/sms.json}")
    if result is not None:
        lines.append(f"    result: {json.dumps(result)}")
    if extra_channel:
        lines += [
            "  push:",
            "    handler: app.handlers:handle",
            "    payload: {type: object, properties: {token: {type: string}}}",
        ]
    config = folder / "channels.yaml"
    config.write_text("\n".join(lines) + "\n")
    if lock:
        write_lock(config)
    return config


def write_lock(config_path: Path) -> None:
    """What `runtime generate` would leave beside channels.yaml (the lock only)."""
    from generator.lock import read_lock

    config = load_config(config_path)
    schemas = load_schemas(config)
    previous = read_lock(lock_path(config_path))
    proto = build_proto_file(proto_channels(config, schemas, previous))
    lock_path(config_path).write_text(render_lock(lock_from_proto(proto), config_path.name))


def changed(**edits: Any) -> dict[str, Any]:
    payload = copy.deepcopy(PAYLOAD)
    for name, value in edits.items():
        if value is None:
            del payload["properties"][name]
        else:
            payload["properties"][name] = value
    return payload


def pair(
    tmp_path: Path,
    new_payload: dict[str, Any],
    new_result: dict[str, Any] | None = RESULT,
    **options: Any,
) -> list[str]:
    """Breaking changes from the base project to one with `new_payload`/`new_result`."""
    old = write(tmp_path / "old", PAYLOAD)
    new_folder = tmp_path / "new"
    write(new_folder, PAYLOAD)  # the new version starts from the old lock, as in real life
    new = write(new_folder, new_payload, new_result, **options)
    return [str(change) for change in check_compat(new, str(old))]


def test_identical_versions_are_compatible(tmp_path: Path) -> None:
    assert pair(tmp_path, PAYLOAD) == []


@pytest.mark.parametrize(
    "payload",
    [
        changed(note={"type": "string"}),  # a new optional property
        changed(body={"type": "string", "minLength": 1, "maxLength": 320}),  # wider
        changed(retries={"type": "integer", "minimum": 0}),  # a bound dropped
        changed(priority={"enum": ["low", "normal", "high", "urgent"]}),  # a new value
        changed(sender_id={"type": ["string", "null"]}),  # now nullable
    ],
    ids=["new-optional", "wider-max", "dropped-max", "new-enum-value", "null"],
)
def test_additive_changes_pass(tmp_path: Path, payload: dict[str, Any]) -> None:
    assert pair(tmp_path, payload) == []


def test_integer_to_number_accepts_more_json_but_changes_the_proto_type(tmp_path: Path) -> None:
    found = pair(tmp_path, changed(retries={"type": "number", "minimum": 0, "maximum": 10}))
    assert found == [
        "channels.lock.yaml:20: proto SmsPayload.retries: proto type changed: int64 → double"
    ]


def test_a_new_channel_and_a_new_result_field_pass(tmp_path: Path) -> None:
    result = copy.deepcopy(RESULT)
    result["properties"]["segments"] = {"type": "integer"}
    old = write(tmp_path / "old", PAYLOAD, extra_channel=False)
    new = write(tmp_path / "new", PAYLOAD, result)
    assert check_compat(new, str(old)) == []


@pytest.mark.parametrize(
    ("payload", "expected"),
    [
        (changed(sender_id=None), "payload#/properties/sender_id: property removed"),
        (
            changed(priority={"enum": ["normal", "high"]}),
            "payload#/properties/priority: enum value 'low' removed",
        ),
        (
            {**changed(note={"type": "string"}), "required": ["to", "body", "note"]},
            "payload#/properties/note: new required property",
        ),
        (
            {**PAYLOAD, "required": ["to", "body", "sender_id"]},
            "payload#/properties/sender_id: optional property made required",
        ),
        (
            changed(retries={"type": "string"}),
            "payload#/properties/retries: type narrowed: integer → string",
        ),
        (
            changed(body={"type": "string", "minLength": 1, "maxLength": 140}),
            "payload#/properties/body: maxLength narrowed: 160 → 140",
        ),
        (
            changed(body={"type": "string", "minLength": 2, "maxLength": 160}),
            "payload#/properties/body: minLength narrowed: 1 → 2",
        ),
        (
            changed(retries={"type": "integer", "minimum": 0, "maximum": 5}),
            "payload#/properties/retries: maximum narrowed: 10 → 5",
        ),
        (
            changed(retries={"type": "integer", "minimum": 1, "maximum": 10}),
            "payload#/properties/retries: minimum narrowed: 0 → 1",
        ),
        (
            changed(sender_id={"type": "string", "maxLength": 11}),
            "payload#/properties/sender_id: maxLength narrowed: none → 11",
        ),
        (
            changed(to={"type": "string", "pattern": "^\\+1[0-9]{10}$"}),
            "payload#/properties/to: pattern changed",
        ),
        (
            changed(sender_id={"type": "string", "format": "email"}),
            "payload#/properties/sender_id: format changed: none → 'email'",
        ),
        (
            changed(tags={"type": "array", "items": {"type": "string"}, "maxItems": 3}),
            "payload#/properties/tags: maxItems narrowed: 5 → 3",
        ),
        (
            changed(tags={"type": "array", "items": {"type": "string", "maxLength": 8}}),
            "payload#/properties/tags/items: maxLength narrowed: none → 8",
        ),
    ],
    ids=[
        "removed-field",
        "removed-enum-value",
        "new-required",
        "made-required",
        "type",
        "maxLength",
        "minLength",
        "maximum",
        "minimum",
        "new-bound",
        "pattern",
        "format",
        "maxItems",
        "items",
    ],
)
def test_payload_changes_that_break_producers(
    tmp_path: Path, payload: dict[str, Any], expected: str
) -> None:
    found = pair(tmp_path, payload)
    assert any(expected in line for line in found), found


def test_a_finding_names_the_schema_file_and_line(tmp_path: Path) -> None:
    found = pair(tmp_path, changed(body={"type": "string", "minLength": 1, "maxLength": 140}))
    text = json.dumps(changed(body={"type": "string", "minLength": 1, "maxLength": 140}), indent=2)
    line = text.splitlines().index('    "body": {') + 1
    assert found == [
        f"schema/sms.json:{line}: channels.sms.payload#/properties/body: "
        "maxLength narrowed: 160 → 140"
    ]


def test_a_removed_field_is_located_in_the_old_version(tmp_path: Path) -> None:
    found = pair(tmp_path, changed(sender_id=None))
    line = json.dumps(PAYLOAD, indent=2).splitlines().index('    "sender_id": {') + 1
    assert found[0].startswith(f"{tmp_path / 'old' / 'channels'}:schema/sms.json:{line}: ")


def test_a_removed_channel_breaks(tmp_path: Path) -> None:
    old = write(tmp_path / "old", PAYLOAD)
    new = write(tmp_path / "new", PAYLOAD, extra_channel=False)
    found = [str(c) for c in check_compat(new, str(old))]
    assert found == [
        f"{tmp_path / 'old' / 'channels'}:channels.yaml:7: channels.push: "
        "channel removed: its producers fail"
    ]


@pytest.mark.parametrize(
    ("result", "expected"),
    [
        (None, "channels.sms.result: result schema removed"),
        (
            {**RESULT, "required": ["provider_id"]},
            "result#/properties/status: required property made optional",
        ),
        (
            {**RESULT, "properties": {**RESULT["properties"], "provider_id": None}},
            "",
        ),
        (
            {
                **RESULT,
                "properties": {**RESULT["properties"], "status": {"enum": ["sent", "queued", "x"]}},
            },
            "result#/properties/status: new enum value 'x'",
        ),
        (
            {**RESULT, "properties": {**RESULT["properties"], "cost": {"type": "number"}}},
            "result#/properties/cost: type widened: integer → number",
        ),
        (
            {**RESULT, "properties": {**RESULT["properties"], "cost": {"type": "integer"}}},
            "result#/properties/cost: maximum widened: 100 → none",
        ),
    ],
    ids=["removed", "made-optional", "removed-required", "new-enum-value", "type", "bound"],
)
def test_result_changes_that_break_readers(
    tmp_path: Path, result: dict[str, Any] | None, expected: str
) -> None:
    if result is not None and result["properties"].get("provider_id", {}) is None:
        properties = {k: v for k, v in result["properties"].items() if k != "provider_id"}
        result = {**result, "properties": properties, "required": ["status"]}
        expected = "result#/properties/provider_id: required property removed"
    found = pair(tmp_path, PAYLOAD, result)
    assert any(expected in line for line in found), found


def test_a_changed_proto_number_breaks_the_wire(tmp_path: Path) -> None:
    old = write(tmp_path / "old", PAYLOAD)
    new = write(tmp_path / "new", PAYLOAD)
    lock = lock_path(new)
    lock.write_text(lock.read_text().replace("sender_id: 3", "sender_id: 9"))
    found = [str(c) for c in check_compat(new, str(old))]
    line = lock.read_text().splitlines().index("          sender_id: 9") + 1
    assert found == [
        f"channels.lock.yaml:{line}: proto SmsPayload.sender_id: proto number changed: 3 → 9 "
        "(clients built from the old .proto write into the wrong field)"
    ]


def test_without_a_lock_a_removal_renumbers_and_the_check_says_so(tmp_path: Path) -> None:
    old = write(tmp_path / "old", PAYLOAD, lock=False)
    new = write(tmp_path / "new", changed(sender_id=None), lock=False)
    found = [str(c) for c in check_compat(new, str(old))]
    assert any("proto SmsPayload.priority: proto number changed: 4 → 3" in f for f in found)


def test_a_git_ref_and_the_cli(tmp_path: Path) -> None:
    def git(*args: str) -> None:
        subprocess.run(["git", *args], cwd=tmp_path, check=True, capture_output=True)

    config = write(tmp_path, PAYLOAD)
    git("init", "-q")
    git("-c", "user.name=t", "-c", "user.email=t@t", "add", ".")
    git("-c", "user.name=t", "-c", "user.email=t@t", "commit", "-q", "-m", "first")
    write(tmp_path, changed(sender_id=None))

    def run(*args: str) -> subprocess.CompletedProcess[str]:
        command = [sys.executable, "-m", "runtime", "generate", "--config", str(config), *args]
        return subprocess.run(command, cwd=tmp_path, capture_output=True, text=True, check=False)

    broken = run("--check-compat", "HEAD")
    assert broken.returncode == 1, broken.stderr
    assert "1 breaking change(s) since HEAD:" in broken.stderr
    assert "HEAD:schema/sms.json:" in broken.stderr
    assert "property removed: producers sending it fail" in broken.stderr
    git("checkout", "-q", "--", "channels.lock.yaml")  # undo the removal, lock included
    write(tmp_path, changed(note={"type": "string"}))
    assert run("--check-compat", "HEAD").returncode == 0
    unknown = run("--check-compat", "no-such-ref")
    assert unknown.returncode == 2
    assert "not a git ref or a file: no-such-ref" in unknown.stderr
