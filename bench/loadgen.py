"""A small closed-loop load generator, run as its own process.

    python bench/loadgen.py http --port N --path /x --body-file F [--connections 32]
    python bench/loadgen.py grpc --port N --project DIR --package PKG --channel CH [--batch 100]

HTTP: raw asyncio streams on uvloop, one keep-alive HTTP/1.1 connection per worker,
each sending the next POST as soon as its answer is read. gRPC: grpc.aio with the
project's generated stubs, `--connections` calls in flight on one channel. Each runs
`--warmup` seconds unmeasured, then `--seconds` measured, and prints one JSON line:
requests, errors, seconds, rps, p50_ms, p99_ms.
"""

from __future__ import annotations

import argparse
import asyncio
import importlib
import json
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import uvloop

Call = Callable[[], Awaitable[bool]]


async def http_worker_factory(port: int, path: str, body: bytes) -> Call:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    request = (
        f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\ncontent-type: application/json\r\n"
        f"content-length: {len(body)}\r\n\r\n"
    ).encode() + body

    async def call() -> bool:
        writer.write(request)
        head = await reader.readuntil(b"\r\n\r\n")
        length = 0
        for line in head.split(b"\r\n"):
            if line[:15].lower() == b"content-length:":
                length = int(line[15:])
        if length:
            await reader.readexactly(length)
        return head[9:12] in (b"200", b"201", b"202")

    return call


async def drive(
    factories: list[Callable[[], Awaitable[Call]]], warmup: float, seconds: float
) -> dict[str, Any]:
    calls = [await factory() for factory in factories]
    latencies: list[float] = []
    errors = 0
    measuring = False
    stop = False

    async def loop(call: Call) -> None:
        nonlocal errors
        while not stop:
            started = time.perf_counter()
            try:
                ok = await call()
            except Exception as error:
                print(f"request failed: {error!r}", file=sys.stderr)
                ok = False
            if measuring:
                latencies.append(time.perf_counter() - started)
                if not ok:
                    errors += 1

    tasks = [asyncio.create_task(loop(call)) for call in calls]
    await asyncio.sleep(warmup)
    measuring = True
    began = time.perf_counter()
    await asyncio.sleep(seconds)
    measuring = False
    elapsed = time.perf_counter() - began
    stop = True
    await asyncio.gather(*tasks, return_exceptions=True)
    latencies.sort()

    def pct(q: float) -> float:
        return (
            latencies[min(len(latencies) - 1, int(q * len(latencies)))] * 1000 if latencies else 0.0
        )

    return {
        "requests": len(latencies),
        "errors": errors,
        "seconds": elapsed,
        "rps": len(latencies) / elapsed,
        "p50_ms": pct(0.50),
        "p99_ms": pct(0.99),
    }


def grpc_factories(args: argparse.Namespace) -> list[Callable[[], Awaitable[Call]]]:
    import grpc

    sys.path.insert(0, args.project)
    pb2: Any = importlib.import_module(f"{args.package}.proto").channels_pb2
    pb2_grpc: Any = importlib.import_module(f"{args.package}.proto").channels_pb2_grpc
    camel = "".join(part.capitalize() for part in args.channel.split("_"))
    payload = getattr(pb2, f"{camel}Payload")()
    from google.protobuf import json_format

    values = json.loads(Path(args.body_file).read_text())
    for field in payload.DESCRIPTOR.fields:
        # JSON enum values ("high") are proto enum names (PRIORITY_HIGH) in protobuf JSON.
        if field.enum_type is not None and field.name in values:
            wanted = "_" + str(values[field.name]).upper()
            names = [v.name for v in field.enum_type.values if v.name.endswith(wanted)]
            values[field.name] = names[0]
    json_format.ParseDict(values, payload)
    target = f"127.0.0.1:{args.port}"
    camel_batch = f"Enqueue{camel}Batch" if args.batch else f"Enqueue{camel}"
    if args.batch:
        request = getattr(pb2, f"Enqueue{camel}BatchRequest")(payloads=[payload] * args.batch)
    else:
        request = getattr(pb2, f"Enqueue{camel}Request")(payload=payload)
    shared: dict[str, Any] = {}

    async def factory() -> Call:
        # One channel for all calls, made inside the running loop (grpc.aio binds to it).
        if "method" not in shared:
            shared["channel"] = grpc.aio.insecure_channel(target)
            shared["method"] = getattr(pb2_grpc.ChannelsServiceStub(shared["channel"]), camel_batch)
        method = shared["method"]

        async def call() -> bool:
            await method(request)
            return True

        return call

    return [factory] * args.connections


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("kind", choices=["http", "grpc"])
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--path", default="")
    parser.add_argument("--body-file", required=True)
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument("--warmup", type=float, default=1.0)
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--project", default="")
    parser.add_argument("--package", default="")
    parser.add_argument("--channel", default="")
    parser.add_argument("--batch", type=int, default=0)
    args = parser.parse_args()
    if args.kind == "http":
        body = Path(args.body_file).read_bytes()

        def make() -> Callable[[], Awaitable[Call]]:
            return lambda: http_worker_factory(args.port, args.path, body)

        factories = [make() for _ in range(args.connections)]
    else:
        factories = grpc_factories(args)
    # grpc.aio runs on asyncio's own loop; the HTTP client on uvloop.
    runner: Any = uvloop.run if args.kind == "http" else asyncio.run
    result = runner(drive(factories, args.warmup, args.seconds))
    print(json.dumps(result))


if __name__ == "__main__":
    main()
