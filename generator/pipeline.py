"""channels.yaml → generated package: the generator's one entry point."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from generator.config import load_config
from generator.output import check_output, write_output
from generator.render import package_name, render_files
from generator.schemas import load_schemas

__all__ = ["GenerationReport", "generate"]


@dataclass(frozen=True, slots=True)
class GenerationReport:
    out_dir: Path
    package: str
    channels: tuple[str, ...]
    files: int


def generate(config_path: Path, out_dir: Path, *, check: bool = False) -> GenerationReport:
    """Generate `out_dir` from `config_path`, or with `check` only compare.

    Raises ConfigError (bad input; nothing written) or StaleOutputError (check failed).
    """
    config = load_config(config_path)
    schemas = load_schemas(config)
    package = package_name(out_dir, config.root)
    files = render_files(config, schemas, package)
    if check:
        check_output(files, out_dir, package)
    else:
        write_output(files, out_dir, package)
    return GenerationReport(out_dir, package, tuple(c.name for c in config.channels), len(files))
