"""Errors raised by the generator.

ChannelkitError                      (runtime.errors)
├── ConfigError (also ValueError)    (runtime.errors) a setting or the config is wrong
└── GeneratorError
    ├── ConfigError                   channels.yaml or a schema it uses is wrong; carries
    │                                  every problem found, each with its place. Also a
    │                                  runtime.errors.ConfigError: one meaning everywhere
    └── StaleOutputError              `--check` found generated files that differ
"""

from __future__ import annotations

from dataclasses import dataclass

from runtime.errors import ChannelkitError
from runtime.errors import ConfigError as RuntimeConfigError

__all__ = ["ConfigError", "GeneratorError", "Problem", "StaleOutputError"]


class GeneratorError(ChannelkitError):
    """Generation could not finish; nothing in the output folder was changed."""


@dataclass(frozen=True, slots=True)
class Problem:
    """One thing wrong in the input, and where: `file:line:column: key.path: message`."""

    file: str
    line: int
    column: int
    key_path: str
    message: str

    def __str__(self) -> str:
        where = f"{self.file}:{self.line}:{self.column}" if self.line else self.file
        key = f"{self.key_path}: " if self.key_path else ""
        return f"{where}: {key}{self.message}"


class ConfigError(GeneratorError, RuntimeConfigError):
    """channels.yaml, or a payload schema it references, cannot be used as it is."""

    def __init__(self, problems: list[Problem]) -> None:
        self.problems = sorted(problems, key=lambda p: (p.file, p.line, p.column, p.key_path))
        super().__init__("\n".join(str(problem) for problem in self.problems))

    def __str__(self) -> str:
        return str(self.args[0])


class StaleOutputError(GeneratorError):
    """The generated folder does not match what channels.yaml generates."""

    def __init__(self, stale: list[str], orphaned: list[str], missing: list[str]) -> None:
        self.stale = stale
        self.orphaned = orphaned
        self.missing = missing
        lines = [f"stale: {path}" for path in stale]
        lines += [f"orphaned: {path}" for path in orphaned]
        lines += [f"missing: {path}" for path in missing]
        super().__init__(
            "generated files are out of date; run `make generate` (or `runtime generate`) "
            "and commit the result:\n  " + "\n  ".join(lines)
        )
