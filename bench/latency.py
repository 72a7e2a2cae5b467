"""Enqueue-to-start latency at a steady rate.

    .venv/bin/python bench/latency.py [--rate 500] [--seconds 10] [--rounds 3] [--quick]

A paced producer in this process enqueues one job at a time (job i at t0 + i/rate, the
payload's `sent_at` = time.time() just before the enqueue call) into an idle, already
running worker. The handler records time.time() - sent_at when it starts; the process
writes them at exit. Latency = start - enqueue time, p50 and p99 over all jobs.
Channelkit: `runtime serve` (ENABLE_API=false ENABLE_GRPC=false) with all guarantees
on (as bench/throughput.py), jobs enqueued with the generated `enqueue` (Client).
Baseline: raw taskiq-redis (bench/taskiq_worker.py), jobs kicked with `.kiq()`.
"""

from __future__ import annotations

import asyncio
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import benchlib
import taskiq_worker
from benchlib import Project, Row, Spread
from throughput import CHANNEL_BASE

CHANNEL = "lat"
CHANNELS = {
    CHANNEL: CHANNEL_BASE
    | {
        "handler": "benchapp.handlers:record_latency",
        "limiter": {"max": 1_000_000, "duration": "1s"},
    }
}


async def paced(send: Any, model: type[Any], rate: float, count: int) -> None:
    sample = benchlib.SAMPLE_PAYLOAD
    start = time.perf_counter()
    for index in range(count):
        delay = start + index / rate - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        await send(model.model_validate(sample | {"sent_at": time.time()}))


def warmup(rate: float) -> int:
    """Jobs sent (at the rate) and drained before measuring: the worker is up and warm.
    Their latencies are dropped."""
    return int(rate // 2)


def wait_drained(
    stream: str, group: str, timeout: float = 60.0, waiting: str | None = None
) -> None:
    """Until the group has acked every job and (Channelkit) none is left in `waiting`."""
    client = benchlib.sync_redis()
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline:
            groups: Any = client.xinfo_groups(stream) if client.exists(stream) else []
            info = groups[0] if groups else {}
            left = int(client.zcard(waiting)) if waiting is not None else 0
            if (
                groups
                and left == 0
                and int(info.get("pending") or 0) == 0
                and (client.xlen(stream) == 0 or info.get("lag") == 0)
            ):
                return
            time.sleep(0.05)
    finally:
        client.close()


def read_latencies(path: Path) -> list[float]:
    return [float(line) * 1000 for line in path.read_text().split()] if path.exists() else []


def run_channelkit(project: Project, rate: float, count: int, base: Path, tag: str) -> list[float]:
    from runtime.engine.client import Client

    prefix = benchlib.unique_prefix("lat")
    out = base / f"ck-{tag}.txt"
    proc = benchlib.serve(
        project.path,
        project.package,
        prefix,
        api=False,
        grpc=False,
        log=base / f"ck-{tag}.log",
        extra_env={"BENCH_LATENCY_OUT": str(out)},
    )
    stream = f"{prefix}:{{{CHANNEL}}}:stream"
    waiting = f"{prefix}:{{{CHANNEL}}}:waiting"
    try:
        with benchlib.stopping(proc):
            client = benchlib.sync_redis()
            benchlib.wait_group(client, stream, "channelkit", proc)
            client.close()

            async def produce() -> None:
                async with Client.from_url(benchlib.redis_url(), prefix=prefix) as ck:
                    send, model = (lambda p: ck.enqueue(CHANNEL, p)), project.model(CHANNEL)
                    await paced(send, model, rate, warmup(rate))
                    wait_drained(stream, "channelkit", waiting=waiting)
                    await paced(send, model, rate, count)

            asyncio.run(produce())
            wait_drained(stream, "channelkit", waiting=waiting)
    finally:
        benchlib.delete_prefix(prefix)
    return read_latencies(out)


def run_taskiq(project: Project, rate: float, count: int, base: Path, tag: str) -> list[float]:
    prefix = benchlib.unique_prefix("lat-taskiq")
    queue = f"{prefix}:stream"
    out = base / f"tq-{tag}.txt"
    model = project.model(CHANNEL)

    async def produce() -> None:
        broker = taskiq_worker.build_broker(benchlib.redis_url(), queue, "taskiq")
        task = taskiq_worker.register(broker, model, None)
        await broker.startup()
        proc = benchlib.spawn(
            [
                benchlib.PY,
                str(benchlib.BENCH / "taskiq_worker.py"),
                "--url",
                benchlib.redis_url(),
                "--queue",
                queue,
                "--project",
                str(project.path),
                "--package",
                project.package,
                "--channel",
                CHANNEL,
                "--latency-out",
                str(out),
            ],
            cwd=project.path,
            env={},
            log=base / f"tq-{tag}.log",
        )
        try:
            await paced(task.kiq, model, rate, warmup(rate))
            wait_drained(queue, "taskiq")
            await paced(task.kiq, model, rate, count)
            wait_drained(queue, "taskiq")
        finally:
            proc.stop()
            await broker.shutdown()

    try:
        asyncio.run(produce())
    finally:
        benchlib.delete_prefix(prefix)
    return read_latencies(out)


def run(
    quick: bool = False,
    rounds: int | None = None,
    seconds: float | None = None,
    rate: float = 500.0,
) -> list[Row]:
    rounds = rounds or (1 if quick else 3)
    seconds = seconds or (4.0 if quick else 10.0)
    count = int(rate * seconds)
    results: dict[str, list[tuple[float, float]]] = {"channelkit": [], "taskiq": []}
    with tempfile.TemporaryDirectory(prefix="bench-lat-") as scratch:
        base = Path(scratch)
        project = benchlib.make_project(base, "bench_lat", CHANNELS)
        for index in range(rounds):
            busy = benchlib.wait_quiet()
            order = ["channelkit", "taskiq"]
            for case in order if index % 2 == 0 else order[::-1]:
                runner = run_channelkit if case == "channelkit" else run_taskiq
                values = runner(project, rate, count, base, str(index))[warmup(rate) :]
                if len(values) < count:
                    raise RuntimeError(f"{case}: {len(values)} of {count} latencies recorded")
                p50, p99 = benchlib.percentile(values, 50), benchlib.percentile(values, 99)
                results[case].append((p50, p99))
                print(
                    f"  latency round {index + 1} {case}: p50 {p50:.2f} ms p99 {p99:.2f} ms "
                    f"(busy before round {busy:.0%})",
                    flush=True,
                )
    ours, theirs = results["channelkit"], results["taskiq"]
    note = f"{rate:.0f} jobs/s for {seconds:.0f} s, median of {rounds} rounds (min-max)"
    out = []
    for position, label in ((0, "p50"), (1, "p99")):
        mine = Spread.of([r[position] for r in ours])
        base_spread = Spread.of([r[position] for r in theirs])
        ratio = statistics.median(
            b[position] / a[position] for a, b in zip(ours, theirs, strict=True)
        )
        out.append(
            Row(
                "latency",
                f"enqueue-to-start {label} (ms)",
                mine.text(2),
                f"taskiq-redis {base_spread.text(2)}",
                ratio,
                "",
                None,
                note + "; ratio = baseline / ours (higher is better)",
            )
        )
    return out


def main() -> None:
    parser = benchlib.arguments(__doc__)
    parser.add_argument("--seconds", type=float)
    parser.add_argument("--rate", type=float, default=500.0)
    args = parser.parse_args()
    result = run(args.quick, args.rounds, args.seconds, args.rate)
    benchlib.report(result, args.json)


if __name__ == "__main__":
    main()
