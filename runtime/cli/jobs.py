"""`runtime jobs`: inspect, retry and discard jobs from a shell, straight through Redis.

    runtime jobs list CHANNEL [--state failed] [--offset 0] [--limit 20] [--json]
    runtime jobs show CHANNEL JOB_ID [--json]
    runtime jobs retry CHANNEL JOB_ID
    runtime jobs discard CHANNEL JOB_ID
    runtime jobs cancel CHANNEL JOB_ID
    runtime jobs counts [CHANNEL] [--json]
    runtime jobs pause CHANNEL | resume CHANNEL
    runtime jobs retry-failed CHANNEL | discard-failed CHANNEL
    runtime jobs cancel-all CHANNEL [--state waiting|delayed]

No server is involved: the commands use `runtime.engine.client.Client` on the Redis that
`runtime serve` uses (`--redis-url`/REDIS_URL, `--key-prefix`/CHANNELKIT_KEY_PREFIX), and
check channel names against the generated registry (`--app`/CHANNELKIT_APP). Without a
Redis URL, the socket of the embedded Redis that `runtime serve` starts in its folder
(`.channelkit/redis.sock`, under CHANNELKIT_DATA_DIR) is used when it exists.

Exit codes: 0 done; 1 no such job, or it is not in a state the command needs; 2 bad
usage or configuration (an unknown channel, no Redis, a Redis that cannot be reached).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, fields
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, TextIO
from urllib.parse import urlsplit, urlunsplit

from runtime.engine.jobs import STATES, ChannelCounts, JobError, JobState
from runtime.errors import (
    ChannelkitError,
    ConfigError,
    JobNotFound,
    JobOperationError,
    RedisUnavailable,
    UnknownChannelError,
)
from runtime.serve.settings import ServeSettings

if TYPE_CHECKING:
    from runtime.engine.client import Client

__all__ = [
    "EXIT_NOT_FOUND",
    "EXIT_OK",
    "EXIT_USAGE",
    "Connection",
    "JobsCommand",
    "add_connection_arguments",
    "add_jobs_arguments",
    "command_from",
    "resolve_connection",
    "run_jobs",
]

EXIT_OK = 0
EXIT_NOT_FOUND = 1  # no such job, or not failed (retry) / still in the stream (discard)
EXIT_USAGE = 2

Action = Literal[
    "list",
    "show",
    "retry",
    "discard",
    "cancel",
    "counts",
    "pause",
    "resume",
    "retry-failed",
    "discard-failed",
    "cancel-all",
]

_EMBEDDED_SOCKET = "redis.sock"  # in the data folder; see runtime.serve.embedded_redis
_ERROR_WIDTH = 72


@dataclass(frozen=True, slots=True)
class JobsCommand:
    """One `runtime jobs` invocation, parsed and resolved."""

    action: Action
    channel: str | None  # None: every channel (`counts` only)
    job_id: str | None  # `show`, `retry` and `discard`
    state: JobState  # `list`, `cancel-all`
    offset: int  # `list`
    limit: int  # `list`
    as_json: bool
    redis_url: str  # resolved: flag, environment, or the embedded Redis's socket
    key_prefix: str
    app: str


def _serve_setting(name: str) -> tuple[str, str, Any]:
    """(flag, environment variable, default) of a `runtime serve` setting: one source."""
    for setting in fields(ServeSettings):
        if setting.name == name:
            return setting.metadata["flag"], setting.metadata["env"], setting.default
    raise KeyError(name)  # pragma: no cover - the names below are ServeSettings fields


def add_connection_arguments(parser: argparse.ArgumentParser) -> None:
    """--redis-url, --key-prefix and --app: where the server's jobs and schedules are
    (`runtime jobs` and `runtime schedules` alike)."""
    flag, env, _ = _serve_setting("redis_url")
    _, data_env, data_default = _serve_setting("data_dir")
    parser.add_argument(
        flag,
        dest="redis_url",
        metavar="URL",
        help=f"the Redis `runtime serve` uses [env {env}; default: unix://{data_default}/"
        f"{_EMBEDDED_SOCKET} when that socket exists, i.e. in the folder of a `runtime serve` "
        f"running with its embedded Redis ({data_env} moves it)]",
    )
    flag, env, default = _serve_setting("key_prefix")
    parser.add_argument(
        flag,
        dest="key_prefix",
        metavar="PREFIX",
        help=f"prefix of every Redis key, as the server's [env {env}; default: {default}]",
    )
    flag, env, default = _serve_setting("app")
    parser.add_argument(
        flag,
        dest="app",
        metavar="PACKAGE",
        help=f"the generated package whose channels are known [env {env}; default: {default}]",
    )


def add_jobs_arguments(parser: argparse.ArgumentParser) -> None:
    """The `list`, `show`, `retry`, `discard` and `counts` subcommands of `parser`."""
    common = argparse.ArgumentParser(add_help=False)
    add_connection_arguments(common)
    as_json = argparse.ArgumentParser(add_help=False)
    as_json.add_argument(
        "--json", dest="as_json", action="store_true", help="print JSON instead of a table"
    )
    actions = parser.add_subparsers(dest="action", required=True, metavar="ACTION")

    listing = actions.add_parser(
        "list",
        parents=[common, as_json],
        help="jobs of a channel in one state",
        description="Failed, completed and delayed jobs newest first; waiting and active "
        "jobs oldest first.",
    )
    listing.add_argument("channel", metavar="CHANNEL")
    listing.add_argument(
        "--state", choices=STATES, default="failed", help="which jobs (default: failed)"
    )
    listing.add_argument("--offset", type=_count(0), default=0, help="skip this many (default: 0)")
    listing.add_argument(
        "--limit", type=_count(1, 500), default=20, help="at most this many, 1-500 (default: 20)"
    )

    show = actions.add_parser(
        "show",
        parents=[common, as_json],
        help="one job: state, attempts, times, payload, result, errors",
    )
    retry = actions.add_parser(
        "retry",
        parents=[common],
        help="run a failed job again (its failures reset)",
        description="Exit 1 when there is no such job or it is not failed.",
    )
    discard = actions.add_parser(
        "discard",
        parents=[common],
        help="remove a finished (completed, failed, cancelled) or delayed job",
        description="Exit 1 when there is no such job or it is waiting or active.",
    )
    cancel = actions.add_parser(
        "cancel",
        parents=[common],
        help="cancel a waiting, delayed or running job",
        description="A running job is cancelled cooperatively (its handler gets "
        "asyncio.CancelledError). Exit 1 when there is no such job or it has finished.",
    )
    for sub in (show, retry, discard, cancel):
        sub.add_argument("channel", metavar="CHANNEL")
        sub.add_argument("job_id", metavar="JOB_ID")
    for name, text in (
        ("pause", "no process starts the channel's jobs until resumed (running ones finish)"),
        ("resume", "processes start the channel's jobs again"),
        ("retry-failed", "run every failed job of the channel again; prints how many"),
        ("discard-failed", "remove every failed job of the channel; prints how many"),
        ("cancel-all", "cancel every waiting (or delayed) job of the channel; prints how many"),
    ):
        sub = actions.add_parser(name, parents=[common], help=text)
        sub.add_argument("channel", metavar="CHANNEL")
        if name == "cancel-all":
            sub.add_argument(
                "--state",
                choices=("waiting", "delayed"),
                default="waiting",
                help="which jobs (default: waiting)",
            )

    counts = actions.add_parser(
        "counts",
        parents=[common, as_json],
        help="jobs per state and the rate limiter's window, of one channel or all",
    )
    counts.add_argument("channel", metavar="CHANNEL", nargs="?", help="default: every channel")


def _count(low: int, high: int | None = None) -> Callable[[str], int]:
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
        if value < low or (high is not None and value > high):
            bound = f"{low} to {high}" if high is not None else f"at least {low}"
            raise argparse.ArgumentTypeError(f"expected {bound}, got {value}")
        return value

    return parse


def command_from(args: argparse.Namespace, environ: Mapping[str, str] | None = None) -> JobsCommand:
    """Flags win over environment variables, which win over defaults. Raises ConfigError
    when no Redis URL is given and no embedded Redis's socket is found."""
    connection = resolve_connection(args, environ)
    return JobsCommand(
        action=args.action,
        channel=getattr(args, "channel", None),
        job_id=getattr(args, "job_id", None),
        state=getattr(args, "state", "failed"),
        offset=getattr(args, "offset", 0),
        limit=getattr(args, "limit", 20),
        as_json=getattr(args, "as_json", False),
        redis_url=connection.redis_url,
        key_prefix=connection.key_prefix,
        app=connection.app,
    )


