"""`runtime`: the command line. Thin: parses flags, calls the functions that do the work.

Exit codes: 0 done; 1 `generate --check` found stale files, `generate --check-compat` found
breaking changes, or `jobs` found no such job
(or not one it can retry or discard); 2 bad input, usage or configuration.
"""

from __future__ import annotations

import argparse
import importlib.util
import sys
from collections.abc import Sequence
from pathlib import Path

__all__ = ["main"]


# What `runtime generate` imports or runs (ruff, protoc-gen-mypy) beyond the base install.
_GENERATE_EXTRA = (
    "datamodel_code_generator",
    "grpc_tools",
    "jinja2",
    "jsonschema",
    "mypy_protobuf",
    "ruff",
    "yaml",
)
_GENERATE_HINT = "pip install 'channelkit[generate]'"


def _missing_extra(what: str) -> int:
    print(f"error: runtime generate needs {what}: {_GENERATE_HINT}", file=sys.stderr)
    return 2


def _generate(args: argparse.Namespace) -> int:
    missing = [name for name in _GENERATE_EXTRA if importlib.util.find_spec(name) is None]
    if missing:
        return _missing_extra(f"the generate extra (missing: {', '.join(missing)})")
    try:
        from generator import ConfigError, GeneratorError, StaleOutputError, generate
    except ImportError as error:
        return _missing_extra(f"the generate extra ({error})")
    if args.check_compat is not None:
        return _check_compat(Path(args.config), args.check_compat)
    try:
        report = generate(Path(args.config), Path(args.out), check=args.check)
    except ImportError as error:  # a tool imported only when there is work to do
        return _missing_extra(f"the generate extra ({error})")
    except ConfigError as error:
        print(f"error: {len(error.problems)} problem(s) in the configuration:", file=sys.stderr)
        for problem in error.problems:
            print(f"  {problem}", file=sys.stderr)
        print("nothing was written.", file=sys.stderr)
        return 2
    except StaleOutputError as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    except GeneratorError as error:
        print(f"error: {error}\nnothing was written.", file=sys.stderr)
        return 2
    verb = "is up to date" if args.check or not report.files else "written"
    print(
        f"{report.out_dir} {verb}: {len(report.channels)} channel(s): {', '.join(report.channels)}"
    )
    return 0


def _check_compat(config: Path, against: str) -> int:
    from generator import ConfigError, GeneratorError
    from generator.compat import check_compat

    try:
        found = check_compat(config, against)
    except ConfigError as error:
        print(f"error: {len(error.problems)} problem(s) in the configuration:", file=sys.stderr)
        for problem in error.problems:
            print(f"  {problem}", file=sys.stderr)
        return 2
    except GeneratorError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    if found:
        print(f"{len(found)} breaking change(s) since {against}:", file=sys.stderr)
        for change in found:
            print(f"  {change}", file=sys.stderr)
        return 1
    print(f"{config} is compatible with {against}")
    return 0


def _serve(args: argparse.Namespace) -> int:
    if args.reload and args.processes is not None:
        print(
            "error: --reload and --processes do not combine: --reload restarts one "
            "development server, --processes runs several in production",
            file=sys.stderr,
        )
        return 2
    if args.reload:
        return _serve_reloading(args)
    if args.processes is not None and args.processes < 1:
        print(f"error: --processes must be 1 or more, not {args.processes}", file=sys.stderr)
        return 2
    if args.processes is not None and args.processes > 1:
        return _serve_supervised(args, args.processes)
    from runtime.serve.main import serve

    return serve(args)


def _child_serve_args(args: argparse.Namespace) -> list[str] | None:
    """The serve flags given (children inherit the environment), or None after printing a
    configuration error."""
    from dataclasses import fields

    from runtime.errors import ConfigError
    from runtime.serve.settings import ServeSettings, settings_from

    try:
        settings_from(args)
    except ConfigError as error:
        print(f"error: {error}", file=sys.stderr)
        return None
    serve_args = []
    for setting in fields(ServeSettings):
        value = getattr(args, setting.name, None)
        if value is not None:
            serve_args += [setting.metadata["flag"], value]
    return serve_args


