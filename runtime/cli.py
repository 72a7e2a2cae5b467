"""`runtime`: the command line. Thin: parses flags, calls the functions that do the work.

Exit codes: 0 done, 1 `generate --check` found stale files, 2 bad input or usage.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

__all__ = ["main"]


def _generate(args: argparse.Namespace) -> int:
    from generator import ConfigError, GeneratorError, StaleOutputError, generate

    try:
        report = generate(Path(args.config), Path(args.out), check=args.check)
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


def _serve(args: argparse.Namespace) -> int:
    from runtime.serve_main import serve

    return serve(args)


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
    generate.set_defaults(run=_generate)

    from runtime.settings import add_serve_arguments

    serve = commands.add_parser(
        "serve",
        help="serve the HTTP API, gRPC and every channel's workers in one process",
        description="Flags win over environment variables, which win over defaults.",
    )
    add_serve_arguments(serve)
    serve.set_defaults(run=_serve)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    code: int = args.run(args)
    return code


if __name__ == "__main__":
    raise SystemExit(main())
