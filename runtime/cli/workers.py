"""`runtime workers`: the live `runtime serve` processes on a Redis, from the process
registry (runtime.engine.processes): id, channels, addresses, version, start time, last
heartbeat.

    runtime workers [--redis-url URL] [--key-prefix PREFIX] [--json]

Exit codes: 0 listed (also when none is live); 2 no Redis, or one that cannot be reached.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
from collections.abc import Mapping
from typing import TextIO

from runtime.cli.jobs import (
    _NO_REDIS,
    EXIT_OK,
    EXIT_USAGE,
    _embedded_url,
    _print_json,
    _print_table,
    _redacted,
    _serve_setting,
    _time,
)
from runtime.errors import ChannelkitError, ConfigError, RedisUnavailable

__all__ = ["add_workers_arguments", "run_workers"]


def add_workers_arguments(parser: argparse.ArgumentParser) -> None:
    flag, env, _ = _serve_setting("redis_url")
    parser.add_argument(
        flag,
        dest="redis_url",
        metavar="URL",
        help=f"the Redis `runtime serve` uses [env {env}; default: the embedded Redis's "
        "socket .channelkit/redis.sock when it exists]",
    )
    flag, env, default = _serve_setting("key_prefix")
    parser.add_argument(
        flag,
        dest="key_prefix",
        metavar="PREFIX",
        help=f"prefix of every Redis key, as the servers' [env {env}; default: {default}]",
    )
    parser.add_argument(
        "--json", dest="as_json", action="store_true", help="print JSON instead of a table"
    )


def run_workers(args: argparse.Namespace, environ: Mapping[str, str] | None = None) -> int:
    environ = os.environ if environ is None else environ
    _, url_env, _ = _serve_setting("redis_url")
    _, prefix_env, prefix_default = _serve_setting("key_prefix")
    url = args.redis_url or environ.get(url_env) or _embedded_url(environ)
    prefix = args.key_prefix or environ.get(prefix_env) or prefix_default
    try:
        if not url:
            raise ConfigError(_NO_REDIS.replace("runtime jobs", "runtime workers"))
        return asyncio.run(_list(url, prefix, args.as_json, sys.stdout))
    except ChannelkitError as error:
        print(f"error: {error}", file=sys.stderr)
        return EXIT_USAGE


async def _list(url: str, prefix: str, as_json: bool, out: TextIO) -> int:
    from redis.exceptions import RedisError

    from runtime.engine.client import Client

    client = Client.from_url(url, prefix=prefix)
    try:
        processes = await client.processes()
    except (RedisError, RedisUnavailable, OSError) as error:
        raise ConfigError(f"Redis at {_redacted(url)}: {error}") from None
    finally:
        await client.close()
    if as_json:
        _print_json({"processes": [process.as_dict() for process in processes]}, out)
        return EXIT_OK
    if not processes:
        print("no live runtime serve process (none heartbeated in the last 15 s)", file=out)
        return EXIT_OK
    rows = [
        [
            process.id,
            ",".join(process.worker_channels) or "-",
            process.http or "-",
            process.grpc or "-",
            str(process.running_jobs),
            process.version,
            _time(process.started_at),
            _time(process.heartbeat_at),
        ]
        for process in processes
    ]
    header = ["ID", "CHANNELS", "HTTP", "GRPC", "RUNNING", "VERSION", "STARTED", "HEARTBEAT"]
    _print_table(header, rows, out)
    return EXIT_OK
