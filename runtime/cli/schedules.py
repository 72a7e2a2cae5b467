"""`runtime schedules`: create, list, pause, resume and remove schedules from a shell,
straight through Redis, as `runtime jobs` does (same Redis, key prefix and app flags).

    runtime schedules list CHANNEL [--json]
    runtime schedules show CHANNEL NAME [--json]
    runtime schedules set CHANNEL NAME (--cron EXPR | --every-ms MS) --payload JSON
                          [--timezone TZ] [--start ISO] [--end ISO] [--catch-up once|skip]
                          [--paused]
    runtime schedules pause|resume|remove CHANNEL NAME

The payload is validated with the channel's generated model. Exit codes: 0 done; 1 no
such schedule, or one channels.yaml declares (set, remove); 2 bad usage, input (a cron
expression, time zone or payload field, named) or configuration.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from datetime import datetime
from typing import TYPE_CHECKING, Any, TextIO

from pydantic import BaseModel, ValidationError

from runtime.cli.jobs import (
    EXIT_NOT_FOUND,
    EXIT_OK,
    EXIT_USAGE,
    _print_table,
    _redacted,
    add_connection_arguments,
    resolve_connection,
)
from runtime.engine.cadence import as_ms, check_timezone
from runtime.engine.schedules import CATCH_UP, Schedule, ScheduleInfo
from runtime.errors import (
    ChannelkitError,
    ConfigError,
    InvalidScheduleError,
    RedisUnavailable,
    ScheduleOperationError,
    UnknownChannelError,
)

if TYPE_CHECKING:
    from runtime.engine.client import Client

__all__ = ["add_schedules_arguments", "run_schedules"]


def add_schedules_arguments(parser: argparse.ArgumentParser) -> None:
    common = argparse.ArgumentParser(add_help=False)
    add_connection_arguments(common)
    as_json = argparse.ArgumentParser(add_help=False)
    as_json.add_argument("--json", dest="as_json", action="store_true", help="print JSON")
    actions = parser.add_subparsers(dest="action", required=True, metavar="ACTION")
    listing = actions.add_parser(
        "list", parents=[common, as_json], help="every schedule of a channel"
    )
    listing.add_argument("channel")
    for action, text in (
        ("show", "one schedule: definition, next and last run"),
        ("pause", "enqueue nothing until resumed (cluster-wide)"),
        ("resume", "go on from now"),
        ("remove", "remove a schedule (its jobs stay)"),
    ):
        sub = actions.add_parser(action, parents=[common, as_json], help=text)
        sub.add_argument("channel")
        sub.add_argument("name")
    upsert = actions.add_parser(
        "set",
        parents=[common, as_json],
        help="create or change a schedule (BullMQ's upsertJobScheduler)",
    )
    upsert.add_argument("channel")
    upsert.add_argument("name")
    cadence = upsert.add_mutually_exclusive_group(required=True)
    cadence.add_argument("--cron", help="5 fields, or 6 with seconds first")
    cadence.add_argument("--every-ms", type=int, help="a fixed interval, at least 1000")
    upsert.add_argument("--payload", required=True, help="the jobs' payload as JSON")
    upsert.add_argument("--timezone", default="UTC", help="IANA name [default: UTC]")
    upsert.add_argument("--start", help="no tick before this ISO 8601 date-time")
    upsert.add_argument("--end", help="no tick after this ISO 8601 date-time")
    upsert.add_argument("--catch-up", choices=CATCH_UP, default="once", help="[default: once]")
    upsert.add_argument("--paused", action="store_true", help="store it paused")


def run_schedules(args: argparse.Namespace) -> int:
    """`runtime schedules ...`: the exit code."""
    try:
        connection = resolve_connection(args)
        from runtime.serve.service import load_generated_app

        models = {c.name: c.payload_model for c in load_generated_app(connection.app).channels}
        if args.channel not in models:
            raise UnknownChannelError(args.channel, sorted(models))
        schedule = _schedule(args, models[args.channel]) if args.action == "set" else None
        return asyncio.run(_run(args, connection.redis_url, connection.key_prefix, schedule))
    except ChannelkitError as error:
        print(f"error: {error}", file=sys.stderr)
        return EXIT_USAGE


def _schedule(args: argparse.Namespace, model: type[BaseModel]) -> Schedule:
    try:
        data = json.loads(args.payload)
    except ValueError as error:
        raise InvalidScheduleError(f"--payload: not JSON: {error}") from None
    try:
        payload = model.model_validate(data)
    except ValidationError as invalid:
        raise InvalidScheduleError(
            "; ".join(
                f"--payload {'.'.join(str(part) for part in error['loc'])}: {error['msg']}"
                for error in invalid.errors()
            )
        ) from None
    try:
        zone = check_timezone(args.timezone)
    except ValueError as error:
        raise InvalidScheduleError(f"timezone: {error}") from None

    def moment(flag: str, value: str | None) -> int | None:
        if value is None:
            return None
        try:
            parsed = datetime.fromisoformat(value)
        except ValueError:
            raise InvalidScheduleError(f"{flag}: not an ISO 8601 date-time: {value!r}") from None
        return as_ms(parsed if parsed.tzinfo else parsed.replace(tzinfo=zone))

    return Schedule.with_payload(
        args.name,
        payload,
        cron=args.cron,
        every_ms=args.every_ms,
        timezone=args.timezone,
        start_ms=moment("--start", args.start),
        end_ms=moment("--end", args.end),
        catch_up=args.catch_up,
        paused=args.paused,
    )


async def _run(
    args: argparse.Namespace, redis_url: str, prefix: str, schedule: Schedule | None
) -> int:
    from redis.exceptions import RedisError

    from runtime.engine.client import Client

    client = Client.from_url(redis_url, prefix=prefix)
    try:
        return await _act(client, args, schedule, sys.stdout)
    except ScheduleOperationError as error:
        print(f"error: {error}", file=sys.stderr)
        return EXIT_NOT_FOUND
    except (RedisError, RedisUnavailable, OSError) as error:
        raise ConfigError(f"Redis at {_redacted(redis_url)}: {error}") from None
    finally:
        await client.close()


async def _act(
    client: Client, args: argparse.Namespace, schedule: Schedule | None, out: TextIO
) -> int:
    schedules, channel = client.schedules, args.channel
    if args.action == "list":
        found = list(await schedules.list(channel))
        if args.as_json:
            _print_json([info.to_dict() for info in found], out)
        elif not found:
            print(f"no schedules in {channel!r}", file=out)
        else:
            rows = [_row(info) for info in found]
            header = ["NAME", "WHEN", "TIMEZONE", "STATE", "NEXT RUN", "LAST RUN", "JOBS"]
            _print_table(header, rows, out)
        return EXIT_OK
    if args.action == "remove":
        await schedules.remove(channel, args.name)
        print(f"removed schedule {args.name!r} of {channel!r}", file=out)
        return EXIT_OK
    if args.action == "set":
        assert schedule is not None
        info = await schedules.upsert(channel, schedule)
    elif args.action == "pause":
        info = await schedules.pause(channel, args.name)
    elif args.action == "resume":
        info = await schedules.resume(channel, args.name)
    else:
        info = await schedules.get(channel, args.name)
    if args.as_json:
        _print_json(info.to_dict(), out)
    else:
        for key, value in info.to_dict().items():
            shown = json.dumps(value, ensure_ascii=False) if isinstance(value, dict) else value
            print(f"{key + ':':<13} {'-' if value is None else shown}", file=out)
    return EXIT_OK


def _row(info: ScheduleInfo) -> list[str]:
    data = info.to_dict()
    when = info.schedule.cron or f"every {info.schedule.every_ms} ms"
    return [
        info.name,
        when,
        info.schedule.timezone,
        "paused" if info.paused else "active",
        data["next_run"] or "-",
        data["last_run"] or "-",
        str(info.enqueued),
    ]


def _print_json(value: Any, out: TextIO) -> None:
    print(json.dumps(value, ensure_ascii=False, indent=2), file=out)
