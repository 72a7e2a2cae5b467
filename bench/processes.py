"""`runtime serve --processes 2` against one process: drain and HTTP enqueue scaling.

    .venv/bin/python bench/processes.py [--jobs 20000] [--rounds 3] [--seconds 5] [--quick]

Drain: the throughput bench's method (bench/throughput.py `watch`) on its "all
guarantees" no-op channel, N jobs pre-enqueued, then `runtime serve` with ENABLE_API and
ENABLE_GRPC off, once with `--processes 1` and once with `--processes 2`.
HTTP: `POST /channels/notify/jobs` of the HTTP bench (bench/http_enqueue.py `load`: 32
keep-alive connections from bench/loadgen.py in its own process), workers and gRPC off,
against `--processes 1` and `--processes 2` on the same port settings.
The order alternates per round; ratio = 2 processes / 1 process, median of the rounds.
On a 2-core machine the load generator and Redis share the cores with the servers, so
the ratio shows what a second process buys here, not what it buys on a bigger machine.
"""

from __future__ import annotations

import asyncio
import json
import statistics
import tempfile
from pathlib import Path
from typing import Any

import benchlib
import throughput
from benchlib import Row, Spread
from http_enqueue import CHANNEL as HTTP_CHANNEL
from http_enqueue import CHANNELS as HTTP_CHANNELS
from http_enqueue import load


def drain(project: benchlib.Project, items: list[Any], processes: int, log: Path) -> float:
    prefix = benchlib.unique_prefix(f"proc{processes}")
    try:
        asyncio.run(throughput.enqueue_channelkit(prefix, "full", items))
        proc = benchlib.serve(
            project.path,
            project.package,
            prefix,
            api=False,
            grpc=False,
            worker_channels="full",
            log=log,
            args=["--processes", str(processes)],
        )
        with benchlib.stopping(proc):
            stream = f"{prefix}:{{full}}:stream"
            return throughput.watch(stream, throughput.GROUP, len(items), proc.pid, proc).jobs_per_s
    finally:
        benchlib.delete_prefix(prefix)


def http(project: benchlib.Project, body: Path, processes: int, seconds: float, log: Path) -> float:
    prefix = benchlib.unique_prefix(f"proc{processes}")
    try:
        proc = benchlib.serve(
            project.path,
            project.package,
            prefix,
            grpc=False,
            workers=False,
            log=log,
            args=["--processes", str(processes)],
        )
        with benchlib.stopping(proc):
            benchlib.http_ready(proc.ports["http"], proc=proc)
            path = f"/channels/{HTTP_CHANNEL}/jobs"
            load("http", proc.ports["http"], body, 1.0, path=path)  # every child warm
            return float(load("http", proc.ports["http"], body, seconds, path=path)["rps"])
    finally:
        benchlib.delete_prefix(prefix)


def run(
    quick: bool = False,
    jobs: int | None = None,
    rounds: int | None = None,
    seconds: float | None = None,
) -> list[Row]:
    jobs = jobs or (5000 if quick else 20000)
    rounds = rounds or (1 if quick else 3)
    seconds = seconds or (2.0 if quick else 5.0)
    drains: dict[int, list[float]] = {1: [], 2: []}
    posts: dict[int, list[float]] = {1: [], 2: []}
    with tempfile.TemporaryDirectory(prefix="bench-proc-") as scratch:
        base = Path(scratch)
        project = throughput.build_project(base)
        items = throughput.payloads(project.model("full"), jobs)
        http_project = benchlib.make_project(base, "bench_proc_http", HTTP_CHANNELS)
        body = base / "one.json"
        body.write_text(json.dumps(benchlib.SAMPLE_PAYLOAD))
        for index in range(rounds):
            busy = benchlib.wait_quiet()
            for processes in (1, 2) if index % 2 == 0 else (2, 1):
                rate = drain(project, items, processes, base / f"drain-{processes}-{index}.log")
                drains[processes].append(rate)
                rps = http(http_project, body, processes, seconds, base / f"http-{index}.log")
                posts[processes].append(rps)
                print(
                    f"  processes round {index + 1} x{processes}: drain {rate:,.0f} jobs/s, "
                    f"POST {rps:,.0f} req/s (busy before round {busy:.0%})",
                    flush=True,
                )
    note = f"median of {rounds} rounds (min-max); ratio per round"
    return [
        Row(
            "processes",
            f"drain {jobs:,} no-op jobs, all guarantees, --processes 2 (jobs/s)",
            Spread.of(drains[2]).text(),
            f"--processes 1 {Spread.of(drains[1]).text()}",
            statistics.median(a / b for a, b in zip(drains[2], drains[1], strict=True)),
            "",
            None,
            note,
        ),
        Row(
            "processes",
            "POST /jobs, one job a request, --processes 2 (req/s)",
            Spread.of(posts[2]).text(),
            f"--processes 1 {Spread.of(posts[1]).text()}",
            statistics.median(a / b for a, b in zip(posts[2], posts[1], strict=True)),
            "",
            None,
            note + "; 32 connections",
        ),
    ]


def main() -> None:
    parser = benchlib.arguments(__doc__)
    parser.add_argument("--jobs", type=int)
    parser.add_argument("--seconds", type=float)
    args = parser.parse_args()
    result = run(args.quick, args.jobs, args.rounds, args.seconds)
    benchlib.report(result, args.json)


if __name__ == "__main__":
    main()
