"""What the overview shows of each channel, read in one pipeline of O(1) and O(log N)
commands however many jobs there are.

- counts per state: `Client.counts_many` (XLEN, XPENDING summary, ZCARD);
- jobs/s in and out: the stream's `entries-added` and the consumer group's `entries-read`
  (Redis 7's XINFO counters of every entry ever added / delivered: retries and due
  delayed jobs included), sampled at each poll; a rate is the change between this poll
  and one at least `RATE_WINDOW_S` older, kept in this process (so the first poll of a
  process shows none yet). Redis 6.2 has no such counters: no rates there;
- failure rate: of the jobs that finished in the last `FAILURE_WINDOW_MS`, the share that
  failed (ZCOUNT of the failed and completed sets by finish time; retention that removes
  finished jobs sooner makes it read low);
- limiter window use: starts granted in the current window against the channel's max.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from runtime.engine.channel import Channel
from runtime.engine.client import Client
from runtime.engine.clock import now_ms, text
from runtime.engine.jobs import ChannelCounts
from runtime.engine.keys import CONSUMER_GROUP

__all__ = ["FAILURE_WINDOW_MS", "ChannelStats", "RateSampler", "StatsCache", "read_stats"]

FAILURE_WINDOW_MS = 5 * 60 * 1000
RATE_WINDOW_S = 1.0
_KEEP_S = 30.0


@dataclass(frozen=True, slots=True)
class ChannelStats:
    channel: str
    description: str
    counts: ChannelCounts
    in_per_s: float | None  # None: not known yet (or Redis without the counters)
    out_per_s: float | None
    finished_recently: int
    failed_recently: int
    limiter_max: int | None
    limiter_used: int
    paused: bool | None = None  # None: not known (Redis did not answer)

    @property
    def failure_rate(self) -> float | None:
        if not self.finished_recently:
            return None
        return self.failed_recently / self.finished_recently

    @property
    def limiter_share(self) -> float | None:
        if not self.limiter_max:
            return None
        return min(1.0, self.limiter_used / self.limiter_max)


class RateSampler:
    """Recent (time, added, read) samples per channel, to turn counters into rates."""

    def __init__(self) -> None:
        self._samples: dict[str, deque[tuple[float, int, int]]] = {}

    def rates(self, channel: str, added: int | None, read: int | None) -> tuple[float | None, ...]:
        if added is None or read is None:
            return None, None
        now = time.monotonic()
        samples = self._samples.setdefault(channel, deque(maxlen=64))
        while samples and now - samples[0][0] > _KEEP_S:
            samples.popleft()
        base = next((s for s in reversed(samples) if now - s[0] >= RATE_WINDOW_S), None)
        samples.append((now, added, read))
        if base is None:
            return None, None
        elapsed = now - base[0]
        return max(0, added - base[1]) / elapsed, max(0, read - base[2]) / elapsed


def _counter(info: Any, name: str) -> int | None:
    if not isinstance(info, dict):
        return None
    value = info.get(name, info.get(name.encode()))
    return int(value) if isinstance(value, int) else None


def _group_read(groups: Any) -> int | None:
    if not isinstance(groups, list):
        return 0 if isinstance(groups, Exception) else None
    for group in groups:
        if text(group.get("name", b"")) == CONSUMER_GROUP:
            return _counter(group, "entries-read") or 0
    return 0


async def read_stats(
    client: Client, channels: Sequence[Channel[Any, Any]], sampler: RateSampler
) -> list[ChannelStats]:
    names = [channel.name for channel in channels]
    counts = await client.counts_many(names)
    since = now_ms() - FAILURE_WINDOW_MS
    async with client.redis.pipeline(transaction=False) as pipe:
        for name in names:
            keys = client.keys(name)
            pipe.xinfo_stream(keys.stream)
            pipe.xinfo_groups(keys.stream)
            pipe.zcount(keys.completed, since, "+inf")
            pipe.zcount(keys.failed, since, "+inf")
            pipe.exists(keys.paused)
        # No stream yet (nothing enqueued) makes XINFO an error.
        replies = await pipe.execute(raise_on_error=False)
    found = []
    for index, (channel, count) in enumerate(zip(channels, counts, strict=True)):
        stream, groups, completed, failed, paused = replies[index * 5 : index * 5 + 5]
        if isinstance(stream, Exception):
            added: int | None = 0
        else:
            added = _counter(stream, "entries-added")
        rate_in, rate_out = sampler.rates(channel.name, added, _group_read(groups))
        limiter = count.limiter or {}
        failed_n = int(failed) if isinstance(failed, int) else 0
        completed_n = int(completed) if isinstance(completed, int) else 0
        found.append(
            ChannelStats(
                channel=channel.name,
                description=channel.description,
                counts=count,
                in_per_s=rate_in,
                out_per_s=rate_out,
                finished_recently=failed_n + completed_n,
                failed_recently=failed_n,
                limiter_max=channel.limiter.max if channel.limiter else None,
                limiter_used=int(limiter.get("granted_in_window", 0)),
                paused=bool(paused) if isinstance(paused, int) else None,
            )
        )
    return found


class StatsCache:
    """The last stats read, shared for `ttl_s` by every viewer of this process: however
    many browsers poll, the process reads Redis for the overview at most once per `ttl_s`
    (requests that arrive during a read wait for it instead of starting their own)."""

    def __init__(self, client: Client, sampler: RateSampler, ttl_s: float = 1.0) -> None:
        self.client = client
        self.sampler = sampler
        self.ttl_s = ttl_s
        self._lock = asyncio.Lock()
        self._found: dict[tuple[str, ...], tuple[float, list[ChannelStats]]] = {}

    async def read(self, channels: Sequence[Channel[Any, Any]]) -> list[ChannelStats]:
        names = tuple(channel.name for channel in channels)
        async with self._lock:
            cached = self._found.get(names)
            if cached is not None and time.monotonic() - cached[0] < self.ttl_s:
                return cached[1]
            found = await read_stats(self.client, channels, self.sampler)
            self._found[names] = (time.monotonic(), found)
            return found

    def forget(self) -> None:
        """Drop every cached read: an action taken here (pause, retry all...) shows on the
        very next page of this process instead of up to `ttl_s` later."""
        self._found.clear()
