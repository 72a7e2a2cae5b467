"""channels.yaml → typed, validated configuration.

Three passes, each reporting every problem it finds with file, line, column and key path:
1. YAML → data with positions (`yaml_source`);
2. the data against `channels.schema.json`, the same schema editors use;
3. what a schema cannot say: reserved names, handler modules that must exist, durations
   turned into milliseconds, `defaults` merged into each channel.
Payload schemas are read and checked afterwards by `schemas`.
"""

from __future__ import annotations

import dataclasses
import difflib
import json
import keyword
import re
from dataclasses import dataclass
from datetime import date, datetime, time
from functools import cache
from importlib import resources
from pathlib import Path
from typing import Any, Literal

import jsonschema

from generator.errors import ConfigError, Problem
from generator.handlers import (
    HandlerSignature,
    ResourcesSignature,
    inspect_handler,
    inspect_resources,
)
from generator.yaml_source import KeyPath, LocatedDocument, load_yaml
from runtime.engine.cadence import as_ms, check_timezone
from runtime.engine.schedules import Schedule
from runtime.errors import InvalidScheduleError

__all__ = [
    "BackoffConfig",
    "ChannelConfig",
    "ChannelsConfig",
    "LimiterConfig",
    "RetentionConfig",
    "ScheduleConfig",
    "format_schema",
    "load_config",
    "parse_duration",
]

# Names a channel cannot take: they would shadow Python or protobuf keywords, or the
# modules the generator writes beside the channels.
PROTO_KEYWORDS = frozenset(
    [
        "syntax",
        "import",
        "weak",
        "public",
        "package",
        "option",
        "message",
        "enum",
        "service",
        "rpc",
        "returns",
        "stream",
        "oneof",
        "map",
        "reserved",
        "extensions",
        "extend",
        "to",
        "max",
        "optional",
        "required",
        "repeated",
        "true",
        "false",
        "double",
        "float",
        "int32",
        "int64",
        "uint32",
        "uint64",
        "sint32",
        "sint64",
        "fixed32",
        "fixed64",
        "sfixed32",
        "sfixed64",
        "bool",
        "string",
        "bytes",
        "group",
    ]
)
RESERVED_NAMES = frozenset({"registry", "routes", "proto", "models", "channels", "batch", "shared"})

_UNITS_MS = {"ms": 1, "s": 1000, "m": 60_000, "h": 3_600_000, "d": 86_400_000}
_DURATION = re.compile(r"^(\d+)(ms|s|m|h|d)$")


@cache
def format_schema() -> dict[str, Any]:
    """The JSON Schema of channels.yaml itself."""
    text = resources.files("generator").joinpath("channels.schema.json").read_text("utf-8")
    schema: dict[str, Any] = json.loads(text)
    return schema


def parse_duration(value: int | str) -> int:
    """`250ms`, `30s`, `5m`, `1h`, `7d` or an integer of milliseconds → milliseconds."""
    if isinstance(value, int):
        return value
    match = _DURATION.match(value)
    if not match:
        raise ValueError(f"bad duration {value!r}")
    return int(match.group(1)) * _UNITS_MS[match.group(2)]


@dataclass(frozen=True, slots=True)
class LimiterConfig:
    max: int
    duration_ms: int
    key: str | None


@dataclass(frozen=True, slots=True)
class BackoffConfig:
    type: Literal["fixed", "exponential"]
    delay_ms: int
    max_delay_ms: int | None
    jitter: float


@dataclass(frozen=True, slots=True)
class RetentionConfig:
    count: int | None
    age_ms: int | None


@dataclass(frozen=True, slots=True)
class ScheduleConfig:
    """One entry of a channel's `schedules:`, checked (cron, time zone, interval, start,
    end); its payload is checked against the channel's schema by `generator.schemas`."""

    schedule: Schedule
    key_path: KeyPath