@dataclass(frozen=True, slots=True)
class Connection:
    """The Redis, key prefix and generated app a command works on."""

    redis_url: str  # resolved: flag, environment, or the embedded Redis's socket
    key_prefix: str
    app: str


def resolve_connection(
    args: argparse.Namespace, environ: Mapping[str, str] | None = None
) -> Connection:
    """Flags win over environment variables, which win over defaults. Raises ConfigError
    when no Redis URL is given and no embedded Redis's socket is found."""
    environ = os.environ if environ is None else environ
    _, url_env, _ = _serve_setting("redis_url")
    _, prefix_env, prefix_default = _serve_setting("key_prefix")
    _, app_env, app_default = _serve_setting("app")
    url = args.redis_url or environ.get(url_env) or _embedded_url(environ)
    if not url:
        raise ConfigError(_NO_REDIS)
    return Connection(
        redis_url=url,
        key_prefix=args.key_prefix or environ.get(prefix_env) or prefix_default,
        app=args.app or environ.get(app_env) or app_default,
    )


_NO_REDIS = (
    "no Redis to read from: `runtime jobs` and `runtime schedules` need the Redis that "
    "`runtime serve` uses. "
    "Set REDIS_URL (or --redis-url) to it; a `runtime serve` without REDIS_URL runs an "
    "embedded Redis on the unix socket .channelkit/redis.sock of its folder, which this "
    "command uses by itself when run in that folder while the server runs"
)


