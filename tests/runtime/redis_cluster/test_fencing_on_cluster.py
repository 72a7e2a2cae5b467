"""Claim fencing (tests/runtime/engine/test_fencing.py) on a Redis Cluster."""

from __future__ import annotations

from tests.runtime.engine.conftest import client, group, keys, parts_for, scripts
from tests.runtime.engine.test_fencing import *  # noqa: F403

__all__ = ["client", "group", "keys", "parts_for", "scripts"]
