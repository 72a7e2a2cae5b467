"""The CPython 3.11 bug worked around in tests/interpreter.py, shown and held off: garbage
whose finalizer formats a traceback (what pytest's unraisable-exception hook does), freed
by a garbage collection in the middle of `ast.parse` of a large module."""

from __future__ import annotations

import ast
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any

from tests.interpreter import AFFECTED

SOURCE = Path(ast.__file__).read_text(encoding="utf-8")


class _FormatsATracebackWhenFreed:
    def __init__(self) -> None:
        self.me = self  # a cycle: only the garbage collector frees it

    def __del__(self) -> None:
        try:
            raise ResourceWarning("unclosed")
        except ResourceWarning as error:
            traceback.format_exception(error)  # 3.11: ast.parse per line, for the carets


def _mismatches(parse: Callable[[str], Any], rounds: int = 10) -> list[str]:
    failed = []
    for _ in range(rounds):
        for _ in range(200):
            _FormatsATracebackWhenFreed()
        try:
            parse(SOURCE)
        except SystemError as error:
            failed.append(str(error))
    return failed


def test_ast_parse_survives_finalizers_that_parse_during_a_collection() -> None:
    assert _mismatches(ast.parse) == []


def test_the_bug_is_there_on_the_affected_versions_only() -> None:
    unpatched = getattr(ast.parse, "__wrapped__", ast.parse)
    failed = _mismatches(unpatched)
    # When this fails on a fixed CPython, tests/interpreter.py can go.
    assert bool(failed) == AFFECTED, failed
    assert all("AST constructor recursion depth mismatch" in error for error in failed), failed
