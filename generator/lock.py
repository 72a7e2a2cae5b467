"""The lock file: the proto numbers of every field and enum value, kept across generations.

`channels.lock.yaml` sits beside channels.yaml (`<name>.lock.yaml` beside `<name>.yaml`)
and is committed with it. Without it, removing one property from a payload schema would
renumber every later field of its message, and deployed gRPC clients would write into the
wrong fields. With it:

- a field keeps the number it was first given; a new field gets the next free number;
- a removed field moves to `reserved` (number and name), rendered as `reserved` in
  channels.proto and never given out again;
- enum values work the same way (0 stays `<ENUM>_UNSPECIFIED`).

Numbers are kept per channel and per message, named relative to the channel's payload
(`Payload`, `Payload.Attachment`), so a rename is a rename of a key here:

- to rename a field and keep its number, rename its key under `fields:` in the same change
  as the schema (otherwise it is a removal plus an addition);
- to rename a channel, rename its key under `channels:`.

`read_lock` checks a hand-edited file (numbers in range, no number twice in one message,
no number both live and reserved) and raises ConfigError naming the line; `lock_from_proto`
derives the next lock from what was rendered; `render_lock` writes it, byte-identical run
to run. The layout:

    version: 1
    channels:
      email:
        messages:
          Payload:
            fields: {to: 1, cc: 2, subject: 4}
            reserved: {3: bcc}         # number: the name it had
        enums:
          Payload.Priority:
            values: {PRIORITY_NORMAL: 1}
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml

from generator.errors import ConfigError, Problem
from generator.yaml_source import KeyPath, LocatedDocument, load_yaml

if TYPE_CHECKING:
    from generator.proto import ProtoFile

__all__ = [
    "LOCK_VERSION",
    "ChannelLock",
    "Lock",
    "NumberTable",
    "lock_from_proto",
    "lock_path",
    "read_lock",
    "render_lock",
]

LOCK_VERSION = 1
_MAX_FIELD = 536_870_911  # 2^29 - 1, protobuf's largest field number
_PROTOBUF_RESERVED = range(19_000, 20_000)  # numbers protobuf keeps for itself


@dataclass(slots=True)
class NumberTable:
    """One message's field numbers (or one enum's value numbers), by name."""

    numbers: dict[str, int] = field(default_factory=dict)
    reserved: dict[int, str] = field(default_factory=dict)  # number → the name it had


class Allocator:
    """Hands out numbers for one message while it is built: kept ones, then fresh ones."""

    def __init__(self, table: NumberTable | None) -> None:
        self._table = table or NumberTable()
        self._taken = {*self._table.numbers.values(), *self._table.reserved}

    def number(self, name: str) -> int:
        kept = self._table.numbers.get(name)
        if kept is not None:
            return kept
        candidate = max(self._taken, default=0) + 1
        while candidate in _PROTOBUF_RESERVED:
            candidate += 1
        self._taken.add(candidate)
        return candidate

    def reserved(self, used: set[str]) -> list[tuple[int, str]]:
        """What is reserved once `used` names are live: the old reserved numbers and every
        locked name not used any more, by number. (A removed name that comes back gets a
        new number; its old one stays reserved.)"""
        gone = {number: name for name, number in self._table.numbers.items() if name not in used}
        return sorted({**self._table.reserved, **gone}.items())


@dataclass(slots=True)
class ChannelLock:
    messages: dict[str, NumberTable] = field(default_factory=dict)
    enums: dict[str, NumberTable] = field(default_factory=dict)


@dataclass(slots=True)
class Lock:
    """Every channel's numbers; empty when no lock file exists yet."""

    channels: dict[str, ChannelLock] = field(default_factory=dict)
    text: str = ""  # the file as read ("" when there was none)


def lock_path(config_path: Path) -> Path:
    """`channels.yaml` → `channels.lock.yaml`, in the same folder."""
    return config_path.with_name(f"{config_path.stem}.lock.yaml")


