"""Write generated files atomically, or compare them with what is on disk.

Files are first written to a staging folder beside the output and formatted there with
ruff (one process for all files), so the output is formatted, deterministic and never
half-written: only a complete, formatted tree replaces the old one. Regeneration replaces
the whole folder, which also removes files of channels that no longer exist.
"""

from __future__ import annotations

import filecmp
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from generator.errors import GeneratorError, StaleOutputError
from generator.manifest import write_manifest

__all__ = ["check_output", "write_output"]

_IGNORED = {"__pycache__", ".mypy_cache", ".ruff_cache"}


def _stage(files: dict[str, str], out_dir: Path, package: str, key: str) -> Path:
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.staging-", dir=out_dir.parent))
    for relative, text in files.items():
        target = staging / relative
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(text, encoding="utf-8", newline="\n")
    _format(staging, out_dir.parent, package)
    write_manifest(staging, key)
    return staging


def _format(folder: Path, project: Path, package: str) -> None:
    ruff = [sys.executable, "-m", "ruff"]
    # Named explicitly: ruff would otherwise call the package first-party only when its
    # folder already exists, and the first run would sort imports unlike the second.
    first_party = f"lint.isort.known-first-party = [{package.split('.')[0]!r}]"
    for command in (
        [
            *ruff,
            "check",
            "--quiet",
            "--fix-only",
            "--select",
            "I,F401",
            "--exit-zero",
            "--config",
            first_party,
            # protoc's modules import what registers descriptors (e.g. timestamp_pb2):
            # "unused" to ruff, needed at runtime.
            "--extend-exclude",
            "*_pb2.py,*_pb2.pyi,*_pb2_grpc.py,*_pb2_grpc.pyi",
            str(folder),
        ],
        [*ruff, "format", "--quiet", str(folder)],
    ):
        completed = subprocess.run(
            command, cwd=project, capture_output=True, text=True, check=False
        )
        if completed.returncode != 0:
            shutil.rmtree(folder, ignore_errors=True)
            raise GeneratorError(f"formatting generated code failed: {completed.stderr.strip()}")


def _tree(folder: Path) -> set[str]:
    if not folder.is_dir():
        return set()
    return {
        path.relative_to(folder).as_posix()
        for path in folder.rglob("*")
        if path.is_file() and not _IGNORED.intersection(path.relative_to(folder).parts)
    }


def write_output(
    files: dict[str, str],
    out_dir: Path,
    package: str,
    key: str,
    lock: tuple[Path, str] | None = None,
) -> None:
    """Replace `out_dir` with `files`; `lock` (path, text) is written beside channels.yaml."""
    staging = _stage(files, out_dir, package, key)
    if lock is not None:
        path, text = lock
        if not path.is_file() or path.read_text(encoding="utf-8") != text:
            partial = path.with_name(f".{path.name}.partial")
            partial.write_text(text, encoding="utf-8", newline="\n")
            partial.replace(path)
    previous = out_dir.with_name(f".{out_dir.name}.previous")
    shutil.rmtree(previous, ignore_errors=True)
    if out_dir.exists():
        out_dir.rename(previous)
    staging.rename(out_dir)
    shutil.rmtree(previous, ignore_errors=True)


def check_output(
    files: dict[str, str],
    out_dir: Path,
    package: str,
    key: str,
    lock: tuple[Path, str] | None = None,
) -> None:
    """Raise StaleOutputError naming each stale, orphaned or missing file, the lock file
    (`lock`: its path and expected text) included."""
    stale_lock: list[str] = []
    missing_lock: list[str] = []
    if lock is not None:
        path, text = lock
        if not path.is_file():
            missing_lock.append(path.name)
        elif path.read_text(encoding="utf-8") != text:
            stale_lock.append(path.name)
    staging = _stage(files, out_dir, package, key)
    try:
        expected, actual = _tree(staging), _tree(out_dir)
        stale = sorted(
            path
            for path in expected & actual
            if not filecmp.cmp(staging / path, out_dir / path, shallow=False)
        )
        orphaned = sorted(actual - expected)
        missing = sorted(expected - actual)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    if stale or orphaned or missing or stale_lock or missing_lock:
        show = out_dir.name
        raise StaleOutputError(
            [*stale_lock, *(f"{show}/{p}" for p in stale)],
            [f"{show}/{p}" for p in orphaned],
            [*missing_lock, *(f"{show}/{p}" for p in missing)],
        )
