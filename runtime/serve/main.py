"""`runtime serve`: run the Service until SIGTERM or SIGINT.

The first signal stops intake and lets running jobs finish (up to the shutdown timeout);
a second one exits at once, leaving unfinished jobs unacknowledged for other processes.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import signal
import sys
import time
from collections.abc import Coroutine
from typing import Any

from runtime.errors import ChannelkitError, ResourcesError
from runtime.serve.logs import configure_logging
from runtime.serve.service import Service, load_generated_app
from runtime.serve.settings import settings_from

__all__ = ["serve"]

logger = logging.getLogger("channelkit.serve")

DUPLICATE_SIGNAL_S = 0.5  # a repeat within this is the same request, not a second one


async def _run(service: Service) -> None:
    loop = asyncio.get_running_loop()
    stopping = asyncio.Event()

    first_signal_at = 0.0

    def on_signal(signum: int) -> None:
        nonlocal first_signal_at
        if stopping.is_set():
            if time.monotonic() - first_signal_at < DUPLICATE_SIGNAL_S:
                # One stop request delivered twice: `make run` or `timeout` pass a signal
                # to the child and to its whole process group.
                return
            logger.warning("second %s: exiting now", signal.Signals(signum).name)
            if service.workers is not None:
                service.workers.abandon()
            logging.shutdown()
            os._exit(1)
        logger.info(
            "%s: stopping; running jobs get %.0f s",
            signal.Signals(signum).name,
            service.settings.shutdown_timeout,
        )
        first_signal_at = time.monotonic()
        stopping.set()

    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, on_signal, signum)
    try:
        await service.start()
        await stopping.wait()
    finally:
        await service.stop()
    logger.info("stopped")


def _run_loop(main: Coroutine[Any, Any, None]) -> None:
    """uvloop where installed: ~14% more jobs per second than the default loop (DESIGN.md)."""
    try:
        import uvloop
    except ImportError:  # not a dependency on Windows, which uvloop does not build for
        asyncio.run(main)
    else:
        uvloop.run(main)


def serve(args: argparse.Namespace) -> int:
    try:
        settings = settings_from(args)
        configure_logging(settings.log_level, settings.log_format)
        service = Service(settings, load_generated_app(settings.app))
    except ChannelkitError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    try:
        _run_loop(_run(service))
    except ResourcesError as error:
        # The app's own code failed, not its configuration: exit 1, as a crash would.
        logger.error("%s; not serving", error, exc_info=error.__cause__)
        return 1
    except ChannelkitError as error:
        logger.error("%s", error)
        return 2
    return 0
