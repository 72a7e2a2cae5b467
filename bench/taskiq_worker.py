"""The baseline worker: raw taskiq + taskiq-redis RedisStreamBroker, no framework.

    python bench/taskiq_worker.py --queue Q --project DIR --package PKG --channel CH

What `taskiq worker mod:broker --workers 1 --max-async-tasks 100` runs in its child
process (taskiq.cli.worker.run.start_listen), in one process so its pid is the worker:
uvloop, a Receiver with the same defaults, taskiq's logs at WARNING. The task takes the
same generated pydantic payload model as the Channelkit handler, so both validate it.
`--latency-out FILE`: the task records start time minus the payload's `sent_at` and
writes them to FILE at exit.
"""

from __future__ import annotations

import argparse
import asyncio
import importlib
import logging
import signal
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import uvloop
from taskiq.receiver import Receiver
from taskiq_redis import RedisStreamBroker

TASK_NAME = "bench.noop"


def build_broker(url: str, queue: str, group: str) -> Any:
    # consumer_id="0": a group created by this process reads jobs kicked before it started.
    return RedisStreamBroker(url, queue_name=queue, consumer_group_name=group, consumer_id="0")


def payload_model(project: str, package: str, channel: str) -> type[Any]:
    if project not in sys.path:
        sys.path.insert(0, project)
    module = importlib.import_module(f"{package}.models.{channel}")
    name = "".join(part.capitalize() for part in channel.split("_")) + "Payload"
    model: type[Any] = getattr(module, name)
    return model


def register(broker: Any, model: type[Any], latencies: list[float] | None) -> Any:
    """The no-op task (or the latency recorder), its payload typed with `model`."""
    if latencies is None:

        async def task(payload: Any) -> None:
            return None

    else:
        record = latencies

        async def task(payload: Any) -> None:
            record.append(time.time() - payload.sent_at)

    task.__annotations__ = {"payload": model, "return": None}
    return broker.task(task_name=TASK_NAME)(task)


async def run(args: argparse.Namespace) -> None:
    broker = build_broker(args.url, args.queue, args.group)
    broker.is_worker_process = True
    latencies: list[float] | None = [] if args.latency_out else None
    register(broker, payload_model(args.project, args.package, args.channel), latencies)
    finish = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, finish.set)
    with ThreadPoolExecutor(max_workers=4) as pool:
        receiver = Receiver(broker=broker, executor=pool, max_async_tasks=args.concurrency)
        try:
            await receiver.listen(finish)
        finally:
            await broker.shutdown()
    if args.latency_out and latencies:
        text = "\n".join(repr(v) for v in latencies)
        await asyncio.to_thread(Path(args.latency_out).write_text, text)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--url", required=True)
    parser.add_argument("--queue", required=True)
    parser.add_argument("--group", default="taskiq")
    parser.add_argument("--project", required=True)
    parser.add_argument("--package", required=True)
    parser.add_argument("--channel", required=True)
    parser.add_argument("--concurrency", type=int, default=100)
    parser.add_argument("--latency-out", default="")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    uvloop.run(run(args))


if __name__ == "__main__":
    main()
