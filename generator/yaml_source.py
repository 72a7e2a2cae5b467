"""YAML to plain data, remembering where every key and value came from.

PyYAML's composer gives each node its line and column; we keep them in a map from key
path to position so that any later check can point at the exact spot in channels.yaml.
Duplicate keys, which PyYAML silently lets the last one win, are reported here.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import yaml

from generator.errors import ConfigError, Problem

__all__ = ["KeyPath", "LocatedDocument", "format_key_path", "load_yaml"]

KeyPath = tuple[str | int, ...]


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
        root = yaml.compose(text, Loader=yaml.SafeLoader)
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
    document.data = _to_data(root, (), document, problems)
    if problems:
        raise ConfigError(problems)
    return document


def _to_data(
    node: yaml.Node, path: KeyPath, document: LocatedDocument, problems: list[Problem]
) -> Any:
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
            mapping[key] = _to_data(value_node, child, document, problems)
        return mapping
    if isinstance(node, yaml.SequenceNode):
        return [
            _to_data(item, (*path, index), document, problems)
            for index, item in enumerate(node.value)
        ]
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
