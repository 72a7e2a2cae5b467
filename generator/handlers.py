"""Find a channel's handler function in the project's source, without importing it.

The generated processor imports the handler statically (so mypy checks its types), and
must know whether to pass it a JobContext and whether to await it. Reading the source
with `ast` answers both and never runs user code at generation time. The same reading
rejects a handler whose first parameter is annotated with another channel's model (mypy
would catch it too, but later and further from the cause), and finds the type that the
app's `resources:` factory yields, which the generated processors pass on as
`JobContext[ThatType]`.
"""

from __future__ import annotations

import ast
import builtins
import functools
from dataclasses import dataclass
from pathlib import Path

from generator.errors import Problem
from generator.yaml_source import KeyPath, LocatedDocument, format_key_path

__all__ = ["HandlerSignature", "ResourcesSignature", "inspect_handler", "inspect_resources"]


@dataclass(frozen=True, slots=True)
class HandlerSignature:
    takes_context: bool
    is_async: bool


@dataclass(frozen=True, slots=True)
class ResourcesSignature:
    """`resources: module:function`, and the type its context manager yields."""

    module: str
    function: str
    type_name: str  # importable from `module` (defined or imported there), or a builtin
    builtin: bool = False


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


_Function = ast.FunctionDef | ast.AsyncFunctionDef


@dataclass(frozen=True, slots=True)
class _Found:
    node: ast.FunctionDef | ast.AsyncFunctionDef
    file: Path
    module: str
    tree: ast.Module


def _find_function(root: Path, module: str, function: str, seen: set[str]) -> _Found | str:
    """The function's definition and where it is, or the reason it cannot be found."""
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
        if isinstance(node, _Function) and node.name == function:
            return _Found(node, file, module, tree)
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
    payload_class: str | None = None,
) -> HandlerSignature | None:
    """`payload_class` (`SmsPayload`): a first parameter annotated with another generated
    model is a problem placed at the handler's parameter."""
    found = _find_function(root, module, function, set())
    if isinstance(found, str):
        problems.append(document.problem(path, found))
        return None
    arguments = found.node.args
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
    if payload_class is not None:
        wrong = _wrong_payload(found, positional[0], payload_class)
        if wrong is not None:
            problems.append(
                Problem(
                    _shown(root, found.file),
                    positional[0].lineno,
                    positional[0].col_offset + 1,
                    format_key_path(path),
                    f"handler {module}:{function} takes {wrong} as its payload; the channel's "
                    f"payload is {payload_class}: annotate its first parameter with "
                    f"{payload_class} (from {_models_hint(found, positional[0])})",
                )
            )
            return None
    return HandlerSignature(
        takes_context=len(positional) >= 2,
        is_async=isinstance(found.node, ast.AsyncFunctionDef),
    )


def _shown(root: Path, file: Path) -> str:
    try:
        return file.resolve().relative_to(Path.cwd()).as_posix()
    except ValueError:
        return file.relative_to(root).as_posix() if file.is_relative_to(root) else str(file)


def _annotation_name(annotation: ast.expr | None) -> tuple[str, str | None] | None:
    """(name, the local name it is reached through) for `Name`, `mod.Name` and "Name"."""
    if isinstance(annotation, ast.Constant) and isinstance(annotation.value, str):
        try:
            annotation = ast.parse(annotation.value, mode="eval").body
        except SyntaxError:
            return None
    if isinstance(annotation, ast.Name):
        return annotation.id, annotation.id
    if isinstance(annotation, ast.Attribute):
        base = annotation.value
        return annotation.attr, base.id if isinstance(base, ast.Name) else None
    return None


def _imported_from(found: _Found, local: str) -> tuple[str, str] | None:
    """(module, original name) of a name the handler's module imports."""
    for node in found.tree.body:
        if isinstance(node, ast.ImportFrom):
            for alias in node.names:
                if (alias.asname or alias.name) == local:
                    module = _absolute(found.module, node, found.file.name == "__init__.py")
                    return module, alias.name
        elif isinstance(node, ast.Import):
            for alias in node.names:
                if (alias.asname or alias.name) == local:
                    return alias.name, ""
    return None