@dataclass(frozen=True, slots=True)
class ChannelConfig:
    name: str
    description: str
    handler_module: str
    handler_function: str
    handler: HandlerSignature
    concurrency: int
    limiter: LimiterConfig | None
    stalled_interval_ms: int
    stalled_max_count: int
    retry_attempts: int
    backoff: BackoffConfig
    keep_completed: RetentionConfig
    keep_failed: RetentionConfig
    keep_events: int
    batch_max: int
    payload: dict[str, Any]
    result: dict[str, Any] | None
    key_path: KeyPath
    priority: int = 5
    timeout_ms: int | None = None
    schedules: tuple[ScheduleConfig, ...] = ()
    resources: ResourcesSignature | None = None
    """The app's resources factory: the processor types its JobContext with what it yields."""

    @property
    def class_prefix(self) -> str:
        """`push_alerts` → `PushAlerts`: the prefix of the channel's generated classes."""
        return "".join(part.capitalize() for part in self.name.split("_"))


@dataclass(frozen=True, slots=True)
class ChannelsConfig:
    path: Path
    source_text: str
    document: LocatedDocument
    channels: tuple[ChannelConfig, ...]
    proto_package: str = "channels.v1"
    resources: ResourcesSignature | None = None

    @property
    def by_name(self) -> dict[str, ChannelConfig]:
        return {channel.name: channel for channel in self.channels}

    @property
    def root(self) -> Path:
        """The project folder: channels.yaml's folder, where handlers and schemas live."""
        return self.path.parent


