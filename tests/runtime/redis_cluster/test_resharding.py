"""A channel's slot migrated to another primary while its jobs are enqueued and run.

The cluster is the test's own (3 primaries, no replicas); two `runtime serve` processes of
the probe project work the `fast` channel on it, while a Client enqueues jobs at a steady
pace (an id refused with RedisUnavailable is sent again: enqueue is idempotent by id). The
handlers record each run on the session's cluster (`probe`), out of the way.

The migration is Redis Cluster's own procedure, done by hand so that it lasts while jobs
flow (what `redis-cli --cluster reshard` does for each slot): the target marks the slot
IMPORTING, the source MIGRATING, the slot's keys move a few at a time (MIGRATE), and
CLUSTER SETSLOT NODE gives the slot to the target on every primary. Meanwhile a command
for a key already moved is answered ASK, a script whose declared keys are split between
the two nodes TRYAGAIN; afterwards every command for the slot is answered MOVED by the
source until redis-py has learnt the new owner.

Asserted: every job enqueued ran exactly once (none lost, none twice), the slot's keys
all live on the target, the two nodes answered redirections (INFO errorstats: ASK or
TRYAGAIN during the move, MOVED after it), and the workers took jobs enqueued after it.
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import pytest
from pydantic import BaseModel
from redis import Redis as SyncRedis

from runtime.engine.client import Client
from runtime.errors import RedisUnavailable
from tests.redis_topologies import RedisClusterNodes, RedisNode
from tests.runtime.conftest import Probe, ServeFactory, events_of

pytestmark = [pytest.mark.timeout(60)]

JOBS = 400
PACE_S = 0.01  # between two enqueues: the run lasts a few seconds, the move in the middle
MOVE_AT = JOBS // 3  # jobs enqueued before the migration starts
MIGRATE_BATCH = 5  # keys per MIGRATE: many small steps, jobs running between them
MIGRATE_PAUSE_S = 0.02


class Job(BaseModel):
    id: str


def _node_id(node: RedisNode) -> str:
    with node.client() as client:
        return str(client.execute_command("CLUSTER MYID").decode())


def _migrate_slot(nodes: RedisClusterNodes, slot: int, source: RedisNode, target: RedisNode) -> int:
    """Move `slot` from `source` to `target` the way redis-cli's reshard does; the number
    of keys moved."""
    source_id, target_id = _node_id(source), _node_id(target)
    moved = 0
    with source.client() as src, target.client() as dst:
        dst.execute_command("CLUSTER SETSLOT", slot, "IMPORTING", source_id)
        src.execute_command("CLUSTER SETSLOT", slot, "MIGRATING", target_id)
        while keys := src.execute_command("CLUSTER GETKEYSINSLOT", slot, MIGRATE_BATCH):
            src.execute_command("MIGRATE", "127.0.0.1", target.port, "", 0, 5000, "KEYS", *keys)
            moved += len(keys)
            time.sleep(MIGRATE_PAUSE_S)
        # The target first, then the source, then the others (as redis-cli does).
        for node in [target, source, *(n for n in nodes.primaries() if n not in (target, source))]:
            with node.client() as client:
                client.execute_command("CLUSTER SETSLOT", slot, "NODE", target_id)
    return moved


def _redirections(*nodes: RedisNode) -> dict[str, int]:
    """ASK, MOVED and TRYAGAIN answers these nodes gave (INFO errorstats)."""
    found = {"ASK": 0, "MOVED": 0, "TRYAGAIN": 0}
    for node in nodes:
        with node.client() as client:
            stats = client.info("errorstats")
        for name in found:
            found[name] += int(stats.get(f"errorstat_{name}", {}).get("count", 0))
    return found


def _keys_in_slot(node: RedisNode, slot: int) -> int:
    with node.client() as client:
        return int(client.execute_command("CLUSTER COUNTKEYSINSLOT", slot))


async def test_jobs_run_once_each_while_their_slot_moves_to_another_primary(
    serve: ServeFactory, probe: Probe, key_prefix: str, tmp_path: Path
) -> None:
    nodes = RedisClusterNodes(tmp_path / "cluster", primaries=3, replicas=0).start()
    try:
        await asyncio.gather(*(serve({"REDIS_URL": nodes.url}) for _ in range(2)))
        client = Client.from_url(nodes.url, prefix=key_prefix)
        stream = client.keys("fast").stream
        source = nodes.node_of(stream)
        target = next(node for node in nodes.primaries() if node is not source)
        with SyncRedis(port=source.port) as admin:
            slot = int(admin.cluster("KEYSLOT", stream))
        refused = 0
        moved_at: dict[str, float] = {}
        move_now = asyncio.Event()
        ids = [f"j{n:04d}" for n in range(JOBS)]

        async def enqueue_all() -> None:
            nonlocal refused
            for n, job_id in enumerate(ids):
                if n == MOVE_AT:
                    move_now.set()
                while True:
                    try:
                        await client.enqueue("fast", Job(id=job_id), job_id=job_id)
                        break
                    except RedisUnavailable:
                        refused += 1
                        await asyncio.sleep(0.05)
                await asyncio.sleep(PACE_S)

        async def move() -> int:
            await move_now.wait()
            began = time.monotonic()
            keys = await asyncio.to_thread(_migrate_slot, nodes, slot, source, target)
            moved_at["seconds"] = time.monotonic() - began
            return keys

        began = time.monotonic()
        try:
            _, keys_moved = await asyncio.gather(enqueue_all(), move())
            enqueued_in = time.monotonic() - began

            def all_ran(events: list[str]) -> bool:
                return len({job for job, _ in events_of(events, "fast")}) >= JOBS

            events = await probe.wait_for(all_ran, within=30)
        finally:
            await client.close()
        drained_in = time.monotonic() - began
        redirections = _redirections(source, target)
        runs = events_of(events, "fast")
        ran = [job for job, _ in runs]
        twice = sorted({job for job in ran if ran.count(job) > 1})
        after = {job for job in ran if int(job[1:]) >= MOVE_AT}
        print(
            f"\nresharding: slot {slot} of 'fast' moved {source.address} -> {target.address} "
            f"({keys_moved} keys in {moved_at['seconds']:.2f} s) while {JOBS} jobs were "
            f"enqueued over {enqueued_in:.1f} s ({refused} refused and sent again) and run by "
            f"2 processes ({len({pid for _, pid in runs})} ran some); all ran after "
            f"{drained_in:.1f} s; twice: {len(twice)}; redirections answered {redirections}"
        )
        assert set(ran) == set(ids), sorted(set(ids) - set(ran))[:20]
        assert not twice, twice[:20]
        assert after, "no job enqueued after the move ran"
        # The clients met the migration (ASK or TRYAGAIN) and its end (MOVED), and went on.
        assert redirections["ASK"] + redirections["TRYAGAIN"] > 0, redirections
        assert redirections["MOVED"] > 0, redirections
        assert nodes.node_of(stream) is target
        assert _keys_in_slot(source, slot) == 0
        assert _keys_in_slot(target, slot) > 0
    finally:
        nodes.stop()
