"""`runtime serve` settings: one object, each field with its flag, environment variable
and default, declared once here and turned into both the CLI and the env reader."""

from __future__ import annotations

import argparse
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from runtime.errors import ConfigError

__all__ = ["ServeSettings", "add_serve_arguments", "settings_from"]


def _bool(text: str) -> bool:
    lowered = text.strip().lower()
    if lowered in ("1", "true", "yes", "on"):
        return True
    if lowered in ("0", "false", "no", "off"):
        return False
    raise ValueError(f"expected true or false, got {text!r}")


def _list(text: str) -> tuple[str, ...]:
    return tuple(item.strip() for item in text.split(",") if item.strip())


def _api_keys(text: str) -> tuple[str, ...]:
    """A comma list of keys. A value that names no key ('', ',', ' , ') or an empty one
    ('a,,b') is refused: it would run without authentication, or with fewer keys, silently."""
    keys = tuple(item.strip() for item in text.split(","))
    if not any(keys):
        raise ValueError(
            "names no key: unset API_KEYS to run without authentication, or list the keys "
            "separated by commas"
        )
    if not all(keys):
        raise ValueError("has an empty key between commas")
    return keys


def _setting(
    default: Any, env: str, flag: str, help: str, parse: Callable[[str], Any] = str
) -> Any:
    return field(default=default, metadata={"env": env, "flag": flag, "help": help, "parse": parse})


@dataclass(frozen=True)
class ServeSettings:
    app: str = _setting("generated", "CHANNELKIT_APP", "--app", "the generated package to serve")
    redis_url: str | None = _setting(
        None,
        "REDIS_URL",
        "--redis-url",
        "Redis to use (redis://, rediss:// for TLS, unix://; a cluster redis+cluster://h:p,h:p/; "
        "Sentinel redis+sentinel://h:p,h:p/<master>); unset: start an embedded Redis",
    )
    data_dir: Path = _setting(
        Path(".channelkit"),
        "CHANNELKIT_DATA_DIR",
        "--data-dir",
        "where the embedded Redis keeps its data",
        Path,
    )
    key_prefix: str = _setting(
        "channelkit", "CHANNELKIT_KEY_PREFIX", "--key-prefix", "prefix of every Redis key"
    )
    http_host: str = _setting(
        "127.0.0.1", "HTTP_HOST", "--http-host", "HTTP listen address (0.0.0.0 in containers)"
    )
    http_port: int = _setting(8000, "HTTP_PORT", "--http-port", "HTTP port", int)
    metrics_port: int | None = _setting(
        None,
        "METRICS_PORT",
        "--metrics-port",
        "also serve /metrics and /health on this port (for processes without the HTTP API)",
        int,
    )
    grpc_host: str = _setting("127.0.0.1", "GRPC_HOST", "--grpc-host", "gRPC listen address")
    grpc_port: int = _setting(50051, "GRPC_PORT", "--grpc-port", "gRPC port", int)
    enable_api: bool = _setting(
        True, "ENABLE_API", "--enable-api", "serve the HTTP API (true/false)", _bool
    )
    enable_ui: bool = _setting(
        True,
        "ENABLE_UI",
        "--enable-ui",
        "serve the dashboard at /ui with the HTTP API (true/false; behind API_KEYS when set)",
        _bool,
    )
    enable_grpc: bool = _setting(
        True, "ENABLE_GRPC", "--enable-grpc", "serve gRPC (true/false)", _bool
    )
    enable_graphql: bool = _setting(
        True,
        "ENABLE_GRAPHQL",
        "--enable-graphql",
        "serve GraphQL at /graphql on the HTTP port (true/false)",
        _bool,
    )
    enable_workers: bool = _setting(
        True, "ENABLE_WORKERS", "--enable-workers", "run the channels' workers (true/false)", _bool
    )
    worker_channels: tuple[str, ...] = _setting(
        (),
        "WORKER_CHANNELS",
        "--worker-channels",
        "comma list: consume only these channels (default: all)",
        _list,
    )
    shutdown_timeout: float = _setting(
        30.0,
        "SHUTDOWN_TIMEOUT",
        "--shutdown-timeout",
        "seconds running jobs get to finish on SIGTERM",
        float,
    )
    resources_timeout: float = _setting(
        30.0,
        "RESOURCES_TIMEOUT",
        "--resources-timeout",
        "seconds the app's resources factory (channels.yaml `resources:`) gets to start",
        float,
    )
    api_keys: tuple[str, ...] = _setting(
        (),
        "API_KEYS",
        "--api-keys",
        "comma list; when set, enqueue routes and RPCs need 'Bearer <key>'",
        _api_keys,
    )
    max_body_size: int = _setting(
        1024 * 1024,
        "MAX_BODY_SIZE",
        "--max-body-size",
        "largest HTTP body, gRPC message or GraphQL WebSocket message, bytes",
        int,
    )
    reuse_port: bool = _setting(
        False,
        "CHANNELKIT_REUSE_PORT",
        "--reuse-port",
        "bind the HTTP and gRPC ports with SO_REUSEPORT, shared with other processes that do "
        "(`--processes N` sets it for its children) (true/false)",
        _bool,
    )
    log_level: str = _setting("INFO", "LOG_LEVEL", "--log-level", "DEBUG, INFO, WARNING or ERROR")
    log_format: str = _setting("console", "LOG_FORMAT", "--log-format", "console or json")


def add_serve_arguments(parser: argparse.ArgumentParser) -> None:
    for setting in fields(ServeSettings):
        meta = setting.metadata
        default = setting.default
        shown = ",".join(default) if isinstance(default, tuple) else default
        shown = "unset" if shown in (None, "") else shown
        parser.add_argument(
            meta["flag"],
            dest=setting.name,
            default=None,
            metavar=meta["env"],
            help=f"{meta['help']} [env {meta['env']}; default: {shown}]",
        )


def settings_from(
    args: argparse.Namespace | None = None, environ: Mapping[str, str] | None = None
) -> ServeSettings:
    """Flags win over environment variables, which win over defaults."""
    environ = os.environ if environ is None else environ
    values: dict[str, Any] = {}
    for setting in fields(ServeSettings):
        meta = setting.metadata
        raw = getattr(args, setting.name, None) if args is not None else None
        source = meta["flag"]
        if raw is None and meta["env"] in environ:
            raw, source = environ[meta["env"]], meta["env"]
        if raw is None:
            continue
        try:
            values[setting.name] = meta["parse"](raw)
        except ValueError as error:
            raise ConfigError(f"{source}={raw!r}: {error}") from None
    settings = ServeSettings(**values)
    if settings.log_format not in ("console", "json"):
        raise ConfigError(f"LOG_FORMAT={settings.log_format!r}: expected console or json")
    if not settings.resources_timeout > 0:
        raise ConfigError("RESOURCES_TIMEOUT must be a positive number of seconds")
    if settings.shutdown_timeout < 0:
        raise ConfigError("SHUTDOWN_TIMEOUT must not be negative")
    return settings
