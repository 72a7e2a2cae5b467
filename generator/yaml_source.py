"""YAML to plain data, remembering where every key and value came from.

PyYAML's composer gives each node its line and column; we keep them in a map from key
path to position so that any later check can point at the exact spot in channels.yaml.
Duplicate keys, which PyYAML silently lets the last one win, are reported here.

Nesting is bounded: PyYAML composes a document recursively (a few Python frames per
level), and so does everything that walks the data after it, so a file nested a few
hundred levels deep (`[[[[...`, or an alias inside its own anchor: `&a [*a]`, infinitely
deep) would end in a RecursionError. More than MAX_DEPTH levels, or more than MAX_VALUES
values once aliases are expanded (`&a [x, x]`, `&b [*a, *a]`, ... doubles each time), is
a ConfigError at the place where it happens.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import yaml

from generator.errors import ConfigError, Problem

__all__ = [
    "MAX_DEPTH",
    "MAX_VALUES",
    "KeyPath",
    "LocatedDocument",
    "SafeDepthLoader",
    "format_key_path",
    "load_yaml",
    "too_deep",
]

KeyPath = tuple[str | int, ...]

# Far beyond any real channels.yaml or payload schema (the reference nests 6 levels), and
# far below what Python's stack holds while PyYAML, jsonschema and pydantic walk the data.
MAX_DEPTH = 64
MAX_VALUES = 100_000


class TooDeepError(yaml.MarkedYAMLError):
    """Nesting beyond MAX_DEPTH, found while composing (before any recursion runs out)."""


class SafeDepthLoader(yaml.SafeLoader):
    """yaml.SafeLoader that refuses to compose more than MAX_DEPTH nested levels."""

    def __init__(self, stream: str) -> None:
        super().__init__(stream)
        self._depth = 0

    def compose_node(self, parent: yaml.Node | None, index: int) -> yaml.Node | None:
        self._depth += 1
        try:
            if self._depth > MAX_DEPTH:
                event = self.peek_event()  # type: ignore[no-untyped-call]
                raise TooDeepError(
                    problem=f"nested deeper than {MAX_DEPTH} levels",
                    problem_mark=event.start_mark,
                )
            return super().compose_node(parent, index)
        finally:
            self._depth -= 1


def format_key_path(path: KeyPath) -> str:
    text = ""
    for part in path:
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else str(part))
    return text


@dataclass
class LocatedDocument:
    """Parsed YAML plus the position (1-based line and column) of every key path."""

    file: str
    data: Any
    positions: dict[KeyPath, tuple[int, int]] = field(default_factory=dict)
    value_positions: dict[KeyPath, tuple[int, int]] = field(default_factory=dict)
    scalars: yaml.SafeLoader = field(default_factory=lambda: yaml.SafeLoader(""), repr=False)

    def position(self, path: KeyPath, *, at_key: bool = False) -> tuple[int, int]:
        """Where the value at `path` starts (or its key, with `at_key`); for a path that
        does not exist, where its nearest existing ancestor's key is."""
        if not at_key and path in self.value_positions:
            return self.value_positions[path]
        while path not in self.positions and path:
            path = path[:-1]
        return self.positions.get(path, (1, 1))

    def problem(self, path: KeyPath, message: str, *, at_key: bool = False) -> Problem:
        line, column = self.position(path, at_key=at_key)
        return Problem(self.file, line, column, format_key_path(path), message)


