"""A workaround for a CPython 3.11 bug that made tests fail at random; no tests here.

CPython before 3.11.8 (gh-106905, fixed by python/cpython#113476) counts the depth of the
AST it converts to Python objects in one per-interpreter counter, which each `ast.parse`
resets to the caller's depth when it starts and checks when it ends. A garbage collection
during a parse runs finalizers; a finalizer that parses too (pytest's unraisable-exception
hook formats the traceback of an exception raised in a finalizer, and 3.11's traceback
module `ast.parse`s each source line for its `^^^` markers) resets the counter under the
outer parse, which then fails with "SystemError: AST constructor recursion depth mismatch
(before=.., after=..)". With `filterwarnings = error`, a ResourceWarning from an unclosed
socket or event loop left by an earlier test, collected during hypothesis's parse of a
lambda's source in tests/fuzz/test_config_fuzz.py, did exactly that in a full-suite run.

`pause_gc_during_ast_parse()` wraps `ast.parse` so that the collector cannot run inside
it, on the affected versions only: everything that parses while the tests run (pytest's
assertion rewriting, hypothesis, the generator, traceback formatting) looks `ast.parse`
up when it calls it. tests/test_interpreter.py shows the bug and the workaround.
"""

from __future__ import annotations

import ast
import functools
import gc
import sys
from typing import Any

__all__ = ["AFFECTED", "pause_gc_during_ast_parse"]

AFFECTED = (3, 11) <= sys.version_info[:3] < (3, 11, 8)


def pause_gc_during_ast_parse() -> None:
    """On an affected CPython, replace `ast.parse` by one that runs with the GC paused."""
    if not AFFECTED or getattr(ast.parse, "gc_paused", False):
        return
    parse = ast.parse

    @functools.wraps(parse)
    def parse_with_gc_paused(*args: Any, **kwargs: Any) -> Any:
        if not gc.isenabled():
            return parse(*args, **kwargs)
        gc.disable()
        try:
            return parse(*args, **kwargs)
        finally:
            gc.enable()

    parse_with_gc_paused.gc_paused = True  # type: ignore[attr-defined]
    ast.parse = parse_with_gc_paused
