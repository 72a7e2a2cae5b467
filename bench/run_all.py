"""Run every benchmark, print one table, write docs/benchmarks.md.

    .venv/bin/python bench/run_all.py [--quick] [--out docs/benchmarks.md]

(`make bench`; `make bench QUICK=1` for --quick.) Each bench measures its figure against
its baseline in the same run and reports the ratio; see each script's docstring for
exactly what it measures. Take numbers on a quiet machine: every round waits (up to
10 s) for the CPUs to be mostly idle and reports how busy they were.
"""

from __future__ import annotations

import argparse
import datetime
import shlex
import sys
import time
import traceback
from collections.abc import Callable
from pathlib import Path

import benchlib
import cluster
import dashboard
import delivery_timing
import events
import grpc_enqueue
import http_enqueue
import idle_channels
import latency
import memory
import payload_formats
import processes
import resources_pool
import startup
import throughput
import vs_bullmq
import waiting_depth
from benchlib import Row, met_text, ratio_text

MODULES = {
    "bullmq": vs_bullmq,
    "throughput": throughput,
    "http": http_enqueue,
    "grpc": grpc_enqueue,
    "formats": payload_formats,
    "latency": latency,
    "memory": memory,
    "startup": startup,
    "timing": delivery_timing,
    "resources": resources_pool,
    "depth": waiting_depth,
    "dashboard": dashboard,
    "events": events,
    "idle": idle_channels,
    "processes": processes,
    "cluster": cluster,
}


def markdown(
    rows: list[Row], generate_table: str, command: str, elapsed: float, quick: bool
) -> str:
    info = benchlib.machine()
    packages = benchlib.versions()
    today = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC")
    lines = [
        "# Benchmarks",
        "",
        "Written by `make bench` (bench/run_all.py): do not edit the numbers by hand.",
        "Every figure is measured against its baseline in the same run and given as a ratio;",
        "A and B alternate over several rounds, figures are medians with (min-max).",
        "",
        f"- date: {today}" + (" (quick run: fewer jobs and rounds)" if quick else ""),
        f"- command: `{command}` ({elapsed / 60:.1f} min)",
        f"- machine: {info['nproc']} cores, {info['cpu']}, {info['memory']} RAM, "
        f"Linux {info['kernel']}",
        f"- Python {info['python']}, Redis server {info['redis server']}",
        "- packages: " + ", ".join(f"{name} {version}" for name, version in packages.items()),
        "",
    ]
    bullmq = [r for r in rows if r.bench == "bullmq"]
    if bullmq:
        lines += [
            "## Channelkit and BullMQ (bench/vs_bullmq.py)",
            "",
            "Same payload, same handler work, same Redis, alternated in every round;",
            "ratio = Channelkit / BullMQ (CPU: BullMQ / Channelkit), higher is better.",
            "",
            "| figure | Channelkit | BullMQ | ratio | goal | met |",
            "| --- | --- | --- | --- | --- | --- |",
        ]
        for r in bullmq:
            lines.append(
                f"| {r.case} | {r.value} | {r.baseline} | {ratio_text(r.ratio)} | {r.goal} "
                f"| {met_text(r.met)} |"
            )
        lines.append("")
    lines += [
        "## Results",
        "",
        "| bench | figure | value | baseline (same run) | ratio | goal | met |",
        "| --- | --- | --- | --- | --- | --- | --- |",
    ]
    for r in rows:
        if r.bench == "bullmq" and r.case != "SKIPPED":
            continue
        lines.append(
            f"| {r.bench} | {r.case} | {r.value} | {r.baseline} | {ratio_text(r.ratio)} "
            f"| {r.goal} | {met_text(r.met)} |"
        )
    goals = [r for r in rows if r.met is not None]
    lines += ["", "## Goals", ""]
    for r in goals:
        state = "met" if r.met else "NOT met"
        lines.append(f"- {r.bench}, {r.case}: goal {r.goal}; {ratio_text(r.ratio)}: **{state}**")
    lines += ["", "## Notes", ""]
    for r in rows:
        if r.note:
            lines.append(f"- {r.bench}, {r.case}: {r.note}")
    lines += ["", "## Generation (bench/generate.py)", "", "```", generate_table.strip(), "```"]
    lines += ["", "## What each bench measures", ""]
    for name, module in MODULES.items():
        doc = (module.__doc__ or "").strip()
        lines += [f"### {name} (bench/{Path(module.__file__ or '').name})", "", "```", doc, "```"]
        lines.append("")
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--out", default=str(benchlib.ROOT / "docs" / "benchmarks.md"))
    parser.add_argument(
        "--only", default="", help="comma list of benches to run: " + ",".join(MODULES)
    )
    args = parser.parse_args()
    command = "make bench" + (" QUICK=1" if args.quick else "")
    if args.only:
        command = shlex.join([".venv/bin/python", "bench/run_all.py", *sys.argv[1:]])
    wanted = [name for name in args.only.split(",") if name] or list(MODULES)
    began = time.perf_counter()
    rows: list[Row] = []
    generate_table = "(not run)"
    for name in wanted:
        print(f"== {name}", flush=True)
        started = time.perf_counter()
        try:
            if name == "startup":
                found, generate_table = startup.run(args.quick)
            else:
                runner: Callable[[bool], list[Row]] = MODULES[name].run
                found = runner(args.quick)
        except Exception as error:
            traceback.print_exc()
            found = [Row(name, "FAILED", f"{type(error).__name__}: {error}"[:200])]
        rows += found
        print(f"   ({time.perf_counter() - started:.0f} s)", flush=True)
    elapsed = time.perf_counter() - began
    print()
    benchlib.print_rows(rows)
    print()
    print(generate_table)
    Path(args.out).write_text(markdown(rows, generate_table, command, elapsed, args.quick))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
