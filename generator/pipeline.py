"""channels.yaml → generated package: the generator's one entry point."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from generator.config import load_config
from generator.errors import ConfigError, Problem
from generator.lock import lock_path, read_lock
from generator.manifest import cache_key, is_current
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
    locked = lock_path(config.path)
    lock = read_lock(locked, _shown(locked))
    # Unvalidated first: the inputs of the last generation were valid, and when they are
    # unchanged there is nothing more to do. (The meta-schema check is the slow part.)
    schemas = load_schemas(config, validate=False)
    package = _package_name(out_dir, config.root)
    sources = sorted({file for channel in schemas.values() for file in channel.source_files})
    names = tuple(c.name for c in config.channels)
    if lock.text and is_current(out_dir, cache_key(config, package, sources, lock.text)):
        return GenerationReport(out_dir, package, names, files=0)
    # Imported only when there is work to do: they load datamodel-code-generator and
    # grpc_tools, which alone take longer than the whole up-to-date path.
    from generator.output import check_output, write_output
    from generator.render import render_files, render_lock_file

    schemas = load_schemas(config)
    lock_text = render_lock_file(config, schemas, lock)
    files = render_files(config, schemas, package, lock, lock_text)
    # The manifest's key is over the lock as written now: the next run reads that file.
    key = cache_key(config, package, sources, lock_text)
    if check:
        check_output(files, out_dir, package, key, (locked, lock_text))
    else:
        write_output(files, out_dir, package, key, (locked, lock_text))
    return GenerationReport(out_dir, package, names, len(files))


def _package_name(out_dir: Path, root: Path) -> str:
    """The dotted import name of the output folder, seen from the project folder."""
    try:
        relative = out_dir.resolve().relative_to(root.resolve())
    except ValueError:
        raise ConfigError(
            [
                Problem(
                    str(out_dir),
                    0,
                    0,
                    "",
                    f"the output folder must be inside "
                    f"the project folder {root} (where channels.yaml is)",
                )
            ]
        ) from None
    if not relative.parts or not all(part.isidentifier() for part in relative.parts):
        raise ConfigError(
            [
                Problem(
                    str(out_dir),
                    0,
                    0,
                    "",
                    "the output folder must be an "
                    "importable package path, e.g. `generated` or `app/generated`",
                )
            ]
        )
    return ".".join(relative.parts)


def _shown(path: Path) -> str:
    """`path` as error messages show it: relative to the working folder where it can be."""
    try:
        return str(path.resolve().relative_to(Path.cwd()))
    except ValueError:
        return str(path)
