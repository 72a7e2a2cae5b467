"""Write generated files atomically, or compare them with what is on disk.

Files are first written to a staging folder beside the output and formatted there with
ruff (one process for all files), so the output is formatted, deterministic and never
half-written: only a complete, formatted tree replaces the old one. Regeneration replaces
the whole folder, which also removes files of channels that no longer exist.
"""

from __future__ import annotations

import ctypes
import filecmp
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from generator.errors import GeneratorError, StaleOutputError
from generator.manifest import write_manifest

__all__ = ["check_output", "write_output"]

_IGNORED = {"__pycache__", ".mypy_cache", ".ruff_cache"}


def _staging_prefix(out_dir: Path) -> str:
    return f".{out_dir.name}.staging-"


def _remove_abandoned_staging(out_dir: Path) -> None:
    """Staging folders of runs that were killed (their pid, in the name, is gone)."""
    for folder in out_dir.parent.glob(_staging_prefix(out_dir) + "*"):
        pid = folder.name.removeprefix(_staging_prefix(out_dir)).partition("-")[0]
        if pid.isdigit() and not _alive(int(pid)):
            shutil.rmtree(folder, ignore_errors=True)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # someone else's process
    return True


def _stage(files: dict[str, str], out_dir: Path, package: str, key: str) -> Path:
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    _remove_abandoned_staging(out_dir)
    staging = Path(
        tempfile.mkdtemp(prefix=f"{_staging_prefix(out_dir)}{os.getpid()}-", dir=out_dir.parent)
    )
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
    _swap(staging, out_dir)


def _swap(staging: Path, out_dir: Path) -> None:
    """Put `staging` in place of `out_dir` with no moment where `out_dir` is missing: an
    atomic exchange (Linux renameat2 RENAME_EXCHANGE), then the old tree is removed."""
    if out_dir.exists() and _exchange(staging, out_dir):
        shutil.rmtree(staging, ignore_errors=True)  # holds the old tree now
        return
    # No atomic exchange here (not Linux, or a filesystem without it): two renames.
    previous = out_dir.with_name(f".{out_dir.name}.previous")
    shutil.rmtree(previous, ignore_errors=True)
    if out_dir.exists():
        out_dir.rename(previous)
    staging.rename(out_dir)
    shutil.rmtree(previous, ignore_errors=True)


def _exchange(a: Path, b: Path) -> bool:
    """Swap two paths atomically; False where the system cannot."""
    if not sys.platform.startswith("linux"):
        return False
    libc = ctypes.CDLL(None, use_errno=True)
    renameat2 = getattr(libc, "renameat2", None)
    if renameat2 is None:  # glibc before 2.28, or another libc
        return False
    at_fdcwd, rename_exchange = -100, 2
    done = renameat2(at_fdcwd, os.fsencode(a), at_fdcwd, os.fsencode(b), rename_exchange)
    return bool(done == 0)


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
