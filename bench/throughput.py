"""Drain throughput: N no-op jobs pre-enqueued into one channel, then one worker process.

    .venv/bin/python bench/throughput.py [--jobs 20000] [--rounds 3] [--quick]

What is measured: the bench polls Redis every 2 ms (XLEN and XINFO GROUPS of the
stream, and for Channelkit ZCARD of the channel's waiting set). The clock starts at the
first poll that sees the consumer group has read a job (entries-read > 0 or pending > 0)
and stops at the first poll that sees every job acknowledged (pending = 0 and nothing
left unread: for Channelkit, which deletes finished entries, an empty waiting set and
XLEN = 0; for taskiq lag = 0). jobs/s = N / that time. Worker CPU per
job = the worker process's utime + stime (/proc/<pid>/stat) between those two polls / N.
Process start-up and imports are outside both figures.

Cases, each its own `runtime serve` (ENABLE_API=false ENABLE_GRPC=false), alternated
with the baseline in every round:
  all guarantees: job status + retention (keep completed count 1000), stalled heartbeats
      (interval 3s, so heartbeats and the reclaimer run during the drain), a limiter that
      never limits (max 1,000,000 per 1s), concurrency 100
  limiter off:    the same without the limiter
  events off:     all guarantees, but no job events written (keep.events 0): the cost
      of events is the ratio of "all guarantees on" to this, in the same rounds
  baseline:       raw taskiq + taskiq-redis RedisStreamBroker, a Receiver with
      max_async_tasks 100 (bench/taskiq_worker.py), the same payloads pre-kicked
Goal (DESIGN.md): >= 6x raw taskiq-redis.
"""

from __future__ import annotations

import asyncio
import os
import signal
import statistics
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import benchlib
from benchlib import Project, Row, Spread

CHANNEL_BASE: dict[str, Any] = {
    "handler": "benchapp.handlers:noop",
    "concurrency": 100,
    "stalled": {"interval": "3s", "max_count": 1},
    "keep": {"completed": {"count": 1000}, "failed": {"count": 10000}},
}
CHANNELS = {
    "full": CHANNEL_BASE | {"limiter": {"max": 1_000_000, "duration": "1s"}},
    "nolimit": CHANNEL_BASE,
    "noevents": CHANNEL_BASE
    | {
        "limiter": {"max": 1_000_000, "duration": "1s"},
        "keep": {**CHANNEL_BASE["keep"], "events": 0},
    },
}
GROUP = "channelkit"


@dataclass(frozen=True)
class Drain:
    jobs_per_s: float
    cpu_ms_per_job: float
    seconds: float


def build_project(base: Path) -> Project:
    return benchlib.make_project(base, "bench_tp", CHANNELS)


def payloads(model: type[Any], count: int) -> list[Any]:
    sample = benchlib.SAMPLE_PAYLOAD
    return [model.model_validate(sample | {"body": f"{sample['body']} #{i}"}) for i in range(count)]


async def enqueue_channelkit(prefix: str, channel: str, items: list[Any]) -> None:
    from runtime.engine.client import Client

    async with Client.from_url(benchlib.redis_url(), prefix=prefix) as client:
        for start in range(0, len(items), 1000):
            await client.enqueue_many(channel, items[start : start + 1000])


async def kick_taskiq(queue: str, model: type[Any], items: list[Any]) -> None:
    import taskiq_worker

    broker = taskiq_worker.build_broker(benchlib.redis_url(), queue, "taskiq")
    task = taskiq_worker.register(broker, model, None)
    await broker.startup()  # creates the consumer group at id 0
    try:
        for start in range(0, len(items), 500):
            await asyncio.gather(*(task.kiq(item) for item in items[start : start + 500]))
    finally:
        await broker.shutdown()


