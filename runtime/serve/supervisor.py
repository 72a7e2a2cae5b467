"""`runtime serve --processes N`: N identical `runtime serve` processes on the same ports.

Python runs one thread of Python at a time, so one process uses one core; N processes use
N. Every child serves HTTP, gRPC and every channel's workers, exactly as `runtime serve`
alone does, with the same flags and environment, and binds the HTTP and gRPC ports with
SO_REUSEPORT (`CHANNELKIT_REUSE_PORT`): the kernel spreads new connections over the
children, and Redis's consumer groups spread the jobs. Without REDIS_URL the supervisor
starts the one embedded Redis and hands its URL to every child.

A child that exits while the supervisor is not stopping is started again, after 0.5 s,
doubling up to 10 s for one that keeps failing. One that fails within 10 s of starting
`START_FAILURES` times in a row is a broken deployment, not bad luck: the supervisor stops
the others and exits 1, saying so. A child that exits 2 (its configuration is wrong) stops
everything at once: starting it again cannot help.

SIGTERM or SIGINT: every child gets SIGTERM and the shutdown timeout to finish its jobs
(then SIGKILL, after a margin); the supervisor exits 0 when all have stopped. Children run
in a session of their own (Ctrl-C reaches the supervisor only, which stops each child
once) and get SIGTERM if the supervisor dies.
"""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from types import FrameType

from runtime.errors import ConfigError
from runtime.serve.embedded_redis import DataDirLock, EmbeddedRedis, _die_with_parent
from runtime.serve.logs import configure_logging
from runtime.serve.ports import port_free
from runtime.serve.settings import ServeSettings

__all__ = ["START_FAILURES", "supervise"]

logger = logging.getLogger("channelkit.serve")

START_FAILURES = 5  # failures in a row, each within STABLE_S of its start: give up
STABLE_S = 10.0  # a child up this long has started well; its next failure counts from 1
FIRST_DELAY_S = 0.5
MAX_DELAY_S = 10.0
KILL_MARGIN_S = 5.0
POLL_S = 0.05


@dataclass
class _Child:
    slot: int
    process: subprocess.Popen[bytes] | None = None
    started: float = 0.0
    failures: int = 0  # in a row, each soon after its start
    restart_at: float = 0.0


def check_ports(settings: ServeSettings) -> None:
    """Fixed ports, free before any child binds them: a one-line ConfigError otherwise."""
    wanted = []
    if settings.enable_api:
        wanted.append(("HTTP", "HTTP_PORT", settings.http_host, settings.http_port))
    if settings.enable_grpc:
        wanted.append(("gRPC", "GRPC_PORT", settings.grpc_host, settings.grpc_port))
    if settings.metrics_port is not None:
        raise ConfigError(
            "--processes cannot share METRICS_PORT between processes (each has its own "
            "metrics); scrape the HTTP port's /metrics, or run processes one by one"
        )
    for what, env, host, port in wanted:
        if port == 0:
            raise ConfigError(f"--processes needs a fixed {what} port ({env} is 0)")
        if not port_free(host, port):
            raise ConfigError(
                f"the {what} port {host}:{port} is in use (another runtime serve?); "
                f"stop what listens there or choose another with {env}"
            )


class _Supervisor:
    def __init__(self, argv: Sequence[str], env: dict[str, str], count: int, grace: float):
        self._argv = list(argv)
        self._env = env
        self._children = [_Child(slot) for slot in range(1, count + 1)]
        self._grace = grace
        self._stopping = False

    def on_signal(self, signum: int, _frame: FrameType | None) -> None:
        if not self._stopping:
            logger.info("%s: stopping %d processes", signal.Signals(signum).name, len(self))
        self._stopping = True

    def __len__(self) -> int:
        return len(self._children)

    def _start(self, child: _Child) -> None:
        child.process = subprocess.Popen(
            self._argv,
            env=self._env,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
            preexec_fn=_die_with_parent,
        )
        child.started = time.monotonic()
        logger.info("process %d/%d: pid %d", child.slot, len(self), child.process.pid)

    def run(self) -> int:
        for child in self._children:
            self._start(child)
        while not self._stopping:
            code = self._watch()
            if code is not None:
                self._stop_all()
                return code
            time.sleep(POLL_S)
        self._stop_all()
        logger.info("stopped")
        return 0

    def _watch(self) -> int | None:
        """Restart what exited; the exit code of the whole when it must give up."""
        now = time.monotonic()
        for child in self._children:
            if child.process is None:
                if now >= child.restart_at:
                    self._start(child)
                continue
            code = child.process.poll()
            if code is None:
                continue
            pid, child.process = child.process.pid, None
            if code == 2:
                logger.error(
                    "process %d (pid %d) exited 2: a configuration error (its output says "
                    "which); stopping",
                    child.slot,
                    pid,
                )
                return 2
            soon = now - child.started < STABLE_S
            child.failures = child.failures + 1 if soon else 1
            if soon and child.failures >= START_FAILURES:
                logger.error(
                    "process %d exited %d times in a row within %.0f s of starting (last "
                    "exit code %d); giving up: see its output above",
                    child.slot,
                    child.failures,
                    STABLE_S,
                    code,
                )
                return 1
            delay = min(FIRST_DELAY_S * 2 ** (child.failures - 1), MAX_DELAY_S)
            child.restart_at = now + delay
            logger.warning(
                "process %d (pid %d) exited with code %d; starting it again in %.1f s",
                child.slot,
                pid,
                code,
                delay,
            )
        return None

    def _stop_all(self) -> None:
        running = [c.process for c in self._children if c.process is not None]
        for process in running:
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + self._grace + KILL_MARGIN_S
        for process in running:
            try:
                process.wait(max(0.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                logger.warning("pid %d did not stop in time: killing it", process.pid)
                process.kill()
                process.wait()


def supervise(serve_args: Sequence[str], settings: ServeSettings, processes: int) -> int:
    """Run `processes` children of `runtime serve <serve_args>` until SIGTERM or SIGINT."""
    configure_logging(settings.log_level, settings.log_format)
    embedded: EmbeddedRedis | None = None
    lock: DataDirLock | None = None
    try:
        check_ports(settings)
        env = dict(os.environ, CHANNELKIT_REUSE_PORT="true")
        if settings.redis_url is None:
            lock = DataDirLock(settings.data_dir.resolve()).acquire()
            embedded = EmbeddedRedis(settings.data_dir.resolve()).start()
            env["REDIS_URL"] = embedded.url
            logger.warning(
                "no REDIS_URL: started an embedded Redis for the %d processes at %s",
                processes,
                embedded.how_to_connect(),
            )
    except ConfigError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    argv = [sys.executable, "-m", "runtime", "serve", *serve_args]
    supervisor = _Supervisor(argv, env, processes, settings.shutdown_timeout)
    previous = {
        signum: signal.signal(signum, supervisor.on_signal)
        for signum in (signal.SIGTERM, signal.SIGINT)
    }
    try:
        return supervisor.run()
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)
        if embedded is not None:
            embedded.stop()
        if lock is not None:
            lock.release()
