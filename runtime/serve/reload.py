"""`runtime serve --reload`: serve in a child process and restart it when the project changes.

The supervisor watches the project folder (channels.yaml, its lock, the schema files, the
handler packages: every .py, .yaml, .yml and .json file outside hidden folders, virtual
environments, the generated package and the data folder) with watchfiles. After a change
to anything but Python code it runs `runtime generate` first; when that fails it prints
the errors, leaves the running server alone (nothing was written) and goes on watching.
Then it stops the child with SIGTERM (SIGKILL after the shutdown timeout and a margin) and
starts a new one. A child that exits by itself (a handler that does not import, a busy
port) is reported, and the next change starts it again. SIGINT or SIGTERM stop the child,
then the supervisor.

The child runs in a session of its own: Ctrl-C reaches only the supervisor, which stops
the child once, as `make run`'s Ctrl-C stops `runtime serve` once.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path

from runtime.serve.settings import ServeSettings

try:
    import watchfiles
except ImportError:  # the generate extra's: reload_forever says so
    watchfiles = None  # type: ignore[assignment]

__all__ = ["WATCHED_SUFFIXES", "reload_forever", "watched_paths"]

WATCHED_SUFFIXES = (".py", ".yaml", ".yml", ".json")
_REGENERATE_SUFFIXES = (".yaml", ".yml", ".json")
_SKIPPED_DIRS = {"node_modules", "__pycache__", "venv", "env", "build", "dist"}
_KILL_MARGIN_S = 5.0


def _say(message: str) -> None:
    print(f"reload: {message}", file=sys.stderr, flush=True)


def watched_paths(project: Path, out_dir: Path, data_dir: Path) -> list[Path]:
    """The project's top-level folders and files worth watching: not hidden, not a virtual
    environment, not the generated package or the data folder (the server writes there).
    Folders are watched whole; a folder is skipped at the top level only, so that watching
    stays within what the project holds (a .venv has tens of thousands of folders)."""
    skipped = {out_dir.resolve(), data_dir.resolve()}
    paths = []
    for entry in sorted(project.iterdir()):
        if entry.name.startswith(".") or entry.resolve() in skipped:
            continue
        if entry.is_dir():
            if (
                entry.name in _SKIPPED_DIRS
                or entry.name.endswith(".egg-info")
                or (entry / "pyvenv.cfg").exists()
            ):
                continue
            paths.append(entry)
        elif entry.suffix in WATCHED_SUFFIXES:
            paths.append(entry)
    return paths


def _generate(config: Path, out_dir: Path) -> bool:
    """`runtime generate`, its output shown as it is; True when it succeeded."""
    _say(f"regenerating {out_dir} from {config}")
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "runtime",
            "generate",
            "--config",
            str(config),
            "--out",
            str(out_dir),
        ],
        check=False,
    )
    if result.returncode != 0:
        _say(f"{config} not generated (exit {result.returncode}); fix it and save, still watching")
    return result.returncode == 0


class _Child:
    """The serving process: `python -m runtime serve <args>` in a session of its own."""

    def __init__(self, serve_args: Sequence[str], stop_timeout: float) -> None:
        self._args = list(serve_args)
        self._stop_timeout = stop_timeout
        self.process: asyncio.subprocess.Process | None = None

    async def start(self) -> None:
        self.process = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "runtime",
            "serve",
            *self._args,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
        _say(f"serving (pid {self.process.pid})")

    async def stop(self) -> None:
        process, self.process = self.process, None
        if process is None or process.returncode is not None:
            return
        _say(f"stopping pid {process.pid}")
        with contextlib.suppress(ProcessLookupError):
            process.send_signal(signal.SIGTERM)
        try:
            await asyncio.wait_for(process.wait(), self._stop_timeout)
        except TimeoutError:
            _say(f"pid {process.pid} did not stop in {self._stop_timeout:.0f} s: killing it")
            with contextlib.suppress(ProcessLookupError):
                process.kill()
            await process.wait()

    async def exited(self) -> int:
        """Wait until the child exits by itself (forever when there is none)."""
        if self.process is None:
            await asyncio.Event().wait()
        assert self.process is not None
        return await self.process.wait()


async def _changes(watch: Sequence[Path], stop: asyncio.Event) -> set[Path]:
    """The files changed in the next batch of changes (empty when `stop` was set)."""

    class _Filter(watchfiles.DefaultFilter):
        def __call__(self, change: watchfiles.Change, path: str) -> bool:
            return path.endswith(WATCHED_SUFFIXES) and super().__call__(change, path)

    async for batch in watchfiles.awatch(*watch, watch_filter=_Filter(), stop_event=stop):
        return {Path(path) for _, path in batch}
    return set()


async def _supervise(
    serve_args: Sequence[str], settings: ServeSettings, config: Path, project: Path
) -> int:
    out_dir = Path(*settings.app.split("."))
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    child = _Child(serve_args, settings.shutdown_timeout + _KILL_MARGIN_S)
    try:
        if _generate(config, out_dir):
            await child.start()
        while not stop.is_set():
            watch = watched_paths(project, out_dir, settings.data_dir)
            _say(f"watching {', '.join(str(p) for p in watch)}")
            changes = asyncio.create_task(_changes(watch, stop))
            exited = asyncio.create_task(child.exited())
            await asyncio.wait({changes, exited}, return_when=asyncio.FIRST_COMPLETED)
            if exited.done():
                _say(f"the server exited with {exited.result()}; waiting for a change")
                child.process = None
                changed = await changes
            else:
                exited.cancel()
                changed = changes.result()
            if stop.is_set() or not changed:
                break
            _say("changed: " + ", ".join(sorted(str(p) for p in changed)))
            regenerate = any(path.suffix in _REGENERATE_SUFFIXES for path in changed)
            if regenerate and not await asyncio.to_thread(_generate, config, out_dir):
                continue
            await child.stop()
            await child.start()
    finally:
        await child.stop()
    _say("stopped")
    return 0


def reload_forever(serve_args: Sequence[str], settings: ServeSettings, config: Path) -> int:
    """Serve with `serve_args` (the command line less --reload) and restart on changes,
    until SIGINT or SIGTERM. Exit 2 without watchfiles (the generate extra)."""
    if watchfiles is None:
        print(
            "error: runtime serve --reload needs watchfiles: pip install 'channelkit[generate]'",
            file=sys.stderr,
        )
        return 2
    return asyncio.run(_supervise(serve_args, settings, config, Path.cwd()))
