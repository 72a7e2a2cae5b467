"""Each kind of bad channels.yaml: its place, key path and a fix; exit 2, nothing written."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from runtime.cli.main import main
from tests.generator.conftest import CHANNELS_YAML, ProjectFactory


def run_generate(project: Path, capsys: pytest.CaptureFixture[str]) -> tuple[int, str]:
    code = main(
        [
            "generate",
            "--config",
            str(project / "channels.yaml"),
            "--out",
            str(project / "generated_shop"),
        ]
    )
    return code, capsys.readouterr().err


def replace(old: str, new: str) -> str:
    assert old in CHANNELS_YAML
    return CHANNELS_YAML.replace(old, new, 1)


BAD_CONFIGS = {
    "yaml syntax": (
        replace("concurrency: 4", "concurrency: [4"),
        r"channels.yaml:\d+:\d+: YAML syntax error",
    ),
    "unknown key with suggestion": (
        replace("concurrency: 4", "concurency: 4"),
        r"channels.yaml:8:5: channels.orders.concurency: unknown key 'concurency'; "
        r"did you mean 'concurrency'\?",
    ),
    "wrong type": (
        replace("concurrency: 4", "concurrency: four"),
        r"channels.yaml:8:18: channels.orders.concurrency: "
        r"expected an integer, got the string 'four'",
    ),
    "bad duration": (
        replace("interval: 10s", "interval: 10 seconds"),
        r"channels.yaml:10:\d+: channels.orders.stalled.interval: bad duration '10 seconds'",
    ),
    "zero concurrency": (
        replace("concurrency: 4", "concurrency: 0"),
        r"channels.orders.concurrency: concurrency must be at least 1, got 0",
    ),
    "negative concurrency": (
        replace("concurrency: 4", "concurrency: -2"),
        r"channels.orders.concurrency: concurrency must be at least 1, got -2",
    ),
    "name not an identifier": (
        replace("  invoices:", "  Invoices-2024:"),
        r"channels.yaml:17:3: channels.Invoices-2024: channel name 'Invoices-2024' is not valid",
    ),
    "python keyword": (
        replace("  invoices:", "  class:"),
        r"channels.yaml:17:3: channels.class: channel name 'class' is reserved",
    ),
    "proto keyword": (
        replace("  invoices:", "  message:"),
        r"channels.message: channel name 'message' is reserved",
    ),
    "duplicate channel": (
        CHANNELS_YAML
        + "  orders:\n    handler: shop.handlers:confirm_order\n    payload: {type: object}\n",
        r"channels.yaml:25:3: channels.orders: duplicate key 'orders' \(first defined on line 5\)",
    ),
    "missing schema file": (
        replace("schema/order.json", "schema/orders.json"),
        r"channels.yaml:11:\d+: channels.orders.payload: schema file not found: schema/orders.json",
    ),
    "invalid json schema": (
        replace("invoice_id: {type: integer, minimum: 1}", "invoice_id: {type: integr}"),
        r"channels.invoices.payload: not a valid JSON Schema at '#/properties/invoice_id/type'",
    ),
    "unsupported keyword": (
        replace("note: {type: string}", "note: {anyOf: [{type: string}, {type: integer}]}"),
        r"channels.invoices.payload: keyword 'anyOf' at '#/properties/note' is not supported",
    ),
    "malformed handler": (
        replace("shop.handlers:send_invoice", "shop.handlers.send_invoice"),
        r"channels.yaml:18:\d+: channels.invoices.handler: handler 'shop.handlers.send_invoice' "
        r"is not of the form 'package.module:function'",
    ),
    "handler module missing": (
        replace("shop.handlers:send_invoice", "shop.billing:send_invoice"),
        r"channels.invoices.handler: handler module 'shop.billing' not found",
    ),
    "handler function missing": (
        replace("shop.handlers:send_invoice", "shop.handlers:send_bill"),
        r"channels.invoices.handler: module 'shop.handlers' .* defines no function 'send_bill'",
    ),
    "limiter key not in payload": (
        replace("key: customer_id", "key: tenant"),
        r"channels.orders.limiter.key: limiter key 'tenant' is not a top-level property",
    ),
    "not expressible in grpc": (
        replace("note: {type: string}", "grid: {type: array, items: {type: array, items: {}}}"),
        r"channels.yaml:20:7: channels.invoices.payload: cannot be expressed in gRPC: "
        r"at #/properties/grid",
    ),
    "missing version": (
        CHANNELS_YAML.replace("version: 1\n", ""),
        r"channels.yaml:1:1: missing required key: 'version'",
    ),
    # Nesting is bounded before anything recurses on it (generator/yaml_source.py): a
    # clear error where it happens, never a RecursionError.
    "nested too deep": (
        replace("concurrency: 4", "concurrency: " + "[" * 5000 + "]" * 5000),
        r"channels.yaml:8:79: nested deeper than 64 levels",
    ),
    "payload schema nested too deep": (
        replace(
            "note: {type: string}",
            "note: " + "{type: object, properties: {a: " * 40 + "{}" + "}}" * 40,
        ),
        r"channels.yaml:24:\d+: nested deeper than 64 levels",
    ),
    "alias inside its own anchor": (
        replace("concurrency: 4", "concurrency: &loop [*loop]"),
        r"channels.yaml:8:\d+: channels.orders.concurrency\[0\]\[0\]\[0\] ...: nested deeper "
        r"than 64 levels once aliases are expanded \(an alias inside its own anchor",
    ),
    "aliases that expand too far": (
        replace(
            "concurrency: 4",
            "concurrency: [&a [x, x, x, x, x, x, x, x, x, x], "
            + ", ".join(
                f"&{name} [{', '.join([f'*{previous}'] * 10)}]"
                for previous, name in zip("abcd", "bcde", strict=True)
            )
            + "]",
        ),
        r"channels.yaml:8:\d+: channels.orders.concurrency.*: more than 100000 values once "
        r"aliases are expanded",
    ),
}


@pytest.mark.parametrize("case", sorted(BAD_CONFIGS))
def test_bad_config_is_reported_and_nothing_is_written(
    case: str, make_project: ProjectFactory, capsys: pytest.CaptureFixture[str]
) -> None:
    text, expected = BAD_CONFIGS[case]
    project = make_project(channels_yaml=text)
    code, err = run_generate(project, capsys)
    assert code == 2, err
    import re

    assert re.search(expected, err), f"expected /{expected}/ in:\n{err}"
    assert "nothing was written" in err
    assert not (project / "generated_shop").exists()


@pytest.mark.parametrize(
    ("depth", "expected"),
    [(100, "nested deeper than 64 levels"), (100_000, "nested too deeply to read")],
)
def test_a_schema_file_nested_too_deep_is_a_problem_of_its_own(
    depth: int, expected: str, make_project: ProjectFactory, capsys: pytest.CaptureFixture[str]
) -> None:
    """A `$ref`'d schema file is bounded as channels.yaml is: read by json (its decoder
    gives up past Python's recursion limit) or by the depth-checking YAML loader."""
    project = make_project(channels_yaml=replace("schema/order.json", "schema/deep.json"))
    (project / "schema" / "deep.json").write_text(
        '{"type": "object", "default": ' + "[" * depth + "]" * depth + "}"
    )
    code, err = run_generate(project, capsys)
    assert code == 2, err
    assert f"channels.orders.payload: schema/deep.json: {expected}" in err, err


