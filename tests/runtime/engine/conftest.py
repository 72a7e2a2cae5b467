"""Fixtures of the engine's unit tests: one channel's keys and scripts on the test's
key prefix (the `redis` fixture deletes that prefix's keys afterwards)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest
from redis.asyncio import Redis

from runtime.engine import reader as reader_module
from runtime.engine.channel import Channel
from runtime.engine.client import Client
from runtime.engine.keys import ChannelKeys
from runtime.engine.scripts import ChannelScripts, ScriptSet
from tests.runtime.engine.support import CHANNEL, Parts, PartsFor, build_parts, create_group


@pytest.fixture
def keys(key_prefix: str) -> ChannelKeys:
    return ChannelKeys(key_prefix, CHANNEL)


@pytest.fixture
def scripts(redis: Redis, keys: ChannelKeys) -> ChannelScripts:
    return ChannelScripts(ScriptSet(redis), keys)


@pytest.fixture
def client(redis: Redis, key_prefix: str) -> Client:
    return Client(redis, prefix=key_prefix)  # the redis fixture closes the connection


@pytest.fixture
def no_idle_wake(monkeypatch: pytest.MonkeyPatch) -> None:
    """An idle reader sleeps until the channel's marker wakes it (or a minute passes): in
    a test, what wakes it is the marker, never its periodic look (IDLE_WAKE_S). Stop such
    readers with `support.stop_awake`."""
    monkeypatch.setattr(reader_module, "IDLE_WAKE_S", 60.0)


@pytest.fixture
async def group(redis: Redis, keys: ChannelKeys) -> None:
    """The channel's consumer group (and its stream)."""
    await create_group(redis, keys)


@pytest.fixture
async def parts_for(scripts: ChannelScripts) -> AsyncIterator[PartsFor]:
    """Builds a channel's recorder, runner, limiter and launcher (see `Parts`); stops
    them all at the end of the test."""
    built: list[Parts] = []

    def build(channel: Channel[Any, Any], consumer: str = "worker") -> Parts:
        parts = build_parts(scripts, channel, consumer)
        built.append(parts)
        return parts

    yield build
    for parts in built:
        await parts.stop()
