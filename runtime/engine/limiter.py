"""The channel's rate limit as this process applies it: grant requests for the global
window, per-key windows for a keyed limiter, and the restamp that dates grants to the
starts they allowed. The windows themselves live in Redis (limit.lua), shared by every
process."""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import Sequence
from typing import Any

from pydantic import BaseModel
from redis.exceptions import RedisError

from runtime.engine.channel import Channel
from runtime.engine.scripts import ChannelScripts, RateLimit

__all__ = ["RateLimiter", "limiter_group"]


class RateLimiter:
    """Builds grant requests for one channel's limiter; None-limiter channels get none."""

    def __init__(self, channel: Channel[Any, Any], scripts: ChannelScripts) -> None:
        self._limiter = channel.limiter
        self._scripts = scripts
        # Grants are counted a little longer than the window: a job starts a moment after
        # its grant, and windows measured by start time must hold the limit too.
        duration = self._limiter.duration_ms if self._limiter else 0
        self.window_ms = duration + min(20, duration // 50)
        self._token_seed = uuid.uuid4().hex[:10]
        self._token_count = 0
        self._field = _field_name(channel)

    @property
    def keyed(self) -> bool:
        """Each value of a payload field has its own window."""
        return self._limiter is not None and self._limiter.key is not None

    def global_request(self) -> RateLimit | None:
        """The request for the channel's one window (None: no global limit)."""
        if self._limiter is None or self._limiter.key is not None:
            return None
        return RateLimit(None, self.window_ms, self._limiter.max, self._token())

    async def grant_by_key(self, payloads: Sequence[BaseModel]) -> list[tuple[bool, int]]:
        """For each payload in order: (granted, wait ms until its group's next grant).

        One grant call per group value in the batch.
        """
        assert self._limiter is not None
        groups: dict[str, list[int]] = {}
        for index, payload in enumerate(payloads):
            groups.setdefault(_group_of(payload, self._field), []).append(index)
        answers: list[tuple[bool, int]] = [(True, 0)] * len(payloads)
        for group, members in groups.items():
            request = RateLimit(group, self.window_ms, self._limiter.max, self._token())
            granted, wait_ms = await self._scripts.limit(request, len(members))
            for index in members[granted:]:
                answers[index] = (False, wait_ms)
        return answers

    async def restamp(self, request: RateLimit, granted: int, used: int) -> None:
        """Date a grant to now, once its jobs have entered their handlers.

        Windows are measured by start time, and a start lags its grant by the handlers
        entered before it on this loop (tens of ms on a cold or busy process): one loop
        turn runs the jobs just created into their handlers, then their grants are dated
        now. Should that fail, the grants keep their time (a smaller margin). Only needed
        once a window is over half full: below that, any start-time window spans grants of
        at most two half-full windows, which is within the limit.
        """
        if not granted or used * 2 <= request.max:
            return
        await asyncio.sleep(0)
        with contextlib.suppress(RedisError, OSError):
            await self._scripts.restamp(request, granted)

    def _token(self) -> str:
        self._token_count += 1
        return f"{self._token_seed}:{self._token_count}"


def limiter_group(channel: Channel[Any, Any], payload: BaseModel) -> str | None:
    """The keyed limiter's group of a payload (None: the channel has no keyed limiter)."""
    if channel.limiter is None or channel.limiter.key is None:
        return None
    return _group_of(payload, _field_name(channel))


def _group_of(payload: BaseModel, field: str) -> str:
    return str(getattr(payload, field, ""))


def _field_name(channel: Channel[Any, Any]) -> str:
    """The model attribute of the limiter's key: channels.yaml names the JSON property,
    which the model may have renamed (`from` becomes `from_` with an alias)."""
    key: str | None = channel.limiter.key if channel.limiter else None
    if key is None:
        return ""
    for name, field in channel.payload_model.model_fields.items():
        if key in (name, field.alias):
            return str(name)
    return key