def read_lock(path: Path, display: str | None = None) -> Lock:
    """The lock at `path` (an empty one when the file does not exist).

    Raises ConfigError listing every problem, each with the lock file's line and column.
    """
    shown = display or str(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return Lock()
    except (OSError, UnicodeDecodeError) as error:
        raise ConfigError(
            [Problem(shown, 0, 0, "", f"cannot read the lock file: {error}")]
        ) from None
    return parse_lock(text, shown)


def parse_lock(text: str, shown: str) -> Lock:
    document = load_yaml(text, shown)
    problems: list[Problem] = []
    lock = Lock(text=text)
    data = document.data
    if not isinstance(data, dict):
        raise ConfigError([document.problem((), "the lock file must be a mapping")])
    _keys(document, (), data, {"version", "channels"}, problems)
    if data.get("version") != LOCK_VERSION:
        problems.append(
            document.problem(("version",), f"unsupported lock version; expected {LOCK_VERSION}")
        )
    channels = data.get("channels") or {}
    if not isinstance(channels, dict):
        problems.append(document.problem(("channels",), "expected a mapping of channels"))
        channels = {}
    for name, raw in channels.items():
        path: KeyPath = ("channels", name)
        if not isinstance(raw, dict):
            problems.append(document.problem(path, "expected a mapping with `messages`/`enums`"))
            continue
        _keys(document, path, raw, {"messages", "enums"}, problems)
        channel = ChannelLock()
        for kind, numbers_key, low in (("messages", "fields", 1), ("enums", "values", 1)):
            tables = raw.get(kind) or {}
            if not isinstance(tables, dict):
                problems.append(document.problem((*path, kind), "expected a mapping"))
                continue
            target = channel.messages if kind == "messages" else channel.enums
            for table_name, table in tables.items():
                parsed = _table(
                    document, (*path, kind, table_name), table, numbers_key, low, problems
                )
                if parsed is not None:
                    target[table_name] = parsed
        lock.channels[name] = channel
    if problems:
        raise ConfigError(problems)
    return lock


def _keys(
    document: LocatedDocument,
    path: KeyPath,
    data: dict[str, Any],
    allowed: set[str],
    problems: list[Problem],
) -> None:
    for key in sorted(set(data) - allowed):
        problems.append(
            document.problem(
                (*path, key),
                f"unknown key {key!r}; expected one of: {', '.join(sorted(allowed))}",
                at_key=True,
            )
        )


def _table(
    document: LocatedDocument,
    path: KeyPath,
    raw: Any,
    numbers_key: str,
    low: int,
    problems: list[Problem],
) -> NumberTable | None:
    if not isinstance(raw, dict):
        problems.append(document.problem(path, f"expected a mapping with `{numbers_key}`"))
        return None
    _keys(document, path, raw, {numbers_key, "reserved"}, problems)
    table = NumberTable()
    seen: dict[int, KeyPath] = {}
    for part in (numbers_key, "reserved"):
        entries = raw.get(part) or {}
        if not isinstance(entries, dict):
            problems.append(document.problem((*path, part), "expected a mapping"))
            continue
        for key, value in entries.items():
            where: KeyPath = (*path, part, key)
            name, number = (key, value) if part == numbers_key else (value, _int(key))
            if not isinstance(number, int) or isinstance(number, bool) or not isinstance(name, str):
                expected = "name: number" if part == numbers_key else "number: name"
                problems.append(
                    document.problem(where, f"expected {expected}, got {key}: {value!r}")
                )
                continue
            if not low <= number <= _MAX_FIELD or number in _PROTOBUF_RESERVED:
                problems.append(
                    document.problem(
                        where,
                        f"number {number} is out of range: use {low} to {_MAX_FIELD}, "
                        "outside 19000-19999",
                    )
                )
                continue
            if number in seen:
                first = document.position(seen[number], at_key=True)[0]
                problems.append(
                    document.problem(
                        where,
                        f"number {number} is used twice in {path[-1]} (first on line {first}); "
                        "a number is never reused, not even once reserved",
                    )
                )
                continue
            seen[number] = where
            if part == numbers_key:
                table.numbers[name] = number
            else:
                table.reserved[number] = name
    return table


def _int(key: str) -> int | None:
    try:
        return int(key)
    except ValueError:
        return None


def lock_from_proto(proto: ProtoFile) -> Lock:
    """The lock that describes `proto`: its live numbers and what it reserves."""
    lock = Lock()
    for item in proto.channels:
        prefix = item.channel.type_prefix
        channel = ChannelLock()
        for message in item.payload.walk():
            table = NumberTable(
                {member.json: member.number for member in message.members},
                dict(message.reserved),
            )
            channel.messages[_relative(message.full, prefix)] = table
            for enum in message.enums:
                channel.enums[_relative(enum.full, prefix)] = NumberTable(
                    {name: number for number, name, _ in enum.numbered()},
                    dict(enum.reserved),
                )
        lock.channels[item.channel.name] = channel
    return lock


def _relative(full: str, prefix: str) -> str:
    return full[len(prefix) :] if full.startswith(prefix) else full


_HEADER = """\
# Wire identity of channels.proto, kept by `runtime generate`: commit it with {source}.
# A field or enum value keeps its number for good; a removed one moves to `reserved` and
# its number is never given out again. To rename a field (or a channel) and keep its
# numbers, rename its key here in the same change. See docs/grpc.md, "Stable numbers".
"""


def render_lock(lock: Lock, source_name: str) -> str:
    """The lock file's text: sorted, one entry a line, the same bytes run to run."""
    lines = [_HEADER.format(source=source_name).rstrip("\n"), f"version: {LOCK_VERSION}"]
    if not lock.channels:
        lines.append("channels: {}")
        return "\n".join(lines) + "\n"
    lines.append("channels:")
    for name in sorted(lock.channels):
        channel = lock.channels[name]
        lines.append(f"  {_key(name)}:")
        for kind, numbers_key, tables in (
            ("messages", "fields", channel.messages),
            ("enums", "values", channel.enums),
        ):
            if not tables:
                continue
            lines.append(f"    {kind}:")
            for table_name in sorted(tables):
                table = tables[table_name]
                lines.append(f"      {_key(table_name)}:")
                parts: tuple[tuple[str, dict[Any, Any]], ...] = (
                    (numbers_key, table.numbers),
                    ("reserved", table.reserved),
                )
                for part, entries in parts:
                    if not entries and part == "reserved":
                        continue
                    if not entries:
                        lines.append(f"        {part}: {{}}")
                        continue
                    lines.append(f"        {part}:")
                    if part == "reserved":
                        rows = [(str(n), _key(name)) for n, name in sorted(table.reserved.items())]
                    else:
                        ordered = sorted(table.numbers.items(), key=lambda e: (e[1], e[0]))
                        rows = [(_key(name), str(n)) for name, n in ordered]
                    lines.extend(f"          {key}: {value}" for key, value in rows)
    return "\n".join(lines) + "\n"


def _key(name: str) -> str:
    """`name` as a YAML key: plain when it reads back as the same string, else quoted."""
    plain = yaml.safe_load(f"{name}: 0") if name else None
    if isinstance(plain, dict) and list(plain) == [name] and name.strip() == name:
        return name
    return json.dumps(name, ensure_ascii=False)