def load_yaml(text: str, file: str) -> LocatedDocument:
    try:
        root = yaml.compose(text, Loader=SafeDepthLoader)
    except TooDeepError as error:
        mark = error.problem_mark
        line, column = (mark.line + 1, mark.column + 1) if mark else (1, 1)
        raise ConfigError([Problem(file, line, column, "", str(error.problem))]) from None
    except yaml.MarkedYAMLError as error:
        mark = error.problem_mark or error.context_mark
        line, column = (mark.line + 1, mark.column + 1) if mark else (1, 1)
        message = f"YAML syntax error: {error.problem or error.context}"
        raise ConfigError([Problem(file, line, column, "", message)]) from None
    except yaml.YAMLError as error:
        raise ConfigError([Problem(file, 1, 1, "", f"YAML error: {error}")]) from None
    document = LocatedDocument(file=file, data=None)
    if root is None:
        document.data = {}
        return document
    problems: list[Problem] = []
    document.data = _Converter(document, problems).to_data(root, ())
    if problems:
        raise ConfigError(problems)
    return document


@dataclass
class _Converter:
    """Nodes to plain data, positions recorded. Aliases are expanded here, so this is
    where an alias can make the data deeper or larger than the text (see the module)."""

    document: LocatedDocument
    problems: list[Problem]
    values: int = 0

    def to_data(self, node: yaml.Node, path: KeyPath) -> Any:
        document, problems = self.document, self.problems
        self.values += 1
        if len(path) >= MAX_DEPTH or self.values > MAX_VALUES:
            raise ConfigError([self._too_big(node, path)])
        document.value_positions[path] = (node.start_mark.line + 1, node.start_mark.column + 1)
        if isinstance(node, yaml.MappingNode):
            mapping: dict[str, Any] = {}
            for key_node, value_node in node.value:
                if not isinstance(key_node, yaml.ScalarNode):
                    problems.append(document.problem(path, "a key must be a plain string"))
                    continue
                key = str(key_node.value)
                child = (*path, key)
                if key in mapping:
                    line, column = key_node.start_mark.line + 1, key_node.start_mark.column + 1
                    first_line = document.positions[child][0]
                    problems.append(
                        Problem(
                            document.file,
                            line,
                            column,
                            format_key_path(child),
                            f"duplicate key {key!r} (first defined on line {first_line})",
                        )
                    )
                    continue
                document.positions[child] = (
                    key_node.start_mark.line + 1,
                    key_node.start_mark.column + 1,
                )
                mapping[key] = self.to_data(value_node, child)
            return mapping
        if isinstance(node, yaml.SequenceNode):
            return [self.to_data(item, (*path, index)) for index, item in enumerate(node.value)]
        try:
            return document.scalars.construct_object(node)
        except yaml.MarkedYAMLError as error:  # e.g. an unknown tag such as `!0`
            mark = error.problem_mark or node.start_mark
            problems.append(
                Problem(
                    document.file,
                    mark.line + 1,
                    mark.column + 1,
                    format_key_path(path),
                    f"cannot read this value: {error.problem or error.context}",
                )
            )
            return None

    def _too_big(self, node: yaml.Node, path: KeyPath) -> Problem:
        if len(path) >= MAX_DEPTH:
            problem = (
                f"nested deeper than {MAX_DEPTH} levels once aliases are expanded (an alias "
                "inside its own anchor, such as `&a [*a]`, never ends)"
            )
        else:
            problem = f"more than {MAX_VALUES} values once aliases are expanded"
        shown = format_key_path(path[:6]) + (" ..." if len(path) > 6 else "")
        return Problem(
            self.document.file, node.start_mark.line + 1, node.start_mark.column + 1, shown, problem
        )


def too_deep(value: Any) -> str | None:
    """Why data read from a file another way (a JSON schema file) is beyond the bounds of
    this module, or None; it walks without recursion, so any depth is safe to ask about."""
    stack: list[tuple[Any, int]] = [(value, 1)]
    values = 0
    while stack:
        item, depth = stack.pop()
        values += 1
        if depth > MAX_DEPTH:
            return f"nested deeper than {MAX_DEPTH} levels"
        if values > MAX_VALUES:
            return f"more than {MAX_VALUES} values"
        if isinstance(item, dict):
            stack.extend((child, depth + 1) for child in item.values())
        elif isinstance(item, list):
            stack.extend((child, depth + 1) for child in item)
    return None
