"""docs/channels-yaml.md is what generator.reference_doc renders from the schema."""

from __future__ import annotations

import difflib
from typing import Any

from generator.config import format_schema
from generator.reference_doc import COMMAND, render_reference
from tests.conftest import ROOT

PAGE = ROOT / "docs" / "channels-yaml.md"


def test_page_is_current() -> None:
    expected = render_reference()
    actual = PAGE.read_text(encoding="utf-8") if PAGE.exists() else ""
    if actual != expected:
        diff = "".join(
            difflib.unified_diff(
                actual.splitlines(True), expected.splitlines(True), str(PAGE.name), "rendered"
            )
        )
        raise AssertionError(
            f"docs/channels-yaml.md is stale:\n{diff}\nRegenerate it with:\n  {COMMAND}"
        )


def property_names(node: Any) -> set[str]:
    names: set[str] = set()
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "properties" and isinstance(value, dict):
                names |= set(value)
            names |= property_names(value)
    elif isinstance(node, list):
        for item in node:
            names |= property_names(item)
    return names


def test_every_key_of_the_schema_is_documented() -> None:
    page = render_reference()
    for name in property_names(format_schema()):
        assert f"`{name}`" in page or f".{name}`" in page, name
