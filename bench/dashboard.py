"""The dashboard's cost: does watching it slow the workers, and do its pages stay fast
with a million jobs in a channel?

    .venv/bin/python bench/dashboard.py [--quick] [--jobs 20000] [--rounds 3]

1. Drain with pollers. N no-op jobs pre-enqueued into one channel, then one `runtime
   serve` (HTTP API and dashboard on, gRPC off) drains them, measured as bench/throughput.py
   does (first read to last ack, polled every 2 ms). Cases, alternated in every round:
     none:      nobody looks at the dashboard (the anchor)
     5 viewers: what 5 open browsers on the overview send: each holds GET /ui/live open
                (the process tells it when a channel's newest event id moved, at most once a second)
                and GETs /ui/fragments/overview on each change and every 5 s
     5 x 10:    the same 5 viewers polling every 0.5 s (10x a browser's timer), for
                headroom
   Ratio: drain jobs/s with pollers / without. Goal: within noise (>= 0.95x).

2. Pages with 1,000,000 jobs. 1,000,000 failed jobs are written straight into one
   channel's failed set and job hashes (a Lua script per 10,000 jobs, pipelined) under a
   bench prefix; every 1,000th job's error type is `bench.Rare`. One `runtime serve` (no
   workers) answers each page 20 times, one request at a time; median and p95 ms. The
   anchor: the same pages of an empty channel in the same run. Pages: the overview, the
   channel's first page of failed jobs, a page 90% deep (900,000 jobs; by cursor), the error
   type filter (`Rare`, 2 matches a page within its 2,000-job budget), a two-minute time
   range in the middle, a job id lookup, one job's page. Goal: < 200 ms each (p95).
   Everything under the bench prefix is deleted afterwards.
"""

from __future__ import annotations

import asyncio
import statistics
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import benchlib
import httpx
import redis
import throughput
from benchlib import Row, Spread

CHANNEL = "full"
POLL_PATH = "/ui/fragments/overview"
BROWSER_POLL_S = 5.0  # runtime/ui/app.py OVERVIEW_POLL_S
MILLION = 1_000_000
FILL_BATCH = 10_000
PAGE_REPEATS = 20
# A failed job as finish.lua leaves it, small: the bench measures paging, not payloads.
FILL = """
local prefix, first, last, base = ARGV[1], tonumber(ARGV[2]), tonumber(ARGV[3]), tonumber(ARGV[4])
local common = ARGV[5]
local rare = ARGV[6]
for n = first, last do
  local id = string.format('j%07d', n)
  local at = base + n
  local error = common
  if n % 1000 == 0 then error = rare end
  redis.call('HSET', prefix .. id, 'state', 'failed', 'attempts', 1, 'failures', 1,
             'enqueued_at', at - 10, 'started_at', at - 5, 'finished_at', at, 'error', error,
             'errors', '[' .. error .. ']',
             'data', '{"task_id":"' .. id .. '","kwargs":{"payload":{}}}')
  redis.call('ZADD', KEYS[1], at, id)
end
return last - first + 1
"""


class Pollers:
    """Viewers as browsers on the overview: each a thread holding GET /ui/live open and
    one that GETs the overview fragment on each change it names and every `interval`
    seconds, until stopped."""

    def __init__(self, url: str, count: int, interval: float) -> None:
        self.url = url
        self.live_url = url.replace(POLL_PATH, "/ui/live")
        self.interval = interval
        self.stop = threading.Event()
        self.answered = 0
        self.changes = [threading.Event() for _ in range(count)]
        self.threads = [
            threading.Thread(target=self._poll, args=(n,), daemon=True) for n in range(count)
        ] + [threading.Thread(target=self._follow, args=(n,), daemon=True) for n in range(count)]

    def _follow(self, index: int) -> None:
        while not self.stop.is_set():
            try:
                with (
                    httpx.Client(timeout=httpx.Timeout(5, read=30)) as http,
                    http.stream("GET", self.live_url) as live,
                ):
                    for line in live.iter_lines():
                        if self.stop.is_set():
                            return
                        if line.startswith("event: change"):
                            self.changes[index].set()
            except httpx.HTTPError:
                self.stop.wait(0.2)  # not up yet

    def _poll(self, index: int) -> None:
        change = self.changes[index]
        with httpx.Client(timeout=5) as http:
            while not self.stop.is_set():
                began = time.monotonic()
                try:
                    if http.get(self.url).status_code == 200:
                        self.answered += 1
                except httpx.HTTPError:
                    pass  # not up yet
                change.clear()
                change.wait(max(0.0, self.interval - (time.monotonic() - began)))

    def __enter__(self) -> Pollers:
        for thread in self.threads:
            thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self.stop.set()
        for change in self.changes:
            change.set()
        for thread in self.threads:
            thread.join(1)  # a follower may sit in a read until its next keep-alive


