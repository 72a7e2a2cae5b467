"""Memory: one process serving the four reference channels vs the five-process layout.

    .venv/bin/python bench/memory.py [--rounds 2] [--jobs 5000] [--quick]

The repo's own app (cwd = the repo, app `generated`), LOG_LEVEL=WARNING (the reference
handlers only log when no provider is configured). RSS = VmRSS from /proc/<pid>/status,
summed over the layout's processes.
  one process:  `runtime serve` with everything on
  old layout:   four workers (ENABLE_API=false ENABLE_GRPC=false WORKER_CHANNELS=<one>)
                plus one API process (ENABLE_WORKERS=false)
Idle: every process up (HTTP ready, workers' groups created), 2 s later. Under load: N
jobs of each channel POSTed through the HTTP batch route (100 a request) to the API
process while the workers run them (at the channels' own rate limits); the figure is
the highest summed RSS sampled every 100 ms from the first request until 3 s after the
last. Goal: one process <= 0.4x the RSS of the five-process layout.
"""

from __future__ import annotations

import statistics
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import benchlib
import httpx
from benchlib import Row, Spread

CHANNELS = ("email", "sms", "push", "whatsapp")
PAYLOADS: dict[str, dict[str, Any]] = {
    "email": {
        "to": [{"email": "ada@example.com", "name": "Ada"}],
        "subject": "Your receipt",
        "content": {"type": "inline", "text": "Thanks for your order #1234."},
        "metadata": {"order": "1234"},
    },
    "sms": {"to": "+14155550100", "body": "Your code is 123456", "metadata": {"user": "u-1"}},
    "push": {"device_tokens": ["tok-0123456789abcdef"], "title": "Shipped", "body": "On its way"},
    "whatsapp": {
        "to": "+14155550100",
        "template": {"name": "order_shipped", "language": "en", "parameters": [{"text": "1234"}]},
    },
}


def start_layout(layout: str, prefix: str, base: Path) -> tuple[list[benchlib.Proc], int]:
    """The processes of a layout, all ready; returns them and the API's HTTP port."""
    root = benchlib.ROOT
    if layout == "one":
        proc = benchlib.serve(root, "generated", prefix, log=base / "one.log")
        procs, api = [proc], proc
    else:
        api = benchlib.serve(root, "generated", prefix, workers=False, log=base / "api.log")
        procs = [api] + [
            benchlib.serve(
                root,
                "generated",
                prefix,
                api=False,
                grpc=False,
                worker_channels=channel,
                log=base / f"{channel}.log",
            )
            for channel in CHANNELS
        ]
    benchlib.http_ready(api.ports["http"], proc=api)
    client = benchlib.sync_redis()
    for channel in CHANNELS:
        owner = procs[0] if layout == "one" else procs[1 + CHANNELS.index(channel)]
        benchlib.wait_group(client, f"{prefix}:{{{channel}}}:stream", "channelkit", owner)
    client.close()
    return procs, api.ports["http"]


def total_rss_kb(procs: list[benchlib.Proc]) -> int:
    return sum(benchlib.rss_kb(proc.pid) for proc in procs)


def measure(layout: str, jobs: int, base: Path) -> tuple[int, int]:
    """(idle RSS kB, peak RSS kB under load), summed over the layout's processes."""
    prefix = benchlib.unique_prefix(f"mem-{layout}")
    try:
        procs, port = start_layout(layout, prefix, base)
        with benchlib.stopping(*procs):
            time.sleep(2.0)
            idle = total_rss_kb(procs)
            peak = idle
            done = threading.Event()

            def sample() -> None:
                nonlocal peak
                while not done.is_set():
                    peak = max(peak, total_rss_kb(procs))
                    time.sleep(0.1)

            sampler = threading.Thread(target=sample)
            sampler.start()
            try:
                with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=60) as http:
                    for _ in range(jobs // 100):
                        for channel in CHANNELS:
                            response = http.post(
                                f"/channels/{channel}/jobs/batch", json=[PAYLOADS[channel]] * 100
                            )
                            response.raise_for_status()
                time.sleep(3.0)
            finally:
                done.set()
                sampler.join()
            return idle, peak
    finally:
        benchlib.delete_prefix(prefix)


def run(quick: bool = False, rounds: int | None = None, jobs: int | None = None) -> list[Row]:
    rounds = rounds or (1 if quick else 2)
    jobs = jobs or (1000 if quick else 5000)
    results: dict[str, list[tuple[int, int]]] = {"one": [], "five": []}
    with tempfile.TemporaryDirectory(prefix="bench-mem-") as scratch:
        for index in range(rounds):
            busy = benchlib.wait_quiet()
            order = ["one", "five"]
            for layout in order if index % 2 == 0 else order[::-1]:
                idle, peak = measure(layout, jobs, Path(scratch))
                results[layout].append((idle, peak))
                print(
                    f"  memory round {index + 1} {layout}: idle {idle / 1024:.0f} MiB, "
                    f"under load {peak / 1024:.0f} MiB (busy before round {busy:.0%})",
                    flush=True,
                )
    out = []
    for position, label in ((0, "idle"), (1, f"under load ({jobs:,} jobs per channel)")):
        mine = Spread.of([r[position] / 1024 for r in results["one"]])
        theirs = Spread.of([r[position] / 1024 for r in results["five"]])
        ratio = statistics.median(
            a[position] / b[position] for a, b in zip(results["one"], results["five"], strict=True)
        )
        out.append(
            Row(
                "memory",
                f"RSS, one process, 4 channels, {label} (MiB)",
                mine.text(),
                f"4 workers + 1 API process {theirs.text()}",
                ratio,
                "<= 0.4x five processes",
                ratio <= 0.4,
                f"median of {rounds} rounds (min-max)",
            )
        )
    return out


def main() -> None:
    parser = benchlib.arguments(__doc__)
    parser.add_argument("--jobs", type=int)
    args = parser.parse_args()
    result = run(args.quick, args.rounds, args.jobs)
    benchlib.report(result, args.json)


if __name__ == "__main__":
    main()
