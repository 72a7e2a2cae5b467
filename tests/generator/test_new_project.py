"""A project other than ours: its own channels.yaml, schemas and handlers, generated,
imported, validated, and type-checked with mypy --strict."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from pydantic import BaseModel, ValidationError

from tests.conftest import ROOT
from tests.generator.conftest import CHANNELS_YAML, HANDLERS, OUT, ProjectFactory, run_generate


@pytest.fixture
def generated_project(make_project: ProjectFactory) -> Iterator[Path]:
    project = make_project()
    completed = run_generate(project)
    assert completed.returncode == 0, completed.stderr
    sys.path.insert(0, str(project))
    try:
        yield project
    finally:
        sys.path.remove(str(project))
        for name in [n for n in sys.modules if n.split(".")[0] in (OUT, "shop")]:
            del sys.modules[name]


def model(name: str) -> type[BaseModel]:
    import importlib

    channel, _, cls = name.partition(".")
    found: type[BaseModel] = getattr(importlib.import_module(f"{OUT}.models.{channel}"), cls)
    return found


GOOD_ORDER: dict[str, Any] = {
    "order_id": "6f1c2a4e-8a55-4a57-9b5e-0c3c1b1f2d3e",
    "customer_id": "c-42",
    "email": "ada@example.com",
    "items": [{"sku": "BOOK-1", "quantity": 2, "price": {"amount": 9.5, "currency": "EUR"}}],
    "placed_at": "2026-11-29T10:00:00+01:00",
    "gift_note": None,
}

BAD_ORDERS: dict[str, tuple[dict[str, Any], str]] = {
    "missing required": ({"items": "drop"}, "items"),
    "uuid": ({"order_id": "not-a-uuid"}, "order_id"),
    "email": ({"email": "nobody"}, "email"),
    "nested pattern": ({"items": [{"sku": "book 1", "quantity": 1}]}, "items.0.sku"),
    "nested bound": ({"items": [{"sku": "B", "quantity": 101}]}, "items.0.quantity"),
    "exclusive minimum": (
        {"items": [{"sku": "B", "quantity": 1, "price": {"amount": 0, "currency": "EUR"}}]},
        "items.0.price.amount",
    ),
    "empty array": ({"items": []}, "items"),
    "enum": ({"priority": "overnight"}, "priority"),
    "naive date-time": ({"placed_at": "2026-11-29T10:00:00"}, "placed_at"),
    "extra property": ({"coupon": "X"}, "coupon"),
    "null for optional non-nullable": ({"email": None}, "email"),
    "string for integer": ({"items": [{"sku": "B", "quantity": "2"}]}, "items.0.quantity"),
    "too long": ({"gift_note": "x" * 201}, "gift_note"),
}


def test_good_payload_is_accepted(generated_project: Path) -> None:
    orders = model("orders.OrdersPayload")
    payload = orders.model_validate_json(json.dumps(GOOD_ORDER))
    assert payload.model_dump(mode="json", exclude_unset=True)["items"][0]["sku"] == "BOOK-1"
    assert payload.model_dump(mode="json")["priority"] == "normal"  # the schema's default


@pytest.mark.parametrize("case", sorted(BAD_ORDERS))
def test_bad_payload_names_the_field(generated_project: Path, case: str) -> None:
    change, field = BAD_ORDERS[case]
    data = {**GOOD_ORDER, **change}
    if change.get("items") == "drop":
        del data["items"]
    with pytest.raises(ValidationError) as caught:
        model("orders.OrdersPayload").model_validate_json(json.dumps(data))
    paths = [".".join(str(part) for part in error["loc"]) for error in caught.value.errors()]
    assert any(path == field or path.startswith(field + ".") for path in paths), paths


def test_nullable_field_accepts_null_and_extra_allowed_where_schema_allows(
    generated_project: Path,
) -> None:
    # gift_note is ["string", "null"]: null is fine. invoices has no additionalProperties: false.
    model("orders.OrdersPayload").model_validate_json(json.dumps({**GOOD_ORDER, "gift_note": None}))
    model("invoices.InvoicesPayload").model_validate_json('{"invoice_id": 1, "extra": true}')


def test_python_mode_matches_json_mode(generated_project: Path) -> None:
    invoices = model("invoices.InvoicesPayload")
    with pytest.raises(ValidationError):
        invoices(invoice_id=1, note=None)
    with pytest.raises(ValidationError):
        invoices.model_validate({"invoice_id": "1"})
    assert invoices(invoice_id=1).model_dump(exclude_unset=True) == {"invoice_id": 1}


def test_registry_carries_the_settings(generated_project: Path) -> None:
    import importlib

    registry = importlib.import_module(f"{OUT}.registry")
    orders = registry.CHANNELS_BY_NAME["orders"]
    assert orders.concurrency == 4
    assert (orders.limiter.max, orders.limiter.duration_ms, orders.limiter.key) == (
        50,
        1000,
        "customer_id",
    )
    assert (orders.stalled.interval_ms, orders.stalled.max_count) == (10_000, 2)
    assert orders.retry.attempts == 3  # from defaults
    assert (orders.retry.backoff.type, orders.retry.backoff.delay_ms) == ("fixed", 250)
    assert orders.result_model.__name__ == "OrdersResult"
    invoices = registry.CHANNELS_BY_NAME["invoices"]
    assert (invoices.concurrency, invoices.limiter, invoices.result_model) == (1, None, None)


async def test_processor_calls_sync_and_async_handlers(generated_project: Path) -> None:
    import importlib
    import logging

    from runtime import JobContext

    orders = importlib.import_module(f"{OUT}.processors.orders")
    payload = model("orders.OrdersPayload").model_validate_json(json.dumps(GOOD_ORDER))
    context = JobContext(job_id="j1", channel="orders", attempt=2, logger=logging.getLogger("t"))
    result = await orders.process(payload, context)
    assert result.confirmation == f"{GOOD_ORDER['order_id']}:2"
    invoices = importlib.import_module(f"{OUT}.processors.invoices")
    assert await invoices.process(model("invoices.InvoicesPayload")(invoice_id=7), context) is None


def mypy(project: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [
            sys.executable,
            "-m",
            "mypy",
            "--strict",
            "--no-incremental",
            "--cache-dir=/dev/null",
            OUT,
            "shop",
        ],
        cwd=project,
        capture_output=True,
        text=True,
        check=False,
        timeout=300,
        # Where runtime/ is, however the project was installed (editable installs use an
        # import hook that mypy cannot follow).
        env={**os.environ, "MYPYPATH": str(ROOT)},
    )


def test_mypy_strict_accepts_the_project_and_rejects_a_mistyped_handler(
    make_project: ProjectFactory,
) -> None:
    project = make_project()
    assert run_generate(project).returncode == 0
    checked = mypy(project)
    assert checked.returncode == 0, checked.stdout
    # A handler typed with another channel's payload is refused by `runtime generate`
    # itself (tests/generator/test_handler_checks.py); a wrong return type is mypy's.
    mistyped = HANDLERS.replace(
        "def send_invoice(payload: InvoicesPayload) -> None:",
        "def send_invoice(payload: InvoicesPayload) -> int:",
    )
    mistyped = mistyped.replace("    print(payload.invoice_id)", "    return payload.invoice_id")
    (project / "shop" / "handlers.py").write_text(mistyped)
    assert run_generate(project).returncode == 0
    rejected = mypy(project)
    assert rejected.returncode == 1, rejected.stdout
    assert f"{OUT}/processors/invoices.py" in rejected.stdout


RESOURCES = """\
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass


