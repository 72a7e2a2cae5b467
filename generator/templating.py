"""The jinja2 environment every template of the generator renders in."""

from __future__ import annotations

import jinja2

__all__ = ["article", "template_environment"]


def template_environment() -> jinja2.Environment:
    """Templates from generator/templates: no escaping (Python, not HTML), strict about
    undefined names, blocks trimmed so the output reads as if written by hand."""
    environment = jinja2.Environment(
        loader=jinja2.PackageLoader("generator", "templates"),
        autoescape=False,
        keep_trailing_newline=True,
        trim_blocks=True,
        lstrip_blocks=True,
        undefined=jinja2.StrictUndefined,
    )
    environment.filters["pyrepr"] = repr
    environment.filters["article"] = article
    return environment


def article(word: str) -> str:
    """`a` or `an` before `word`, by its first letter: "an email job", "a push job"."""
    return "an" if word and word[0].lower() in "aeiou" else "a"