def test_bad_config_leaves_existing_output_untouched(
    make_project: ProjectFactory, capsys: pytest.CaptureFixture[str]
) -> None:
    project = make_project()
    assert run_generate(project, capsys)[0] == 0
    before = {p: p.read_bytes() for p in (project / "generated_shop").rglob("*") if p.is_file()}
    (project / "channels.yaml").write_text(replace("concurrency: 4", "concurrency: 0"))
    assert run_generate(project, capsys)[0] == 2
    after = {p: p.read_bytes() for p in (project / "generated_shop").rglob("*") if p.is_file()}
    assert after == before


def test_every_problem_is_listed_at_once(
    make_project: ProjectFactory, capsys: pytest.CaptureFixture[str]
) -> None:
    text = replace("concurrency: 4", "concurrency: 0").replace("max_count: 2", "max_cnt: 2")
    code, err = run_generate(make_project(channels_yaml=text), capsys)
    assert code == 2
    assert "concurrency must be at least 1" in err
    assert "unknown key 'max_cnt'; did you mean 'max_count'?" in err


def test_command_line_exits_2(make_project: ProjectFactory) -> None:
    project = make_project(channels_yaml=replace("concurrency: 4", "concurrency: 0"))
    completed = subprocess.run(
        [sys.executable, "-m", "runtime", "generate", "--out", "generated_shop"],
        cwd=project,
        capture_output=True,
        text=True,
        check=False,
    )
    assert completed.returncode == 2
    assert "channels.yaml:8:18: channels.orders.concurrency" in completed.stderr
    assert not (project / "generated_shop").exists()