def _embedded_url(environ: Mapping[str, str]) -> str | None:
    _, data_env, data_default = _serve_setting("data_dir")
    socket = Path(environ.get(data_env) or data_default) / _EMBEDDED_SOCKET
    return f"unix://{socket.resolve()}" if socket.is_socket() else None


def run_jobs(args: argparse.Namespace) -> int:
    """`runtime jobs ...`: the exit code."""
    try:
        command = command_from(args)
        from runtime.serve.service import load_generated_app

        known = sorted(channel.name for channel in load_generated_app(command.app).channels)
        if command.channel is not None and command.channel not in known:
            raise UnknownChannelError(command.channel, known)
        return asyncio.run(_run(command, known))
    except ChannelkitError as error:
        print(f"error: {error}", file=sys.stderr)
        return EXIT_USAGE


async def _run(command: JobsCommand, known: Sequence[str]) -> int:
    from redis.exceptions import RedisError

    from runtime.engine.client import Client

    client = Client.from_url(command.redis_url, prefix=command.key_prefix)
    try:
        return await _ACTIONS[command.action](client, command, known, sys.stdout)
    except JobOperationError as error:
        # JobNotFound and JobStateConflict alike: the message names the job and its state.
        print(f"error: {error}", file=sys.stderr)
        return EXIT_NOT_FOUND
    except (RedisError, RedisUnavailable, OSError) as error:
        raise ConfigError(f"Redis at {_redacted(command.redis_url)}: {error}") from None
    finally:
        await client.close()


