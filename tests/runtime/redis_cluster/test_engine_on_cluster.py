"""Every Lua script and the Client's reads, on a Redis Cluster: the engine's script tests
(tests/runtime/engine/test_scripts.py), listing, collaborator and job-control tests
(priorities, pause, cancel, bulk, counts) and job events (written in the scripts,
read, resumed, fanned out) run again here, where `redis` is a cluster
client (see conftest.py). A script that named a key outside its channel's slot would fail
here with CROSSSLOT."""

from __future__ import annotations

from tests.runtime.engine.conftest import client, group, keys, no_idle_wake, parts_for, scripts
from tests.runtime.engine.test_client_control import *  # noqa: F403
from tests.runtime.engine.test_client_listing import *  # noqa: F403
from tests.runtime.engine.test_collaborators import *  # noqa: F403
from tests.runtime.engine.test_events import *  # noqa: F403
from tests.runtime.engine.test_scripts import *  # noqa: F403

__all__ = ["client", "group", "keys", "no_idle_wake", "parts_for", "scripts"]