@dataclass
class Pools:
    size: int


@asynccontextmanager
async def lifespan() -> AsyncIterator[Pools]:
    yield Pools(size=3)
"""


def test_mypy_strict_checks_handlers_against_what_the_resources_factory_yields(
    make_project: ProjectFactory,
) -> None:
    typed = (
        HANDLERS.replace(
            "from runtime import JobContext",
            "from runtime import JobContext\nfrom shop.resources import Pools",
        )
        .replace(
            "context: JobContext) -> OrdersResult:", "context: JobContext[Pools]) -> OrdersResult:"
        )
        .replace(
            "{payload.order_id}:{context.attempt}", "{payload.order_id}:{context.resources.size}"
        )
    )
    project = make_project(
        channels_yaml=CHANNELS_YAML.replace(
            "version: 1\n", "version: 1\nresources: shop.resources:lifespan\n"
        ),
        handlers=typed,
    )
    (project / "shop" / "resources.py").write_text(RESOURCES)
    assert run_generate(project).returncode == 0
    checked = mypy(project)
    assert checked.returncode == 0, checked.stdout
    # The factory now yields something else than the handler declares.
    (project / "shop" / "resources.py").write_text(
        RESOURCES.replace("AsyncIterator[Pools]", "AsyncIterator[int]").replace(
            "yield Pools(size=3)", "yield 3"
        )
    )
    assert run_generate(project).returncode == 0
    rejected = mypy(project)
    assert rejected.returncode == 1, rejected.stdout
    assert f"{OUT}/processors/orders.py" in rejected.stdout
    assert '"JobContext[int]"; expected "JobContext[Pools]"' in rejected.stdout