def load_config(path: Path) -> ChannelsConfig:
    """Read and check channels.yaml; raise ConfigError listing every problem."""
    display = _display_name(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as error:
        raise ConfigError([Problem(display, 0, 0, "", f"cannot read: {error.strerror}")]) from None
    except UnicodeDecodeError as error:
        line = path.read_bytes()[: error.start].count(b"\n") + 1
        message = f"not UTF-8 text: byte 0x{error.object[error.start]:02x} cannot be decoded"
        raise ConfigError([Problem(display, line, 1, "", message)]) from None
    document = load_yaml(text, display)
    _check_against_format_schema(document)
    problems: list[Problem] = []
    channels = []
    data = document.data
    resources = (
        inspect_resources(path.parent, data["resources"], document, ("resources",), problems)
        if "resources" in data
        else None
    )
    for name in sorted(data["channels"]):
        channel = _build_channel(document, name, data.get("defaults", {}), path.parent, problems)
        if channel is not None:
            channels.append(dataclasses.replace(channel, resources=resources))
    if problems:
        raise ConfigError(problems)
    proto_package = data.get("grpc", {}).get("package", "channels.v1")
    return ChannelsConfig(path, text, document, tuple(channels), proto_package, resources)


def _display_name(path: Path) -> str:
    try:
        return str(path.resolve().relative_to(Path.cwd()))
    except ValueError:
        return str(path)


def _check_against_format_schema(document: LocatedDocument) -> None:
    validator = jsonschema.Draft202012Validator(format_schema())
    problems = [_explain(document, error) for error in validator.iter_errors(document.data)]
    if problems:
        raise ConfigError(_deduplicate(problems))


def _deduplicate(problems: list[Problem]) -> list[Problem]:
    seen: dict[tuple[int, int, str], Problem] = {}
    for problem in problems:
        seen.setdefault((problem.line, problem.column, problem.key_path), problem)
    return list(seen.values())


def _explain(document: LocatedDocument, error: jsonschema.ValidationError) -> Problem:
    """A jsonschema error in words a channels.yaml author can act on."""
    path: KeyPath = tuple(error.absolute_path)
    schema = error.schema if isinstance(error.schema, dict) else {}
    description = str(schema.get("description", ""))
    if error.validator == "oneOf" and "duration" in description:
        positive = "greater than zero " if "greater than zero" in description else ""
        return document.problem(
            path,
            f"bad duration {error.instance!r}: expected a duration {positive}as milliseconds "
            "(an integer) or a string with a unit: 250ms, 30s, 5m, 1h, 7d",
        )
    if error.validator == "additionalProperties" and isinstance(error.instance, dict):
        allowed = sorted(schema.get("properties", {}))
        unknown = sorted(set(error.instance) - set(allowed))
        key = unknown[0] if unknown else ""
        suggestion = difflib.get_close_matches(key, allowed, n=1)
        hint = (
            f"; did you mean {suggestion[0]!r}?"
            if suggestion
            else f"; expected one of: {', '.join(allowed)}"
        )
        return document.problem((*path, key), f"unknown key {key!r}{hint}", at_key=True)
    if error.validator == "required":
        return document.problem(path, f"missing required key: {error.message.split(' ')[0]}")
    if error.validator == "type":
        expected = error.validator_value
        return document.problem(path, f"expected {_a(expected)}, got {_describe(error.instance)}")
    if "propertyNames" in error.schema_path and isinstance(error.instance, str):
        name = error.instance
        return document.problem(
            (*path, name),
            at_key=True,
            message=f"channel name {name!r} is not valid: use lower-case letters, digits and '_', "
            "starting with a letter (it becomes a Python module and a URL segment)",
        )
    if error.validator == "pattern" and path[-1:] in (("handler",), ("resources",)):
        return document.problem(
            path, f"{path[-1]} {error.instance!r} is not of the form 'package.module:function'"
        )
    if error.validator == "minimum" and path[-1:] == ("concurrency",):
        return document.problem(path, f"concurrency must be at least 1, got {error.instance!r}")
    if error.validator == "const" and path == ("version",):
        return document.problem(path, f"unsupported version {error.instance!r}; expected 1")
    return document.problem(path, error.message)


def _a(expected: object) -> str:
    names = {
        "object": "a mapping",
        "array": "a list",
        "integer": "an integer",
        "string": "a string",
        "number": "a number",
        "boolean": "true or false",
    }
    if isinstance(expected, list):
        return " or ".join(names.get(str(item), str(item)) for item in expected)
    return names.get(str(expected), str(expected))


def _describe(value: object) -> str:
    kinds = {
        dict: "a mapping",
        list: "a list",
        str: "the string",
        bool: "the boolean",
        int: "the integer",
        float: "the number",
    }
    if value is None:
        return "nothing (null)"
    kind = kinds.get(type(value), type(value).__name__)
    return kind if isinstance(value, dict | list) else f"{kind} {value!r}"


def _merged(defaults: dict[str, Any], channel: dict[str, Any]) -> dict[str, Any]:
    merged = dict(defaults)
    for key, value in channel.items():
        base = merged.get(key)
        merged[key] = (
            _merged(base, value) if isinstance(base, dict) and isinstance(value, dict) else value
        )
    return merged


def _build_channel(
    document: LocatedDocument,
    name: str,
    defaults: dict[str, Any],
    root: Path,
    problems: list[Problem],
) -> ChannelConfig | None:
    path: KeyPath = ("channels", name)
    raw = _merged(defaults, document.data["channels"][name])
    if (
        keyword.iskeyword(name)
        or keyword.issoftkeyword(name)
        or name in PROTO_KEYWORDS
        or name in RESERVED_NAMES
    ):
        problems.append(
            document.problem(
                path,
                at_key=True,
                message=f"channel name {name!r} is reserved "
                "(a Python or protobuf keyword, or a generated module name); choose another",
            )
        )
        return None
    module, function = raw["handler"].split(":")
    payload_class = "".join(part.capitalize() for part in name.split("_")) + "Payload"
    handler = inspect_handler(
        root, module, function, document, (*path, "handler"), problems, payload_class
    )
    if handler is None:
        return None
    limiter = raw.get("limiter")
    retry = raw.get("retry", {})
    backoff = retry.get("backoff", {})
    stalled = raw.get("stalled", {})
    keep = raw.get("keep", {})
    return ChannelConfig(
        name=name,
        description=raw.get("description", "").strip(),
        handler_module=module,
        handler_function=function,
        handler=handler,
        concurrency=raw.get("concurrency", 1),
        limiter=LimiterConfig(
            limiter["max"], parse_duration(limiter["duration"]), limiter.get("key")
        )
        if limiter
        else None,
        stalled_interval_ms=parse_duration(stalled.get("interval", "30s")),
        stalled_max_count=stalled.get("max_count", 1),
        retry_attempts=retry.get("attempts", 1),
        backoff=BackoffConfig(
            type=backoff.get("type", "exponential"),
            delay_ms=parse_duration(backoff.get("delay", "1s")),
            max_delay_ms=parse_duration(backoff["max_delay"]) if "max_delay" in backoff else None,
            jitter=float(backoff.get("jitter", 0)),
        ),
        keep_completed=_retention(keep.get("completed", {"count": 1000, "age": "1h"})),
        keep_failed=_retention(keep.get("failed", {"count": 10000, "age": "7d"})),
        keep_events=keep.get("events", 10_000),
        batch_max=raw.get("batch_max", 1000),
        payload=raw["payload"],
        result=raw.get("result"),
        key_path=path,
        priority=raw.get("priority", 5),
        timeout_ms=parse_duration(raw["timeout"]) if "timeout" in raw else None,
        schedules=_schedules(document, path, raw.get("schedules", {}), problems),
    )


def _schedules(
    document: LocatedDocument, channel_path: KeyPath, raw: dict[str, Any], problems: list[Problem]
) -> tuple[ScheduleConfig, ...]:
    found = []
    for name in sorted(raw):
        path: KeyPath = (*channel_path, "schedules", name)
        schedule = _schedule(document, path, name, raw[name], problems)
        if schedule is not None:
            found.append(ScheduleConfig(schedule, path))
    return tuple(found)


def _schedule(
    document: LocatedDocument,
    path: KeyPath,
    name: str,
    raw: dict[str, Any],
    problems: list[Problem],
) -> Schedule | None:
    if ("cron" in raw) == ("every" in raw):
        problems.append(
            document.problem(path, f"schedule {name!r}: give either `cron` or `every`", at_key=True)
        )
        return None
    timezone = raw.get("timezone", "UTC")
    try:
        check_timezone(timezone)
    except ValueError as error:
        problems.append(document.problem((*path, "timezone"), str(error)))
        return None
    bounds: dict[str, int | None] = {}
    for key in ("start", "end"):
        bounds[key] = None
        if key in raw:
            moment = _moment(raw[key], timezone)
            if moment is None:
                problems.append(
                    document.problem(
                        (*path, key),
                        f"expected an ISO 8601 date-time such as 2026-01-01T08:00:00+01:00, "
                        f"got {raw[key]!r}",
                    )
                )
                return None
            bounds[key] = moment
    try:
        return Schedule(
            name=name,
            payload=raw["payload"],
            cron=raw.get("cron"),
            every_ms=parse_duration(raw["every"]) if "every" in raw else None,
            timezone=timezone,
            start_ms=bounds["start"],
            end_ms=bounds["end"],
            catch_up=raw.get("catch_up", "once"),
            paused=raw.get("paused", False),
        )
    except InvalidScheduleError as error:
        field, _, message = str(error).partition(": ")
        where: KeyPath = (*path, field) if field in ("cron", "every", "end") else path
        problems.append(document.problem(where, message or str(error)))
        return None


def _moment(value: object, timezone: str) -> int | None:
    """`value` (a YAML timestamp or an ISO 8601 string) as ms; without an offset, in
    `timezone`."""
    if isinstance(value, str):
        try:
            value = datetime.fromisoformat(value)
        except ValueError:
            return None
    if isinstance(value, date) and not isinstance(value, datetime):
        value = datetime.combine(value, time())
    if not isinstance(value, datetime):
        return None
    if value.tzinfo is None:
        value = value.replace(tzinfo=check_timezone(timezone))
    return as_ms(value)


def _retention(raw: dict[str, Any]) -> RetentionConfig:
    age = raw.get("age")
    return RetentionConfig(raw.get("count"), parse_duration(age) if age is not None else None)
