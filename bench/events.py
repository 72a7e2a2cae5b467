"""Job events: the cost of fanning them out over Server-Sent Events, and how late they
arrive.

    .venv/bin/python bench/events.py [--quick] [--jobs 10000] [--clients 100] [--rounds 2]

One `runtime serve` (HTTP API and workers on, gRPC off) with one no-op channel
(bench/throughput.py's "full": all guarantees, concurrency 100). Per round and case the
channel is paused, N jobs are enqueued (Client.enqueue_many, 1,000 a call), then
resumed; the drain is measured as bench/throughput.py does (first read to last ack).

Cases, alternated in every round:
  none:        nobody subscribed (the anchor)
  C clients:   C SSE clients on GET /channels/<name>/events, connected before the
               enqueue, each reading every event of the channel (3 per job: waiting,
               active, completed) on a raw socket in a thread of this process

Reported: drain jobs/s with the clients vs none (ratio); events delivered per second
over all clients; end-to-end latency of every delivered event, p50 and p99: the time a
client parsed it minus the time Redis recorded it (the ms of its id; same machine, same
clock); every client must receive every event (a gap event or a short count is
reported).
"""

from __future__ import annotations

import asyncio
import statistics
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import benchlib
import httpx
import throughput
from benchlib import Row, Spread

from runtime.engine.client import Client

CHANNEL = "full"


@dataclass
class Subscribers:
    """C SSE clients on one asyncio loop in a thread: latencies and counts."""

    port: int
    count: int
    latencies_ms: list[float] = field(default_factory=list)
    received: list[int] = field(default_factory=list)
    gaps: int = 0
    connected: threading.Event = field(default_factory=threading.Event)
    stop: threading.Event = field(default_factory=threading.Event)

    def __post_init__(self) -> None:
        self.received = [0] * self.count
        self.thread = threading.Thread(target=lambda: asyncio.run(self._run()), daemon=True)

    async def _client(self, index: int, ready: list[int]) -> None:
        reader, writer = await asyncio.open_connection("127.0.0.1", self.port)
        writer.write(
            f"GET /channels/{CHANNEL}/events HTTP/1.1\r\nHost: bench\r\n"
            "Accept: text/event-stream\r\n\r\n".encode()
        )
        await writer.drain()
        buffer = b""
        latencies = self.latencies_ms
        while not self.stop.is_set():
            try:
                chunk = await asyncio.wait_for(reader.read(65536), 0.5)
            except TimeoutError:
                continue
            if not chunk:
                break
            if not ready[index]:
                ready[index] = 1
                if all(ready):
                    self.connected.set()
            now = time.time() * 1000
            buffer += chunk
            *messages, buffer = buffer.split(b"\n\n")
            for message in messages:
                start = message.find(b"id: ")
                if start < 0:
                    if b"event: gap" in message:
                        self.gaps += 1
                    continue
                end = message.index(b"-", start)
                latencies.append(now - int(message[start + 4 : end]))
                self.received[index] += 1
        writer.close()

    async def _run(self) -> None:
        ready = [0] * self.count
        await asyncio.gather(*(self._client(n, ready) for n in range(self.count)))

    def __enter__(self) -> Subscribers:
        self.thread.start()
        if not self.connected.wait(60):
            raise RuntimeError("the SSE clients did not connect")
        return self

    def __exit__(self, *_: object) -> None:
        self.stop.set()
        self.thread.join(10)


@dataclass(frozen=True)
class Result:
    drain: throughput.Drain
    subscribers: Subscribers | None


async def _enqueue_paused(prefix: str, model: type[Any], jobs: int, resume: bool) -> None:
    client = Client.from_url(benchlib.redis_url(), prefix=prefix)
    try:
        if resume:
            await client.resume(CHANNEL)
            return
        items = throughput.payloads(model, jobs)
        for first in range(0, jobs, 1000):
            await client.enqueue_many(CHANNEL, items[first : first + 1000])
    finally:
        await client.close()


