"""Keeps this process's claim on its jobs fresh, so no other process reclaims them as
stalled while they run (or wait for the rate limiter)."""

from __future__ import annotations

import logging
from collections.abc import Callable, Collection

from redis.exceptions import RedisError

from runtime.engine.loop import BackgroundLoop
from runtime.engine.scripts import ChannelScripts

__all__ = ["Heartbeat"]

logger = logging.getLogger("channelkit.worker")


class Heartbeat(BackgroundLoop):
    """Every `interval_s`, refreshes the idle time of the stream entries `owned()` names.

    Entries another process took over meanwhile (this one missed its stalled interval:
    paused, or its event loop blocked) are logged once and handed to `on_lost`, which
    stops counting them as owned: they may run twice, but only the new owner's run is
    recorded (finish.lua checks the claim).
    """

    def __init__(
        self,
        scripts: ChannelScripts,
        *,
        channel: str,
        consumer: str,
        interval_s: float,
        owned: Callable[[], Collection[str]],
        on_lost: Callable[[list[str]], None],
    ) -> None:
        super().__init__(f"heartbeat:{channel}")
        self._scripts = scripts
        self._channel = channel
        self._consumer = consumer
        self._interval_s = interval_s
        self._owned = owned
        self._on_lost = on_lost

    async def _run(self) -> None:
        # The first beat is one interval after the start, like every other.
        await self.sleep(self._interval_s)
        await super()._run()

    async def step(self) -> float:
        owned = list(self._owned())
        if not owned:
            return self._interval_s
        try:
            lost = await self._scripts.heartbeat(self._consumer, owned)
        except (RedisError, OSError) as failure:
            logger.warning("%s: heartbeat failed: %s", self._channel, failure)
            return self._interval_s
        if lost:
            self._on_lost(lost)
            logger.warning(
                "%s: %d job(s) of this process were taken over by another process "
                "(this one missed its stalled interval: paused, or its event loop blocked); "
                "they may run twice, and only the new owner's run is recorded",
                self._channel,
                len(lost),
                extra={"channel": self._channel, "stream_ids": lost},
            )
        return self._interval_s
