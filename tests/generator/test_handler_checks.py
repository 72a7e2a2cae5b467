"""What `runtime generate` reads from the handlers' and resources' source, without importing
it: a handler typed with another channel's payload, and a `resources:` factory it cannot
type the JobContext with, are problems placed where they are."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from runtime.cli.main import main
from tests.generator.conftest import CHANNELS_YAML, HANDLERS, ProjectFactory


def run_generate(project: Path, capsys: pytest.CaptureFixture[str]) -> tuple[int, str]:
    config, out = str(project / "channels.yaml"), str(project / "generated_shop")
    code = main(["generate", "--config", config, "--out", out])
    captured = capsys.readouterr()
    return code, captured.err + captured.out


WRONG_PAYLOAD = {
    "imported name": HANDLERS.replace(
        "def send_invoice(payload: InvoicesPayload)", "def send_invoice(payload: OrdersPayload)"
    ),
    "aliased import": HANDLERS.replace(
        "OrdersPayload, OrdersResult", "OrdersPayload, OrdersPayload as Bill, OrdersResult"
    ).replace("def send_invoice(payload: InvoicesPayload)", "def send_invoice(payload: Bill)"),
    "string annotation": HANDLERS.replace(
        "def send_invoice(payload: InvoicesPayload)", 'def send_invoice(payload: "OrdersPayload")'
    ),
    "module attribute": HANDLERS.replace(
        "from runtime import JobContext",
        "from runtime import JobContext\nfrom generated_shop.models import orders",
    ).replace(
        "def send_invoice(payload: InvoicesPayload)",
        "def send_invoice(payload: orders.OrdersPayload)",
    ),
}


@pytest.mark.parametrize("case", sorted(WRONG_PAYLOAD))
def test_a_handler_typed_with_another_channels_payload_is_refused(
    case: str, make_project: ProjectFactory, capsys: pytest.CaptureFixture[str]
) -> None:
    handlers = WRONG_PAYLOAD[case]
    project = make_project(handlers=handlers)
    code, err = run_generate(project, capsys)
    assert code == 2, err
    line = next(i for i, text in enumerate(handlers.splitlines(), 1) if "def send_invoice" in text)
    column = handlers.splitlines()[line - 1].index("payload") + 1
    expected = (
        rf"shop/handlers.py:{line}:{column}: channels.invoices.handler: handler "
        r"shop.handlers:send_invoice takes \w+ as its payload; the channel's payload is "
        r"InvoicesPayload"
    )
    assert re.search(expected, err), err
    assert not (project / "generated_shop").exists()


def test_an_unannotated_or_foreign_typed_payload_passes(
    make_project: ProjectFactory, capsys: pytest.CaptureFixture[str]
) -> None:
    handlers = HANDLERS.replace(
        "def send_invoice(payload: InvoicesPayload)", "def send_invoice(payload: object)"
    )
    code, err = run_generate(make_project(handlers=handlers), capsys)
    assert code == 0, err


RESOURCES_OK = """\
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager


class Pools:
    size = 3


@asynccontextmanager
async def lifespan() -> AsyncIterator[Pools]:
    yield Pools()
"""


def with_resources(make_project: ProjectFactory, source: str, reference: str) -> Path:
    project = make_project(
        channels_yaml=CHANNELS_YAML.replace("version: 1\n", f"version: 1\nresources: {reference}\n")
    )
    (project / "shop" / "resources.py").write_text(source)
    return project


def test_processors_are_typed_with_what_the_resources_factory_yields(
    make_project: ProjectFactory, capsys: pytest.CaptureFixture[str]
) -> None:
    project = with_resources(make_project, RESOURCES_OK, "shop.resources:lifespan")
    code, err = run_generate(project, capsys)
    assert code == 0, err
    processor = (project / "generated_shop" / "processors" / "orders.py").read_text()
    assert "from shop.resources import Pools" in processor
    assert "async def process(payload: OrdersPayload, context: JobContext[Pools])" in processor


BAD_RESOURCES = {
    "not a context manager": (
        RESOURCES_OK.replace("@asynccontextmanager\n", ""),
        "must be an @asynccontextmanager async function taking no arguments",
    ),
    "takes an argument": (
        RESOURCES_OK.replace("lifespan()", "lifespan(app)"),
        "must be an @asynccontextmanager async function taking no arguments",
    ),
    "no return annotation": (
        RESOURCES_OK.replace(" -> AsyncIterator[Pools]", ""),
        "its return annotation is not",
    ),
    "missing function": (RESOURCES_OK.replace("def lifespan", "def startup"), "no function"),
}


@pytest.mark.parametrize("case", sorted(BAD_RESOURCES))
def test_a_resources_factory_that_cannot_type_the_context_is_refused(
    case: str, make_project: ProjectFactory, capsys: pytest.CaptureFixture[str]
) -> None:
    source, message = BAD_RESOURCES[case]
    project = with_resources(make_project, source, "shop.resources:lifespan")
    code, err = run_generate(project, capsys)
    assert code == 2, err
    assert "channels.yaml:2:" in err, err
    assert "resources:" in err, err
    assert message in err, err


def test_a_malformed_resources_reference_is_refused(
    make_project: ProjectFactory, capsys: pytest.CaptureFixture[str]
) -> None:
    project = with_resources(make_project, RESOURCES_OK, "shop.resources.lifespan")
    code, err = run_generate(project, capsys)
    assert code == 2
    assert "resources 'shop.resources.lifespan' is not of the form" in err
