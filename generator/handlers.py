"""Find a channel's handler function in the project's source, without importing it.

The generated processor imports the handler statically (so mypy checks its types), and
must know whether to pass it a JobContext and whether to await it. Reading the source
with `ast` answers both and never runs user code at generation time.
"""

from __future__ import annotations

import ast
import functools
from dataclasses import dataclass
from pathlib import Path

from generator.errors import Problem
from generator.yaml_source import KeyPath, LocatedDocument

__all__ = ["HandlerSignature", "inspect_handler"]


@dataclass(frozen=True, slots=True)
class HandlerSignature:
    takes_context: bool
    is_async: bool


def _module_file(root: Path, module: str) -> Path | None:
    base = root.joinpath(*module.split("."))
    for candidate in (base.with_suffix(".py"), base / "__init__.py"):
        if candidate.is_file():
            return candidate
    return None


@functools.lru_cache(maxsize=256)
def _parse(file: Path, _mtime_ns: int) -> ast.Module:
    """One parse per file and version: many channels often share one handlers module."""
    return ast.parse(file.read_text(encoding="utf-8"), filename=str(file))


def _find_function(
    root: Path, module: str, function: str, seen: set[str]
) -> ast.FunctionDef | ast.AsyncFunctionDef | str:
    """The function's definition, or the reason it cannot be found."""
    if module in seen:
        return f"import cycle while looking for {function!r}"
    seen.add(module)
    file = _module_file(root, module)
    if file is None:
        return (
            f"handler module {module!r} not found: expected "
            f"{Path(*module.split('.')).with_suffix('.py')} in {root}"
        )
    try:
        tree = _parse(file, file.stat().st_mtime_ns)
    except SyntaxError as error:
        return f"cannot parse {file}: line {error.lineno}: {error.msg}"
    for node in tree.body:
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef) and node.name == function:
            return node
    for node in tree.body:
        if isinstance(node, ast.ImportFrom):
            for alias in node.names:
                if (alias.asname or alias.name) == function:
                    source = _absolute(module, node, file.name == "__init__.py")
                    return _find_function(root, source, alias.name, seen)
    return f"module {module!r} ({file}) defines no function {function!r}"


def _absolute(module: str, node: ast.ImportFrom, is_package: bool) -> str:
    if not node.level:
        return node.module or ""
    parts = module.split(".")
    keep = len(parts) - node.level + (1 if is_package else 0)
    base = parts[:keep]
    return ".".join([*base, node.module] if node.module else base)


def inspect_handler(
    root: Path,
    module: str,
    function: str,
    document: LocatedDocument,
    path: KeyPath,
    problems: list[Problem],
) -> HandlerSignature | None:
    found = _find_function(root, module, function, set())
    if isinstance(found, str):
        problems.append(document.problem(path, found))
        return None
    arguments = found.args
    positional = [*arguments.posonlyargs, *arguments.args]
    required = len(positional) - len(arguments.defaults)
    if not positional or required > 2:
        problems.append(
            document.problem(
                path,
                f"handler {module}:{function} must take the payload model and, optionally, "
                f"a JobContext as its second parameter; it takes {len(positional)} parameters",
            )
        )
        return None
    return HandlerSignature(
        takes_context=len(positional) >= 2,
        is_async=isinstance(found, ast.AsyncFunctionDef),
    )