def case(project: benchlib.Project, jobs: int, clients: int, log: Path) -> Result:
    prefix = benchlib.unique_prefix("events")
    model = project.model(CHANNEL)
    try:
        proc = benchlib.serve(
            project.path,
            project.package,
            prefix,
            api=True,
            grpc=False,
            worker_channels=CHANNEL,
            log=log,
        )
        with benchlib.stopping(proc):
            benchlib.http_ready(proc.ports["http"], proc=proc)
            httpx.post(f"http://127.0.0.1:{proc.ports['http']}/channels/{CHANNEL}/pause")
            stream = f"{prefix}:{{{CHANNEL}}}:stream"
            subscribers = Subscribers(proc.ports["http"], clients) if clients else None
            if subscribers is not None:
                subscribers.__enter__()
            try:
                asyncio.run(_enqueue_paused(prefix, model, jobs, resume=False))
                asyncio.run(_enqueue_paused(prefix, model, jobs, resume=True))
                drain = throughput.watch(stream, "channelkit", jobs, proc.pid, proc)
                if subscribers is not None:
                    deadline = time.monotonic() + 30
                    while min(subscribers.received) < 3 * jobs and time.monotonic() < deadline:
                        time.sleep(0.05)
            finally:
                if subscribers is not None:
                    subscribers.__exit__()
            return Result(drain, subscribers)
    finally:
        benchlib.delete_prefix(prefix)


def run(
    quick: bool = False,
    jobs: int | None = None,
    clients: int | None = None,
    rounds: int | None = None,
) -> list[Row]:
    jobs = jobs or (2000 if quick else 10_000)
    clients = clients or (20 if quick else 100)
    rounds = rounds or (1 if quick else 2)
    drains: dict[str, list[float]] = {"none": [], "clients": []}
    cpu: dict[str, list[float]] = {"none": [], "clients": []}
    latencies: list[float] = []
    delivered_per_s: list[float] = []
    short = gaps = 0
    with tempfile.TemporaryDirectory(prefix="bench-events-") as scratch:
        base = Path(scratch)
        project = throughput.build_project(base)
        for index in range(rounds):
            busy = benchlib.wait_quiet()
            order = ("none", "clients") if index % 2 == 0 else ("clients", "none")
            for name in order:
                result = case(
                    project, jobs, clients if name == "clients" else 0, base / f"{name}-{index}.log"
                )
                drains[name].append(result.drain.jobs_per_s)
                cpu[name].append(result.drain.cpu_ms_per_job)
                got = ""
                if result.subscribers is not None:
                    subs = result.subscribers
                    latencies += subs.latencies_ms
                    delivered_per_s.append(sum(subs.received) / result.drain.seconds)
                    short += sum(1 for n in subs.received if n < 3 * jobs)
                    gaps += subs.gaps
                    got = f", {sum(subs.received):,} events delivered"
                print(
                    f"  events round {index + 1} {name}: {result.drain.jobs_per_s:,.0f} jobs/s"
                    f"{got} (busy before round {busy:.0%})",
                    flush=True,
                )
    anchor = Spread.of(drains["none"])
    with_clients = Spread.of(drains["clients"])
    ratio = with_clients.median / anchor.median
    p50, p99 = benchlib.percentile(latencies, 50), benchlib.percentile(latencies, 99)
    complete = (
        "every client got every event"
        if not short and not gaps
        else (f"{short} client(s) short, {gaps} gap event(s)")
    )
    return [
        Row(
            "events",
            f"drain jobs/s with {clients} SSE clients following the channel",
            with_clients.text(),
            f"{anchor.text()} (no subscriber)",
            ratio,
            "",
            None,
            f"{jobs:,} no-op jobs, {rounds} round(s); {complete}",
        ),
        Row(
            "events",
            f"serving process CPU per job with {clients} SSE clients (ms)",
            Spread.of(cpu["clients"]).text(3),
            f"{Spread.of(cpu['none']).text(3)} (no subscriber)",
            Spread.of(cpu["none"]).median / Spread.of(cpu["clients"]).median,
            "",
            None,
            "the fan-out's own cost, apart from the clients' CPU on this machine's 2 cores "
            "(ratio = without / with)",
        ),
        Row(
            "events",
            f"SSE events delivered per second ({clients} clients, 3 events a job)",
            f"{statistics.median(delivered_per_s):,.0f}",
            "",
            None,
            "",
            None,
            "over the drain's duration, all clients together",
        ),
        Row(
            "events",
            "event latency, Redis script to SSE client (ms)",
            f"p50 {p50:.1f}, p99 {p99:.1f}",
            "",
            None,
            "",
            None,
            f"{len(latencies):,} deliveries; includes the clients' own parsing in one process",
        ),
    ]


def main() -> None:
    parser = benchlib.arguments(__doc__)
    parser.add_argument("--jobs", type=int)
    parser.add_argument("--clients", type=int)
    args = parser.parse_args()
    benchlib.report(run(args.quick, args.jobs, args.clients, args.rounds), args.json)


if __name__ == "__main__":
    main()