def watch(
    stream: str,
    group: str,
    jobs: int,
    pid: int,
    proc: benchlib.Proc,
    waiting: str | None = None,
) -> Drain:
    """Poll until the group has acked every job, and (Channelkit) no job is left in the
    channel's `waiting` set; see the module docstring."""
    client = benchlib.sync_redis()
    first: float | None = None
    cpu_first = 0.0
    deadline = time.monotonic() + 600
    try:
        while time.monotonic() < deadline:
            if not proc.alive():
                raise RuntimeError(f"worker exited early:\n{proc.tail()}")
            pipe = client.pipeline(transaction=False)
            pipe.xlen(stream)
            pipe.xinfo_groups(stream)
            if waiting is not None:
                pipe.zcard(waiting)
            # no stream yet: Channelkit's worker creates it with its consumer group
            xlen, groups, *rest = pipe.execute(raise_on_error=False)
            if isinstance(groups, Exception):
                groups = []
            left = int(rest[0]) if rest else 0
            now = time.perf_counter()
            info: dict[Any, Any] = next(
                (g for g in groups if g["name"] in (group, group.encode())), {}
            )
            read = int(info.get("entries-read") or 0)
            pending = int(info.get("pending") or 0)
            lag = info.get("lag")
            if first is None and (read > 0 or pending > 0):
                first, cpu_first = now, benchlib.cpu_seconds(pid)
            if first is not None and pending == 0 and left == 0 and (xlen == 0 or lag == 0):
                seconds = now - first
                cpu = benchlib.cpu_seconds(pid) - cpu_first
                return Drain(jobs / seconds, cpu * 1000 / jobs, seconds)
            time.sleep(0.002)
    finally:
        client.close()
    raise TimeoutError(f"{stream} not drained")


def profiler(pid: int, out: Path) -> benchlib.Proc:
    """py-spy (from the venv) sampling the worker: collapsed stacks, written on SIGINT."""
    spy = Path(benchlib.PY).with_name("py-spy")
    argv = [str(spy), "record", "--pid", str(pid), "--format", "raw", "--rate", "250"]
    argv += ["--nonblocking", "--output", str(out)]
    return benchlib.spawn(argv, cwd=out.parent, env={}, log=out.with_suffix(".log"))


def top_functions(collapsed: Path, count: int = 15) -> list[tuple[float, float, str]]:
    """(self %, total %, function) from py-spy's collapsed stacks, by self time; samples
    taken while importing (start-up) are left out."""
    own: dict[str, int] = {}
    total: dict[str, int] = {}
    samples = 0
    for line in collapsed.read_text().splitlines():
        stack, _, weight = line.rpartition(" ")
        if not stack:
            continue
        frames = stack.split(";")
        if any("importlib._bootstrap" in frame for frame in frames):
            continue  # start-up: imports, not the drain
        samples += int(weight)
        own[frames[-1]] = own.get(frames[-1], 0) + int(weight)
        for frame in set(frames):
            total[frame] = total.get(frame, 0) + int(weight)
    ranked = sorted(own.items(), key=lambda item: -item[1])[:count]
    return [(100 * n / samples, 100 * total[f] / samples, f) for f, n in ranked]


def run_channelkit(
    project: Project,
    channel: str,
    jobs: int,
    items: list[Any],
    log: Path,
    profile: Path | None = None,
) -> Drain:
    prefix = benchlib.unique_prefix(f"tp-{channel}")
    try:
        asyncio.run(enqueue_channelkit(prefix, channel, items))
        stream = f"{prefix}:{{{channel}}}:stream"
        waiting = f"{prefix}:{{{channel}}}:waiting"
        proc = benchlib.serve(
            project.path,
            project.package,
            prefix,
            api=False,
            grpc=False,
            worker_channels=channel,
            log=log,
        )
        with benchlib.stopping(proc):
            if profile is None:
                return watch(stream, GROUP, jobs, proc.pid, proc, waiting)
            spy = profiler(proc.pid, profile)
            try:
                return watch(stream, GROUP, jobs, proc.pid, proc, waiting)
            finally:
                os.kill(spy.pid, signal.SIGINT)
                spy.popen.wait(30)
    finally:
        benchlib.delete_prefix(prefix)


def run_taskiq(project: Project, model: type[Any], jobs: int, items: list[Any], log: Path) -> Drain:
    prefix = benchlib.unique_prefix("tp-taskiq")
    queue = f"{prefix}:stream"
    try:
        asyncio.run(kick_taskiq(queue, model, items))
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
                "full",
                "--concurrency",
                "100",
            ],
            cwd=project.path,
            env={},
            log=log,
        )
        with benchlib.stopping(proc):
            return watch(queue, "taskiq", jobs, proc.pid, proc)
    finally:
        benchlib.delete_prefix(prefix)


