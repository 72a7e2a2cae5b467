"""Channelkit beside BullMQ: the same work, the same payload, the same Redis, one run.

    .venv/bin/python bench/vs_bullmq.py [--jobs 20000] [--rounds 3] [--quick]

BullMQ (the version pinned in bench/bullmq/package-lock.json, with ioredis) is installed
by `npm ci` into bench/bullmq/node_modules (git-ignored) the first time; without node and
npm the bench is skipped and says why. BullMQ's side is bench/bullmq/bench.mjs.

The payload is benchlib.RECEIPT_PAYLOAD (nested objects, an array, `email`, `uuid`,
`date-time` and `uri` fields), which Channelkit's worker validates against the channel's
schema (a guarantee that stays on) and BullMQ's worker takes as it is. Both sides keep
the last 1,000 completed and 10,000 failed jobs and allow 3 attempts; the Channelkit
channel also has status, retention and stalled-job heartbeats on (channel defaults).

Cases, alternated with BullMQ in every round (order rotated per round):
  drain:      N jobs pre-enqueued, then one worker process at concurrency 100; each job
              does one Redis INCR on a client made once (Channelkit: the app's resources,
              bench handler `count`; BullMQ: an ioredis client). The bench polls Redis
              every 2 ms: the clock starts when the counter is first above 0 and stops
              when it reaches N with nothing left waiting or active. Worker CPU per job
              from /proc (utime + stime) over the same span.
  enqueue one by one:   each job awaited before the next (Channelkit: Client.enqueue of
              the generated model, validated from the dict inside the timed loop;
              BullMQ: queue.add)
  enqueue 100 at a time: 100 single enqueues in flight together (asyncio.gather /
              Promise.all), group after group
  enqueue in bulk:       100 jobs a call (Client.enqueue_many / queue.addBulk)
Ratios are Channelkit / BullMQ per round (higher is better), median of the rounds.
Goals (issue 16): drain >= 1.2x BullMQ; ahead (> 1x) on every enqueue form.
"""

from __future__ import annotations

import asyncio
import json
import shutil
import statistics
import subprocess
import tempfile
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import benchlib
import redis
from benchlib import Project, Row, Spread

BULLMQ_DIR = benchlib.BENCH / "bullmq"
CHANNEL = "receipt"
CHANNELS = {
    CHANNEL: {
        "handler": "benchapp.handlers:count",
        "payload": benchlib.RECEIPT_SCHEMA,
        "concurrency": 100,
        "retry": {"attempts": 3},
        "keep": {"completed": {"count": 1000}, "failed": {"count": 10000}},
    }
}
GROUP = 100
ENQUEUE_MODES = {
    "single": "enqueue one by one",
    "concurrent": f"enqueue {GROUP} at a time",
    "bulk": f"enqueue in bulk, {GROUP} a call",
}


@dataclass(frozen=True)
class Drain:
    jobs_per_s: float
    cpu_ms_per_job: float