async def _list(client: Client, command: JobsCommand, _: Sequence[str], out: TextIO) -> int:
    channel = _required(command.channel)
    jobs = await client.jobs(channel, command.state, offset=command.offset, limit=command.limit)
    if command.as_json:
        body = {"channel": channel, "state": command.state, "jobs": [asdict(j) for j in jobs]}
        _print_json(body, out)
        return EXIT_OK
    if not jobs:
        print(f"no {command.state} jobs in channel {channel!r}", file=out)
        return EXIT_OK
    rows = [
        [
            job.id,
            job.state,
            str(job.attempts),
            str(job.failures),
            _time(job.enqueued_at),
            _time(job.finished_at or job.due_at),
            _short(_error_line(job.error), _ERROR_WIDTH),
        ]
        for job in jobs
    ]
    header = ["ID", "STATE", "ATTEMPTS", "FAILURES", "ENQUEUED", "FINISHED/DUE", "ERROR"]
    _print_table(header, rows, out)
    return EXIT_OK


async def _show(client: Client, command: JobsCommand, _: Sequence[str], out: TextIO) -> int:
    channel, job_id = _required(command.channel), _required(command.job_id)
    info = await client.job(channel, job_id)
    if info is None:
        return _not_found(channel, job_id)
    if command.as_json:
        _print_json(asdict(info), out)
        return EXIT_OK
    lines = [
        ("job", info.id),
        ("channel", info.channel),
        ("state", info.state),
        ("attempts", str(info.attempts)),
        ("failures", str(info.failures)),
        ("enqueued", _time(info.enqueued_at)),
        ("started", _time(info.started_at)),
        ("finished", _time(info.finished_at)),
        ("due", _time(info.due_at)),
        ("payload", _json_text(info.payload)),
        ("result", _json_text(info.result)),
        ("error", _error_line(info.error) or "-"),
    ]
    width = max(len(name) for name, _ in lines)
    for name, value in lines:
        print(f"{name:<{width}}  {value}", file=out)
    if info.errors:
        print(f"errors ({len(info.errors)}, oldest first):", file=out)
        for error in info.errors:
            when = _time(datetime.fromtimestamp(error.at / 1000, UTC)) if error.at else "-"
            print(f"  attempt {error.attempt}  {when}  {_error_line(error)}", file=out)
    traceback = info.error.traceback if info.error is not None else None
    if traceback:
        print("traceback of the last error:", file=out)
        for line in str(traceback).rstrip().splitlines():
            print(f"  {line}", file=out)
    return EXIT_OK


async def _retry(client: Client, command: JobsCommand, _: Sequence[str], out: TextIO) -> int:
    channel, job_id = _required(command.channel), _required(command.job_id)
    await client.retry(channel, job_id)
    print(f"job {job_id} in {channel!r} will run again (waiting)", file=out)
    return EXIT_OK


async def _discard(client: Client, command: JobsCommand, _: Sequence[str], out: TextIO) -> int:
    channel, job_id = _required(command.channel), _required(command.job_id)
    await client.discard(channel, job_id)
    print(f"job {job_id} in {channel!r} discarded", file=out)
    return EXIT_OK


async def _cancel(client: Client, command: JobsCommand, _: Sequence[str], out: TextIO) -> int:
    channel, job_id = _required(command.channel), _required(command.job_id)
    done = await client.cancel(channel, job_id)
    if done.cancelled:
        print(f"job {job_id} in {channel!r} cancelled (it was {done.state})", file=out)
    else:
        print(f"job {job_id} in {channel!r} is running: its worker was told to cancel it", file=out)
    return EXIT_OK


