"""A small project of its own, written to a temp folder: channels.yaml, schemas, handlers."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from collections.abc import Callable
from pathlib import Path

import pytest

CHANNELS_YAML = """\
version: 1
defaults:
  retry: {attempts: 3, backoff: {type: fixed, delay: 250ms}}
channels:
  orders:
    description: Order confirmations.
    handler: shop.handlers:confirm_order
    concurrency: 4
    limiter: {max: 50, duration: 1s, key: customer_id}
    stalled: {interval: 10s, max_count: 2}
    payload: {$ref: schema/order.json}
    result:
      type: object
      required: [confirmation]
      properties:
        confirmation: {type: string}
  invoices:
    handler: shop.handlers:send_invoice
    payload:
      type: object
      required: [invoice_id]
      properties:
        invoice_id: {type: integer, minimum: 1}
        note: {type: string}
"""

ORDER_SCHEMA = {
    "$schema": "https://json-schema.org/draft/2020-12/schema",
    "type": "object",
    "additionalProperties": False,
    "required": ["order_id", "customer_id", "items"],
    "properties": {
        "order_id": {"type": "string", "format": "uuid"},
        "customer_id": {"type": "string", "minLength": 1},
        "email": {"type": "string", "format": "email"},
        "items": {"type": "array", "minItems": 1, "items": {"$ref": "common.json#/$defs/Item"}},
        "placed_at": {"type": "string", "format": "date-time"},
        "gift_note": {"type": ["string", "null"], "maxLength": 200},
        "priority": {"enum": ["normal", "express"], "default": "normal"},
    },
}

COMMON_SCHEMA = {
    "$defs": {
        "Item": {
            "type": "object",
            "required": ["sku", "quantity"],
            "properties": {
                "sku": {"type": "string", "pattern": "^[A-Z0-9-]+$"},
                "quantity": {"type": "integer", "minimum": 1, "maximum": 100},
                "price": {"$ref": "#/$defs/Money"},
            },
        },
        "Money": {
            "type": "object",
            "required": ["amount", "currency"],
            "properties": {
                "amount": {"type": "number", "exclusiveMinimum": 0},
                "currency": {"type": "string", "pattern": "^[A-Z]{3}$"},
            },
        },
    }
}

HANDLERS = """\
from generated_shop.models.invoices import InvoicesPayload
from generated_shop.models.orders import OrdersPayload, OrdersResult
from runtime import JobContext


async def confirm_order(payload: OrdersPayload, context: JobContext) -> OrdersResult:
    return OrdersResult(confirmation=f"{payload.order_id}:{context.attempt}")


def send_invoice(payload: InvoicesPayload) -> None:
    print(payload.invoice_id)
"""

ProjectFactory = Callable[..., Path]

OUT = "generated_shop"


def run_generate(project: Path, *extra: str) -> subprocess.CompletedProcess[str]:
    """`runtime generate --out generated_shop` in `project`, as its user would run it."""
    return subprocess.run(
        [sys.executable, "-m", "runtime", "generate", "--out", OUT, *extra],
        cwd=project,
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
    )


def write_project(
    folder: Path, channels_yaml: str = CHANNELS_YAML, handlers: str = HANDLERS
) -> Path:
    (folder / "schema").mkdir(exist_ok=True)
    (folder / "schema" / "order.json").write_text(json.dumps(ORDER_SCHEMA, indent=2))
    (folder / "schema" / "common.json").write_text(json.dumps(COMMON_SCHEMA, indent=2))
    (folder / "shop").mkdir(exist_ok=True)
    (folder / "shop" / "__init__.py").write_text("")
    (folder / "shop" / "handlers.py").write_text(textwrap.dedent(handlers))
    (folder / "channels.yaml").write_text(channels_yaml)
    return folder


@pytest.fixture
def make_project(tmp_path: Path) -> ProjectFactory:
    """Write the project; keyword arguments replace channels.yaml or the handlers' source."""

    def make(channels_yaml: str = CHANNELS_YAML, handlers: str = HANDLERS) -> Path:
        return write_project(tmp_path, channels_yaml, handlers)

    return make