def drain_case(
    project: benchlib.Project, items: list[Any], jobs: int, pollers: int, interval: float, log: Path
) -> tuple[throughput.Drain, int]:
    prefix = benchlib.unique_prefix("ui-drain")
    try:
        asyncio.run(throughput.enqueue_channelkit(prefix, CHANNEL, items))
        proc = benchlib.serve(
            project.path,
            project.package,
            prefix,
            api=True,
            grpc=False,
            worker_channels=CHANNEL,
            log=log,
        )
        url = f"http://127.0.0.1:{proc.ports['http']}{POLL_PATH}"
        with benchlib.stopping(proc):
            stream = f"{prefix}:{{{CHANNEL}}}:stream"
            if not pollers:
                return throughput.watch(stream, "channelkit", jobs, proc.pid, proc), 0
            with Pollers(url, pollers, interval) as polling:
                drain = throughput.watch(stream, "channelkit", jobs, proc.pid, proc)
            return drain, polling.answered
    finally:
        benchlib.delete_prefix(prefix)


def drain_rows(quick: bool, jobs: int | None, rounds: int | None) -> list[Row]:
    jobs = jobs or (5000 if quick else 20000)
    rounds = rounds or (1 if quick else 3)
    cases = {"none": (0, 0.0), "5 viewers": (5, BROWSER_POLL_S), "5 x 10": (5, BROWSER_POLL_S / 10)}
    results: dict[str, list[float]] = {case: [] for case in cases}
    answered: dict[str, int] = {case: 0 for case in cases}
    with tempfile.TemporaryDirectory(prefix="bench-ui-") as scratch:
        base = Path(scratch)
        project = throughput.build_project(base)
        items = throughput.payloads(project.model(CHANNEL), jobs)
        for index in range(rounds):
            busy = benchlib.wait_quiet()
            order = list(cases) if index % 2 == 0 else list(reversed(cases))
            for case in order:
                count, interval = cases[case]
                drain, polled = drain_case(
                    project, items, jobs, count, interval, base / f"{case}-{index}.log"
                )
                results[case].append(drain.jobs_per_s)
                answered[case] += polled
                print(
                    f"  dashboard drain round {index + 1} {case}: {drain.jobs_per_s:,.0f} "
                    f"jobs/s ({polled} polls answered; busy before round {busy:.0%})",
                    flush=True,
                )
    anchor = Spread.of(results["none"])
    rows = []
    for case in ("5 viewers", "5 x 10"):
        spread = Spread.of(results[case])
        ratio = spread.median / anchor.median
        rows.append(
            Row(
                "dashboard",
                f"drain jobs/s, {case} polling the overview",
                spread.text(),
                f"{anchor.text()} (nobody polling)",
                ratio,
                ">= 0.95x",
                ratio >= 0.95,
                f"{jobs:,} no-op jobs, {rounds} round(s); {answered[case]} polls answered "
                "during the drains",
            )
        )
    return rows


def fill(prefix: str, count: int) -> None:
    """`count` failed jobs in CHANNEL's failed set and hashes, pipelined Lua calls."""
    # Each call writes 10,000 jobs: give a busy Redis time to answer.
    client = redis.Redis.from_url(benchlib.redis_url(), socket_timeout=300)
    try:
        script = client.register_script(FILL)
        failed = f"{prefix}:{{{CHANNEL}}}:failed"
        job_prefix = f"{prefix}:{{{CHANNEL}}}:job:"
        common = '{"type":"bench.Boom","message":"boom","traceback":"","attempt":1,"at":1}'
        rare = common.replace("bench.Boom", "bench.Rare")
        base = int(time.time() * 1000) - count - 60_000
        pipe = client.pipeline(transaction=False)
        for first in range(0, count, FILL_BATCH):
            last = min(count, first + FILL_BATCH) - 1
            script(keys=[failed], args=[job_prefix, first, last, base, common, rare], client=pipe)
            if (first // FILL_BATCH) % 4 == 3:
                pipe.execute()
        pipe.execute()
    finally:
        client.close()


def erase(prefix: str, count: int) -> None:
    """The filled jobs by their known ids (no pattern scan of a million keys), then what
    the server left under the prefix."""
    client = benchlib.sync_redis()
    try:
        job_prefix = f"{prefix}:{{{CHANNEL}}}:job:"
        for first in range(0, count, 10_000):
            client.unlink(
                *(f"{job_prefix}j{n:07d}" for n in range(first, min(count, first + 10_000)))
            )
        client.unlink(f"{prefix}:{{{CHANNEL}}}:failed")
    finally:
        client.close()
    benchlib.delete_prefix(prefix)


def page_times(port: int, paths: dict[str, str]) -> dict[str, list[float]]:
    times: dict[str, list[float]] = {name: [] for name in paths}
    with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=30) as http:
        for name, path in paths.items():
            http.get(path)  # warm: templates compiled, scripts loaded
            for _ in range(PAGE_REPEATS):
                began = time.perf_counter()
                answer = http.get(path)
                times[name].append((time.perf_counter() - began) * 1000)
                # 404: the job lookups of the empty channel (the anchor)
                if answer.status_code not in (200, 303, 404):
                    raise RuntimeError(f"{path}: {answer.status_code} {answer.text[:300]}")
    return times