def _is_models_module(module: str) -> bool:
    return "models" in module.split(".")


def _wrong_payload(found: _Found, parameter: ast.arg, payload_class: str) -> str | None:
    """The model named by the first parameter's annotation when it is a generated model
    other than `payload_class`; None when it is right or not a generated model."""
    named = _annotation_name(parameter.annotation)
    if named is None:
        return None
    name, local = named
    source = _imported_from(found, local) if local is not None else None
    if source is None:
        return None
    module, original = source
    if not _is_models_module(module):
        return None
    if local == name:  # `from generated.models.email import EmailPayload [as X]`
        name = original
    return None if name == payload_class else name


def _models_hint(found: _Found, parameter: ast.arg) -> str:
    named = _annotation_name(parameter.annotation)
    source = _imported_from(found, named[1]) if named and named[1] else None
    module = source[0] if source else "the generated models"
    parts = module.split(".")
    if "models" in parts:
        return ".".join(parts[: parts.index("models") + 1]) + ".<channel>"
    return module


def inspect_resources(
    root: Path,
    reference: str,
    document: LocatedDocument,
    path: KeyPath,
    problems: list[Problem],
) -> ResourcesSignature | None:
    """`module:function`, an `@asynccontextmanager` taking no arguments and annotated
    `-> AsyncIterator[T]` (or `AsyncGenerator[T, None]`), where T is a name the module
    defines or imports."""
    module, function = reference.split(":")
    found = _find_function(root, module, function, set())
    if isinstance(found, str):
        problems.append(document.problem(path, found))
        return None
    node = found.node
    expected = (
        f"resources {reference} must be an @asynccontextmanager async function taking no "
        "arguments, annotated `-> AsyncIterator[Resources]` (Resources: the type it yields)"
    )
    where = f"{_shown(root, found.file)}:{node.lineno}:{node.col_offset + 1}"
    arguments = node.args
    required = len([*arguments.posonlyargs, *arguments.args]) - len(arguments.defaults)
    required += sum(default is None for default in arguments.kw_defaults)
    decorated = any(_last_name(d) == "asynccontextmanager" for d in node.decorator_list)
    yielded = _yielded_type(node.returns)
    if not isinstance(node, ast.AsyncFunctionDef) or not decorated or required:
        problems.append(document.problem(path, f"{expected}; see {where}"))
        return None
    if yielded is None:
        problems.append(
            document.problem(path, f"{expected}; its return annotation is not ({where})")
        )
        return None
    builtin = yielded in vars(builtins) and not _binds(found.tree, yielded)
    return ResourcesSignature(module, function, yielded, builtin)


def _binds(tree: ast.Module, name: str) -> bool:
    """Whether the module defines or imports `name` at its top level."""
    for node in tree.body:
        if isinstance(node, ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef):
            if node.name == name:
                return True
        elif isinstance(node, ast.Import | ast.ImportFrom):
            if any((alias.asname or alias.name).split(".")[0] == name for alias in node.names):
                return True
        elif isinstance(node, ast.Assign | ast.AnnAssign):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            if any(isinstance(target, ast.Name) and target.id == name for target in targets):
                return True
    return False


def _last_name(node: ast.expr) -> str | None:
    if isinstance(node, ast.Name):
        return node.id
    if isinstance(node, ast.Attribute):
        return node.attr
    return None


def _yielded_type(returns: ast.expr | None) -> str | None:
    if isinstance(returns, ast.Constant) and isinstance(returns.value, str):
        try:
            returns = ast.parse(returns.value, mode="eval").body
        except SyntaxError:
            return None
    if not isinstance(returns, ast.Subscript):
        return None
    if _last_name(returns.value) not in ("AsyncIterator", "AsyncGenerator"):
        return None
    argument = returns.slice
    if isinstance(argument, ast.Tuple) and argument.elts:
        argument = argument.elts[0]
    return argument.id if isinstance(argument, ast.Name) else None