async def _channel_action(
    client: Client, command: JobsCommand, _: Sequence[str], out: TextIO
) -> int:
    channel = _required(command.channel)
    match command.action:
        case "pause":
            await client.pause(channel)
            print(f"channel {channel!r} paused: no process starts its jobs", file=out)
        case "resume":
            await client.resume(channel)
            print(f"channel {channel!r} resumed", file=out)
        case "retry-failed":
            count = await client.retry_all_failed(channel)
            print(f"{count} failed job(s) of {channel!r} will run again", file=out)
        case "discard-failed":
            count = await client.discard_all_failed(channel)
            print(f"{count} failed job(s) of {channel!r} discarded", file=out)
        case _:
            count = await client.cancel_all(channel, command.state)
            print(f"{count} {command.state} job(s) of {channel!r} cancelled", file=out)
    return EXIT_OK


async def _counts(client: Client, command: JobsCommand, known: Sequence[str], out: TextIO) -> int:
    names = [command.channel] if command.channel is not None else list(known)
    found: list[ChannelCounts] = [await client.counts(name) for name in names]
    if command.as_json:
        _print_json([asdict(counts) for counts in found], out)
        return EXIT_OK
    rows = [
        [
            c.channel + (" (paused)" if c.paused else ""),
            *(str(n) for n in (c.waiting, c.active, c.delayed, c.completed, c.failed, c.cancelled)),
            _limiter(c.limiter),
        ]
        for c in found
    ]
    header = [
        "CHANNEL",
        "WAITING",
        "ACTIVE",
        "DELAYED",
        "COMPLETED",
        "FAILED",
        "CANCELLED",
        "LIMITER",
    ]
    _print_table(header, rows, out)
    return EXIT_OK


_ACTIONS: Mapping[
    Action, Callable[[Client, JobsCommand, Sequence[str], TextIO], Awaitable[int]]
] = {
    "list": _list,
    "show": _show,
    "retry": _retry,
    "discard": _discard,
    "cancel": _cancel,
    "counts": _counts,
    "pause": _channel_action,
    "resume": _channel_action,
    "retry-failed": _channel_action,
    "discard-failed": _channel_action,
    "cancel-all": _channel_action,
}


def _required(value: str | None) -> str:
    assert value is not None  # argparse requires it for this action
    return value


def _not_found(channel: str, job_id: str) -> int:
    print(f"error: {JobNotFound(channel, job_id)}", file=sys.stderr)
    return EXIT_NOT_FOUND


def _print_table(header: list[str], rows: list[list[str]], out: TextIO) -> None:
    widths = [max(len(row[i]) for row in [header, *rows]) for i in range(len(header))]
    for row in [header, *rows]:
        print(
            "  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip(),
            file=out,
        )


def _print_json(value: Any, out: TextIO) -> None:
    print(json.dumps(value, indent=2, ensure_ascii=False, default=_json_default), file=out)


def _json_default(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.isoformat()
    raise TypeError(f"{type(value).__name__} is not JSON serializable")


def _json_text(value: Any) -> str:
    return "-" if value is None else json.dumps(value, ensure_ascii=False)


def _time(value: datetime | None) -> str:
    return value.strftime("%Y-%m-%d %H:%M:%S %Z").strip() if value is not None else "-"


def _error_line(error: JobError | None) -> str:
    if error is None:
        return ""
    kind, message = error.type or "error", error.message
    if message.startswith(f"{kind}: "):
        message = message[len(kind) + 2 :]  # poison messages name their kind twice
    return f"{kind}: {message}".replace("\n", " ") if message else kind


def _short(text: str, width: int) -> str:
    return text if len(text) <= width else text[: width - 1] + "…"


def _limiter(limiter: Mapping[str, Any] | None) -> str:
    if not limiter or not limiter.get("granted_in_window"):
        return "-"
    granted, resets = limiter["granted_in_window"], limiter.get("window_resets_in_ms", 0)
    return f"{granted} granted, resets in {resets} ms"


def _redacted(url: str) -> str:
    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = parts.netloc.replace(f":{parts.password}@", ":***@", 1)
    return urlunsplit(parts._replace(netloc=netloc))
