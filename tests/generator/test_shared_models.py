"""A schema file that several channels `$ref` is generated once, in models/shared/."""

from __future__ import annotations

import json
from pathlib import Path

from tests.conftest import run_python
from tests.generator.conftest import CHANNELS_YAML, OUT, ProjectFactory, run_generate

RECEIPT = {
    "type": "object",
    "additionalProperties": False,
    "required": ["number"],
    "properties": {
        "number": {"type": "string", "minLength": 1},
        "lines": {"type": "array", "items": {"$ref": "#/$defs/Line"}},
    },
    "$defs": {
        "Line": {
            "type": "object",
            "required": ["text"],
            "properties": {"text": {"type": "string"}},
        }
    },
}

SHARED_YAML = (
    CHANNELS_YAML.replace(
        """    result:
      type: object
      required: [confirmation]
      properties:
        confirmation: {type: string}
""",
        "    result: {$ref: schema/receipt.json}\n",
    )
    + "    result: {$ref: schema/receipt.json}\n"
)

HANDLERS = """\
from generated_shop.models.invoices import InvoicesPayload, InvoicesResult
from generated_shop.models.orders import OrdersPayload, OrdersResult


async def confirm_order(payload: OrdersPayload) -> OrdersResult:
    return OrdersResult(number=payload.order_id.hex)


def send_invoice(payload: InvoicesPayload) -> InvoicesResult:
    return InvoicesResult(number=str(payload.invoice_id))
"""


def shared_project(make_project: ProjectFactory) -> Path:
    assert "confirmation: {type: string}" not in SHARED_YAML
    project = make_project(channels_yaml=SHARED_YAML, handlers=HANDLERS)
    (project / "schema" / "receipt.json").write_text(json.dumps(RECEIPT, indent=2))
    completed = run_generate(project)
    assert completed.returncode == 0, completed.stderr
    return project


def test_a_shared_schema_is_one_module_and_one_class(make_project: ProjectFactory) -> None:
    project = shared_project(make_project)
    out = project / OUT
    assert (out / "models" / "shared" / "receipt.py").is_file()
    assert not (out / "models" / "orders" / "result.py").exists()
    assert not (out / "models" / "invoices" / "result.py").exists()
    shared = (out / "models" / "shared" / "receipt.py").read_text()
    assert "class Receipt(Payload):" in shared
    assert "the invoices and orders results" in shared
    orders_init = (out / "models" / "orders" / "__init__.py").read_text()
    assert f"from {OUT}.models.shared.receipt import Receipt as OrdersResult" in orders_init
    script = (
        f"from {OUT}.models.invoices import InvoicesResult, Line\n"
        f"from {OUT}.models.orders import OrdersResult, Receipt\n"
        f"from {OUT}.registry import CHANNELS_BY_NAME\n"
        "assert OrdersResult is InvoicesResult is Receipt\n"
        "assert CHANNELS_BY_NAME['orders'].result_model is Receipt\n"
        "print(OrdersResult(number='1', lines=[Line(text='x')]).model_dump_json())\n"
    )
    completed = run_python(script, project)
    assert completed.returncode == 0, completed.stderr
    assert json.loads(completed.stdout) == {"number": "1", "lines": [{"text": "x"}]}
    assert run_generate(project, "--check").returncode == 0


def test_a_schema_used_once_stays_in_its_channel(make_project: ProjectFactory) -> None:
    once = CHANNELS_YAML + "    result: {$ref: schema/receipt.json}\n"  # invoices only
    project = make_project(channels_yaml=once)
    (project / "schema" / "receipt.json").write_text(json.dumps(RECEIPT, indent=2))
    completed = run_generate(project)
    assert completed.returncode == 0, completed.stderr
    out = project / OUT
    assert not (out / "models" / "shared").exists()
    assert (out / "models" / "invoices" / "result.py").is_file()


def test_shared_is_a_reserved_channel_name(make_project: ProjectFactory) -> None:
    project = make_project(channels_yaml=CHANNELS_YAML.replace("  invoices:", "  shared:"))
    completed = run_generate(project)
    assert completed.returncode != 0
    assert "channel name 'shared' is reserved" in completed.stderr