def _serve_reloading(args: argparse.Namespace) -> int:
    from runtime.serve.reload import reload_forever
    from runtime.serve.settings import settings_from

    serve_args = _child_serve_args(args)
    if serve_args is None:
        return 2
    return reload_forever(serve_args, settings_from(args), Path(args.config))


def _serve_supervised(args: argparse.Namespace, processes: int) -> int:
    from runtime.serve.settings import settings_from
    from runtime.serve.supervisor import supervise

    serve_args = _child_serve_args(args)
    if serve_args is None:
        return 2
    return supervise(serve_args, settings_from(args), processes)


def _schedules(args: argparse.Namespace) -> int:
    from runtime.cli.schedules import run_schedules

    return run_schedules(args)


def _jobs(args: argparse.Namespace) -> int:
    from runtime.cli.jobs import run_jobs

    return run_jobs(args)


def _workers(args: argparse.Namespace) -> int:
    from runtime.cli.workers import run_workers

    return run_workers(args)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="runtime",
        description="Channelkit: declarative job channels on Redis.",
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    generate = commands.add_parser(
        "generate",
        help="generate the typed package from channels.yaml",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    generate.add_argument("--config", default="channels.yaml", help="the channels file")
    generate.add_argument("--out", default="generated", help="the package folder to write")
    generate.add_argument(
        "--check",
        action="store_true",
        help="write nothing; exit 1 naming each stale, orphaned or missing file",
    )
    generate.add_argument(
        "--check-compat",
        metavar="REF_OR_FILE",
        default=None,
        help="write nothing; compare with an older version (a git ref such as HEAD~1, or the "
        "path of an older channels.yaml) and exit 1 listing every change that breaks a "
        "deployed producer or consumer",
    )
    generate.set_defaults(run=_generate)

    from runtime.serve.settings import add_serve_arguments

    serve = commands.add_parser(
        "serve",
        help="serve the HTTP API, gRPC and every channel's workers in one process",
        description="Flags win over environment variables, which win over defaults.",
    )
    add_serve_arguments(serve)
    serve.add_argument(
        "--reload",
        action="store_true",
        help="development: serve in a child process, regenerate when the channels file or "
        "a schema changes and restart on any change to the project's .py/.yaml/.json files; "
        "a configuration error is shown and watching goes on (needs the generate extra)",
    )
    serve.add_argument(
        "--processes",
        type=int,
        default=None,
        metavar="N",
        help="production: run N identical supervised processes sharing the HTTP and gRPC "
        "ports and every channel (one core each), restarting any that crashes [default: 1]",
    )
    serve.add_argument(
        "--config",
        default="channels.yaml",
        help="with --reload: the channels file to regenerate from [default: channels.yaml]",
    )
    serve.set_defaults(run=_serve)

    from runtime.cli.jobs import add_jobs_arguments

    jobs = commands.add_parser(
        "jobs",
        help="list, show, retry or discard jobs, and count them, straight through Redis",
        description="Talks to the Redis that `runtime serve` uses (no server needed): "
        "REDIS_URL or --redis-url; without them, the embedded Redis's socket "
        ".channelkit/redis.sock when run in the folder of a `runtime serve` that started "
        "one. Exit codes: 0 done, 1 no such job or not in a state the action needs, "
        "2 bad usage or configuration.",
    )
    add_jobs_arguments(jobs)
    jobs.set_defaults(run=_jobs)

    from runtime.cli.workers import add_workers_arguments

    workers = commands.add_parser(
        "workers",
        help="the live runtime serve processes: channels, addresses, version, heartbeat",
        description="Reads the process registry in Redis (each runtime serve heartbeats "
        "every 5 s). Exit codes: 0 listed, 2 no Redis or one that cannot be reached.",
    )
    add_workers_arguments(workers)
    workers.set_defaults(run=_workers)
    from runtime.cli.schedules import add_schedules_arguments

    schedules = commands.add_parser(
        "schedules",
        help="create, list, pause, resume or remove schedules, straight through Redis",
        description="The Redis, key prefix and app flags of `runtime jobs`. Exit codes: "
        "0 done, 1 no such schedule or one channels.yaml declares, 2 bad usage, input or "
        "configuration.",
    )
    add_schedules_arguments(schedules)
    schedules.set_defaults(run=_schedules)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    code: int = args.run(args)
    return code


if __name__ == "__main__":
    raise SystemExit(main())