def bullmq_ready() -> str | None:
    """None when BullMQ is installed (installing it with `npm ci` if needed), else why not."""
    node, npm = shutil.which("node"), shutil.which("npm")
    if node is None or npm is None:
        return "node and npm are needed for the BullMQ side (not found on PATH)"
    marker = BULLMQ_DIR / "node_modules" / ".package-lock.json"
    lock = BULLMQ_DIR / "package-lock.json"
    if marker.exists() and marker.stat().st_mtime >= lock.stat().st_mtime:
        return None
    done = subprocess.run(
        [npm, "ci", "--no-audit", "--no-fund", "--loglevel=error"],
        cwd=BULLMQ_DIR,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    if done.returncode != 0:
        return f"npm ci in bench/bullmq failed: {done.stderr.strip()[-300:]}"
    return None


def bullmq_version() -> str:
    package = BULLMQ_DIR / "node_modules" / "bullmq" / "package.json"
    return str(json.loads(package.read_text())["version"])


def node(command: str, prefix: str, *args: str) -> list[str]:
    return [
        "node",
        str(BULLMQ_DIR / "bench.mjs"),
        command,
        "--url",
        benchlib.redis_url(),
        "--prefix",
        prefix,
        "--queue",
        CHANNEL,
        *args,
    ]


def watch(
    counter: str, jobs: int, proc: benchlib.Proc, done: Callable[[redis.Redis], bool]
) -> Drain:
    """Poll the counter (and the queue) until every job has run; see the docstring."""
    client = benchlib.sync_redis()
    first: float | None = None
    cpu_first = 0.0
    deadline = time.monotonic() + 600
    try:
        while time.monotonic() < deadline:
            if not proc.alive():
                raise RuntimeError(f"worker exited early:\n{proc.tail()}")
            count = int(client.get(counter) or 0)
            now = time.perf_counter()
            if first is None and count > 0:
                first, cpu_first = now, benchlib.cpu_seconds(proc.pid)
            if first is not None and count >= jobs and done(client):
                cpu = benchlib.cpu_seconds(proc.pid) - cpu_first
                return Drain(jobs / (now - first), cpu * 1000 / jobs)
            time.sleep(0.002)
    finally:
        client.close()
    raise TimeoutError(f"{counter} did not reach {jobs}")


def channelkit_done(prefix: str) -> Callable[[redis.Redis], bool]:
    stream = f"{prefix}:{{{CHANNEL}}}:stream"

    def done(client: redis.Redis) -> bool:
        pipe = client.pipeline(transaction=False)
        pipe.xlen(stream)
        pipe.xpending(stream, "channelkit")
        xlen, pending = pipe.execute()
        return int(xlen) == 0 and int(pending["pending"]) == 0

    return done


def bullmq_done(prefix: str) -> Callable[[redis.Redis], bool]:
    def done(client: redis.Redis) -> bool:
        pipe = client.pipeline(transaction=False)
        pipe.llen(f"{prefix}:{CHANNEL}:wait")
        pipe.llen(f"{prefix}:{CHANNEL}:active")
        return sum(int(n) for n in pipe.execute()) == 0

    return done


def models(project: Project, count: int) -> list[Any]:
    model = project.model(CHANNEL)
    return [model.model_validate(benchlib.RECEIPT_PAYLOAD) for _ in range(count)]


async def fill_channelkit(prefix: str, items: list[Any]) -> None:
    from runtime.engine.client import Client

    async with Client.from_url(benchlib.redis_url(), prefix=prefix) as client:
        for start in range(0, len(items), 1000):
            await client.enqueue_many(CHANNEL, items[start : start + 1000])


def drain_channelkit(project: Project, items: list[Any], log: Path) -> Drain:
    prefix = benchlib.unique_prefix("vsbull-ck")
    counter = f"{prefix}:counter"
    try:
        asyncio.run(fill_channelkit(prefix, items))
        proc = benchlib.serve(
            project.path,
            project.package,
            prefix,
            api=False,
            grpc=False,
            log=log,
            extra_env={"BENCH_COUNTER_KEY": counter, "BENCH_REDIS_URL": benchlib.redis_url()},
        )
        with benchlib.stopping(proc):
            return watch(counter, len(items), proc, channelkit_done(prefix))
    finally:
        benchlib.delete_prefix(prefix)


def drain_bullmq(payload: Path, jobs: int, log: Path) -> Drain:
    prefix = benchlib.unique_prefix("vsbull-bq")
    counter = f"{prefix}:counter"
    try:
        argv = node("fill", prefix, "--payload", str(payload), "--jobs", str(jobs))
        subprocess.run(argv, check=True, capture_output=True, timeout=300)
        argv = node("worker", prefix, "--counter", counter, "--concurrency", "100")
        proc = benchlib.spawn(argv, cwd=BULLMQ_DIR, env={}, log=log)
        with benchlib.stopping(proc):
            return watch(counter, jobs, proc, bullmq_done(prefix))
    finally:
        benchlib.delete_prefix(prefix)


async def enqueue_channelkit(project: Project, mode: str, jobs: int) -> float:
    """Seconds to enqueue `jobs` receipts in `mode`, validation of each dict included."""
    from runtime.engine.client import Client

    model = project.model(CHANNEL)
    payload = benchlib.RECEIPT_PAYLOAD
    prefix = benchlib.unique_prefix("vsbull-enq")
    try:
        async with Client.from_url(benchlib.redis_url(), prefix=prefix) as client:
            await client.enqueue(CHANNEL, model.model_validate(payload))  # connect, load
            began = time.perf_counter()
            if mode == "single":
                for _ in range(jobs):
                    await client.enqueue(CHANNEL, model.model_validate(payload))
            elif mode == "concurrent":
                for _ in range(0, jobs, GROUP):
                    group: list[Awaitable[str]] = [
                        client.enqueue(CHANNEL, model.model_validate(payload)) for _ in range(GROUP)
                    ]
                    await asyncio.gather(*group)
            else:
                for _ in range(0, jobs, GROUP):
                    batch = [model.model_validate(payload) for _ in range(GROUP)]
                    await client.enqueue_many(CHANNEL, batch)
            return time.perf_counter() - began
    finally:
        benchlib.delete_prefix(prefix)


def enqueue_bullmq(payload: Path, mode: str, jobs: int) -> float:
    prefix = benchlib.unique_prefix("vsbull-enq")
    try:
        argv = node("enqueue", prefix, "--payload", str(payload), "--jobs", str(jobs))
        done = subprocess.run(
            [*argv, "--mode", mode], capture_output=True, text=True, timeout=600, check=False
        )
        if done.returncode != 0:
            raise RuntimeError(f"bench.mjs enqueue {mode} failed:\n{done.stderr[-2000:]}")
        return float(json.loads(done.stdout.strip().splitlines()[-1])["seconds"])
    finally:
        benchlib.delete_prefix(prefix)


def run(quick: bool = False, jobs: int | None = None, rounds: int | None = None) -> list[Row]:
    why_not = bullmq_ready()
    if why_not is not None:
        return [Row("bullmq", "SKIPPED", why_not)]
    jobs = jobs or (5000 if quick else 20000)
    rounds = rounds or (1 if quick else 3)
    enqueue_jobs = {"single": jobs // 4, "concurrent": jobs, "bulk": jobs}
    drains: dict[str, list[Drain]] = {"channelkit": [], "bullmq": []}
    enqueues: dict[tuple[str, str], list[float]] = {}
    with tempfile.TemporaryDirectory(prefix="bench-vsbull-") as scratch:
        base = Path(scratch)
        project = benchlib.make_project(
            base, "bench_vsbull", CHANNELS, resources="benchapp.handlers:redis_client"
        )
        payload = base / "receipt.json"
        payload.write_text(json.dumps(benchlib.RECEIPT_PAYLOAD))
        items = models(project, jobs)
        for index in range(rounds):
            busy = benchlib.wait_quiet()
            sides = ["channelkit", "bullmq"] if index % 2 == 0 else ["bullmq", "channelkit"]
            for side in sides:
                log = base / f"drain-{side}-{index}.log"
                if side == "channelkit":
                    drain = drain_channelkit(project, items, log)
                else:
                    drain = drain_bullmq(payload, jobs, log)
                drains[side].append(drain)
                print(
                    f"  vs bullmq round {index + 1} drain {side}: {drain.jobs_per_s:,.0f} jobs/s, "
                    f"{drain.cpu_ms_per_job:.3f} ms CPU/job (busy before round {busy:.0%})",
                    flush=True,
                )
            for mode, count in enqueue_jobs.items():
                for side in sides:
                    if side == "channelkit":
                        seconds = asyncio.run(enqueue_channelkit(project, mode, count))
                    else:
                        seconds = enqueue_bullmq(payload, mode, count)
                    enqueues.setdefault((side, mode), []).append(count / seconds)
                    print(
                        f"  vs bullmq round {index + 1} {mode} {side}: "
                        f"{count / seconds:,.0f} jobs/s",
                        flush=True,
                    )
    return rows(drains, enqueues, jobs, enqueue_jobs, rounds, bullmq_version())


def rows(
    drains: dict[str, list[Drain]],
    enqueues: dict[tuple[str, str], list[float]],
    jobs: int,
    enqueue_jobs: dict[str, int],
    rounds: int,
    version: str,
) -> list[Row]:
    ours, theirs = drains["channelkit"], drains["bullmq"]
    pairs = list(zip(ours, theirs, strict=True))
    note = f"BullMQ {version}; median of {rounds} rounds (min-max), ratio per round"
    out = [
        Row(
            "bullmq",
            f"drain {jobs:,} receipts, one INCR each, concurrency 100 (jobs/s)",
            Spread.of([d.jobs_per_s for d in ours]).text(),
            Spread.of([d.jobs_per_s for d in theirs]).text(),
            statistics.median(a.jobs_per_s / b.jobs_per_s for a, b in pairs),
            ">= 1.2x BullMQ",
            None,
            note,
        ),
        Row(
            "bullmq",
            "worker CPU per job in that drain (ms)",
            Spread.of([d.cpu_ms_per_job for d in ours]).text(3),
            Spread.of([d.cpu_ms_per_job for d in theirs]).text(3),
            statistics.median(b.cpu_ms_per_job / a.cpu_ms_per_job for a, b in pairs),
            "",
            None,
            note + "; ratio = BullMQ CPU / ours (higher is better)",
        ),
    ]
    out[0].met = out[0].ratio is not None and out[0].ratio >= 1.2
    for mode, label in ENQUEUE_MODES.items():
        a, b = enqueues[("channelkit", mode)], enqueues[("bullmq", mode)]
        ratio = statistics.median(x / y for x, y in zip(a, b, strict=True))
        out.append(
            Row(
                "bullmq",
                f"{label}, {enqueue_jobs[mode]:,} receipts (jobs/s)",
                Spread.of(a).text(),
                Spread.of(b).text(),
                ratio,
                "> 1x BullMQ",
                ratio > 1,
                note + "; Channelkit validates each payload inside the timed loop",
            )
        )
    return out


def main() -> None:
    parser = benchlib.arguments(__doc__)
    parser.add_argument("--jobs", type=int)
    args = parser.parse_args()
    result = run(args.quick, args.jobs, args.rounds)
    benchlib.report(result, args.json)


if __name__ == "__main__":
    main()