def run(quick: bool = False, jobs: int | None = None, rounds: int | None = None) -> list[Row]:
    jobs = jobs or (5000 if quick else 20000)
    rounds = rounds or (1 if quick else 3)
    results: dict[str, list[Drain]] = {"full": [], "nolimit": [], "noevents": [], "taskiq": []}
    with tempfile.TemporaryDirectory(prefix="bench-tp-") as scratch:
        base = Path(scratch)
        project = build_project(base)
        model = project.model("full")
        items = payloads(model, jobs)
        for index in range(rounds):
            busy = benchlib.wait_quiet()
            for case in (
                ("taskiq", "noevents", "full", "nolimit")
                if index % 2
                else ("full", "noevents", "nolimit", "taskiq")
            ):
                log = base / f"{case}-{index}.log"
                if case == "taskiq":
                    drain = run_taskiq(project, model, jobs, items, log)
                else:
                    drain = run_channelkit(project, case, jobs, items, log)
                results[case].append(drain)
                print(
                    f"  throughput round {index + 1} {case}: {drain.jobs_per_s:,.0f} jobs/s, "
                    f"{drain.cpu_ms_per_job:.3f} ms CPU/job (busy before round {busy:.0%})",
                    flush=True,
                )
    return rows(results, jobs, rounds)


def rows(results: dict[str, list[Drain]], jobs: int, rounds: int) -> list[Row]:
    base_rate = Spread.of([d.jobs_per_s for d in results["taskiq"]])
    base_cpu = Spread.of([d.cpu_ms_per_job for d in results["taskiq"]])
    out = []
    labels = {"full": "all guarantees on", "nolimit": "limiter off", "noevents": "events off"}
    for case, label in labels.items():
        rate = Spread.of([d.jobs_per_s for d in results[case]])
        cpu = Spread.of([d.cpu_ms_per_job for d in results[case]])
        # Ratio per round (A and B run back to back), then the median of those.
        ratio = statistics.median(
            a.jobs_per_s / b.jobs_per_s
            for a, b in zip(results[case], results["taskiq"], strict=True)
        )
        cpu_ratio = statistics.median(
            b.cpu_ms_per_job / a.cpu_ms_per_job
            for a, b in zip(results[case], results["taskiq"], strict=True)
        )
        out.append(
            Row(
                "throughput",
                f"drain {jobs:,} no-op jobs, {label} (jobs/s)",
                rate.text(),
                f"taskiq-redis {base_rate.text()}",
                ratio,
                ">= 6x taskiq-redis",
                ratio >= 6,
                f"median of {rounds} rounds (min-max)",
            )
        )
        out.append(
            Row(
                "throughput",
                f"worker CPU per job, {label} (ms)",
                cpu.text(3),
                f"taskiq-redis {base_cpu.text(3)}",
                cpu_ratio,
                "",
                None,
                "ratio = baseline CPU / ours (higher is better)",
            )
        )
    events_cost = statistics.median(
        a.jobs_per_s / b.jobs_per_s
        for a, b in zip(results["full"], results["noevents"], strict=True)
    )
    out.append(
        Row(
            "throughput",
            "drain with job events on vs off (all guarantees)",
            f"{events_cost:.2f}x",
            "events off (keep.events 0)",
            events_cost,
            "",
            None,
            "three events a job (waiting, active, completed), one XADD each in the "
            "existing script calls",
        )
    )
    return out


def profile_case(case: str, jobs: int) -> None:
    with tempfile.TemporaryDirectory(prefix="bench-tp-") as scratch:
        base = Path(scratch)
        project = build_project(base)
        items = payloads(project.model(case), jobs)
        out = base / "profile.txt"
        drain = run_channelkit(project, case, jobs, items, base / "serve.log", out)
        print(f"{case}: {drain.jobs_per_s:,.0f} jobs/s under py-spy (it slows the worker)")
        print(f"{'self %':>7} {'total %':>8}  function (file:line)")
        for own, total, function in top_functions(out):
            print(f"{own:7.1f} {total:8.1f}  {function}")
        kept = Path(f"/tmp/channelkit-profile-{case}.txt")
        kept.write_text(out.read_text())
        print(f"collapsed stacks: {kept}")


def main() -> None:
    parser = benchlib.arguments(__doc__)
    parser.add_argument("--jobs", type=int)
    parser.add_argument(
        "--profile",
        metavar="CASE",
        choices=["full", "nolimit"],
        help="instead: one drain of CASE under py-spy; prints the top functions of the worker",
    )
    args = parser.parse_args()
    if args.profile:
        profile_case(args.profile, args.jobs or 60000)
        return
    result = run(args.quick, args.jobs, args.rounds)
    benchlib.report(result, args.json)


if __name__ == "__main__":
    main()
