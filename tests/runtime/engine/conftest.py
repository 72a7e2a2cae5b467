"""Fixtures of the engine's unit tests: one channel's keys and scripts on the test's
key prefix (the `redis` fixture deletes that prefix's keys afterwards)."""

from __future__ import annotations

import pytest
from redis.asyncio import Redis

from runtime.engine.client import Client
from runtime.engine.keys import ChannelKeys
from runtime.engine.scripts import ChannelScripts, ScriptSet
from tests.runtime.engine.support import CHANNEL, create_group


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
async def group(redis: Redis, keys: ChannelKeys) -> None:
    """The channel's consumer group (and its stream)."""
    await create_group(redis, keys)