def pages_for(prefix: str, count: int) -> dict[str, str]:
    base = f"/ui/channels/{CHANNEL}"
    paths = {
        "overview": "/ui/",
        "failed, first page": f"{base}?state=failed",
        "error type filter": f"{base}?state=failed&error=Rare",
        "job id lookup": f"{base}?job=j0000500",
        "one job's page": f"{base}/jobs/j0000500",
    }
    if count:
        client = benchlib.sync_redis()
        try:
            rank = count * 9 // 10
            deep: Any = client.zrevrange(
                f"{prefix}:{{{CHANNEL}}}:failed", rank, rank, withscores=True
            )
            member, score = bytes(deep[0][0]).decode(), float(deep[0][1])
            mid = int(score)
        finally:
            client.close()
        paths["90% deep (cursor)"] = f"{base}?state=failed&cursor={int(score)}:{member}"
        since = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(mid / 1000 - 60))
        until = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(mid / 1000 + 60))
        paths["two-minute time range"] = f"{base}?state=failed&since={since}&until={until}&tz=0"
    else:
        paths["90% deep (cursor)"] = f"{base}?state=failed&cursor=1:j0900000"
        paths["two-minute time range"] = (
            f"{base}?state=failed&since=2026-01-01T00:00:00&until=2026-01-01T01:00:00&tz=0"
        )
    return paths


def measure_pages(project: benchlib.Project, count: int, log: Path) -> dict[str, list[float]]:
    prefix = benchlib.unique_prefix("ui-pages")
    try:
        if count:
            began = time.perf_counter()
            fill(prefix, count)
            print(f"  filled {count:,} failed jobs in {time.perf_counter() - began:.1f} s")
        proc = benchlib.serve(
            project.path, project.package, prefix, api=True, grpc=False, workers=False, log=log
        )
        with benchlib.stopping(proc):
            benchlib.http_ready(proc.ports["http"], proc=proc)
            return page_times(proc.ports["http"], pages_for(prefix, count))
    finally:
        erase(prefix, count)


def page_rows(quick: bool) -> list[Row]:
    count = 100_000 if quick else MILLION
    with tempfile.TemporaryDirectory(prefix="bench-ui-pages-") as scratch:
        base = Path(scratch)
        project = throughput.build_project(base)
        empty = measure_pages(project, 0, base / "empty.log")
        full = measure_pages(project, count, base / "full.log")
    rows = []
    for name, samples in full.items():
        p95 = benchlib.percentile(samples, 95)
        median = statistics.median(samples)
        anchor = statistics.median(empty[name])
        rows.append(
            Row(
                "dashboard",
                f"page: {name}, {count:,} failed jobs",
                f"{median:.1f} ms (p95 {p95:.1f})",
                f"{anchor:.1f} ms (empty channel)",
                median / anchor,
                "p95 < 200 ms",
                p95 < 200,
            )
        )
    return rows


def run(quick: bool = False, jobs: int | None = None, rounds: int | None = None) -> list[Row]:
    return drain_rows(quick, jobs, rounds) + page_rows(quick)


def main() -> None:
    parser = benchlib.arguments(__doc__)
    parser.add_argument("--jobs", type=int, default=None)
    parser.add_argument("--only", choices=("drain", "pages"), default=None)
    args = parser.parse_args()
    if args.only == "drain":
        rows = drain_rows(args.quick, args.jobs, args.rounds)
    elif args.only == "pages":
        rows = page_rows(args.quick)
    else:
        rows = run(args.quick, args.jobs, args.rounds)
    benchlib.report(rows, args.json)


if __name__ == "__main__":
    main()
