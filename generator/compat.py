"""Breaking changes between two versions of channels.yaml: `runtime generate --check-compat`.

`check_compat(config, against)` loads the current project and an older version of it (a
git ref, whose files are read with `git archive`, or the path of an older channels.yaml)
and lists every change that breaks a producer or a consumer already deployed, each with
the file and line it concerns and why. The rules (docs/grpc.md, "Compatibility"):

Payloads (producers write them, handlers read them): a change breaks when it rejects
something the old schema accepted:
- a removed channel, property, enum value or oneOf branch;
- a new required property, or an optional one made required;
- a narrowed type (`number` → `integer`, nullable → not), enum or const;
- a raised `minimum`/`exclusiveMinimum`/`minLength`/`minItems`, a lowered
  `maximum`/`exclusiveMaximum`/`maxLength`/`maxItems`, or one that is new;
- a new or changed `pattern`, `format` or `multipleOf`.

Results (handlers write them, readers of job results read them): a change breaks when it
produces something old readers did not expect: a removed result schema, a removed or
no-longer-required required property, a widened type, enum or bound, a new enum value or
branch.

The wire (gRPC clients built from the old channels.proto): a field or enum value whose
proto number or proto type changed, in the numbers the lock files of both versions give.

Additive changes (new channels, new optional properties, wider payload constraints,
documentation) pass.
"""

from __future__ import annotations

import io
import subprocess
import tarfile
import tempfile
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from generator.config import ChannelConfig, ChannelsConfig, load_config
from generator.errors import ConfigError, GeneratorError
from generator.lock import Lock, lock_path, read_lock
from generator.proto import ConstDef, FieldDef, MessageDef, ProtoFile, build_proto_file
from generator.render import proto_channels
from generator.schemas import ChannelSchemas, load_schemas
from generator.yaml_source import KeyPath, LocatedDocument, load_yaml

__all__ = ["Breaking", "CompatError", "Version", "check_compat", "load_version"]

_LOWER = ("minimum", "exclusiveMinimum", "minLength", "minItems", "minProperties")
_UPPER = ("maximum", "exclusiveMaximum", "maxLength", "maxItems", "maxProperties")
_EXACT = ("pattern", "format", "multipleOf")


class CompatError(GeneratorError):
    """The older version could not be read (an unknown git ref, a missing file)."""


@dataclass(frozen=True, slots=True)
class Breaking:
    """One breaking change: where (`file:line`), what (`subject`) and why."""

    file: str
    line: int
    subject: str
    reason: str

    def __str__(self) -> str:
        where = f"{self.file}:{self.line}" if self.line else self.file
        return f"{where}: {self.subject}: {self.reason}"


@dataclass(slots=True)
class Version:
    """One version of a project: its config, bundled schemas, lock and proto mapping."""

    config: ChannelsConfig
    schemas: dict[str, ChannelSchemas]
    lock: Lock
    proto: ProtoFile
    label: str  # "" for the working tree, else the git ref or path it came from
    _documents: dict[Path, LocatedDocument | None]

    def shown(self, path: Path) -> str:
        try:
            relative = path.resolve().relative_to(self.config.root.resolve()).as_posix()
        except ValueError:
            relative = str(path)
        return f"{self.label}:{relative}" if self.label else relative

    def locate(self, channel: ChannelConfig, role: str, pointer: str) -> tuple[str, int]:
        """The file and line of `pointer` (a JSON pointer in the channel's bundled `role`
        schema): in the schema file when the channel's schema is a whole-file `$ref`,
        else in channels.yaml; the nearest enclosing key when the exact one is not there."""
        raw = channel.payload if role == "payload" else channel.result
        parts = _pointer_parts(pointer)
        if isinstance(raw, Mapping) and set(raw) == {"$ref"} and "#" not in str(raw["$ref"]):
            file = (self.config.root / str(raw["$ref"])).resolve()
            document = self._document(file)
            if document is not None:
                return self.shown(file), document.position(tuple(parts))[0]
        path: KeyPath = (*channel.key_path, role, *parts)
        return self.shown(self.config.path), self.config.document.position(path)[0]

    def channel_line(self, name: str, *key: str) -> tuple[str, int]:
        position = self.config.document.position(("channels", name, *key), at_key=True)
        return self.shown(self.config.path), position[0]

    def lock_line(self, path: KeyPath) -> tuple[str, int]:
        file = lock_path(self.config.path)
        document = self._document(file)
        if document is None:
            return self.shown(self.config.path), 0
        return self.shown(file), document.position(path)[0]

    def _document(self, file: Path) -> LocatedDocument | None:
        if file not in self._documents:
            try:
                self._documents[file] = load_yaml(file.read_text(encoding="utf-8"), str(file))
            except (OSError, UnicodeDecodeError, ConfigError):
                self._documents[file] = None
        return self._documents[file]


def load_version(config_path: Path, label: str = "") -> Version:
    """Read a project version; raises ConfigError when it is not valid."""
    config = load_config(config_path)
    schemas = load_schemas(config)
    lock = read_lock(lock_path(config_path))
    proto = build_proto_file(proto_channels(config, schemas, lock))
    return Version(config, schemas, lock, proto, label, {})


def check_compat(config_path: Path, against: str) -> list[Breaking]:
    """Every breaking change from the version `against` (a git ref, or the path of an older
    channels.yaml) to the project at `config_path`, sorted by file and line."""
    new = load_version(config_path)
    with _older(config_path, against) as (old_path, label):
        return compare(load_version(old_path, label), new)


@contextmanager
def _older(config_path: Path, against: str) -> Iterator[tuple[Path, str]]:
    candidate = Path(against)
    if candidate.is_file():
        yield candidate, str(candidate.parent / candidate.stem)
        return
    folder = config_path.resolve().parent
    top = _git(folder, "rev-parse", "--show-toplevel").strip()
    prefix = folder.relative_to(Path(top)).as_posix()
    _git(folder, "rev-parse", "--verify", "--quiet", f"{against}^{{commit}}")
    archive = subprocess.run(
        ["git", "archive", "--format=tar", against, "--", prefix if prefix != "." else "."],
        cwd=top,
        capture_output=True,
        check=False,
    )
    if archive.returncode != 0:
        message = archive.stderr.decode(errors="replace").strip()
        raise CompatError(f"cannot read {against}: {message}")
    with tempfile.TemporaryDirectory(prefix="channelkit-compat-") as tmp:
        with tarfile.open(fileobj=io.BytesIO(archive.stdout)) as tar:
            tar.extractall(tmp, filter="data")
        old = Path(tmp) / prefix / config_path.name
        if not old.is_file():
            raise CompatError(f"{config_path.name} does not exist at {against}")
        yield old, against


def _git(folder: Path, *args: str) -> str:
    try:
        done = subprocess.run(
            ["git", *args], cwd=folder, capture_output=True, text=True, check=False
        )
    except FileNotFoundError:
        raise CompatError("git is not installed; pass the path of an older channels.yaml") from None
    if done.returncode != 0:
        detail = done.stderr.strip() or f"git {' '.join(args)} failed"
        raise CompatError(f"not a git ref or a file: {args[-1].split('^')[0]} ({detail})")
    return done.stdout


def compare(old: Version, new: Version) -> list[Breaking]:
    found: list[Breaking] = []
    for name, channel in old.config.by_name.items():
        current = new.config.by_name.get(name)
        if current is None:
            file, line = old.channel_line(name)
            found.append(
                Breaking(file, line, f"channels.{name}", "channel removed: its producers fail")
            )
            continue
        subject = f"channels.{name}"
        payload = _Walk(old, new, channel, current, "payload", found)
        payload.compare(old.schemas[name].payload, new.schemas[name].payload, "#")
        old_result, new_result = old.schemas[name].result, new.schemas[name].result
        if old_result is not None and new_result is None:
            file, line = old.channel_line(name, "result")
            found.append(
                Breaking(file, line, f"{subject}.result", "result schema removed: readers break")
            )
        elif old_result is not None and new_result is not None:
            _Walk(old, new, channel, current, "result", found).compare(old_result, new_result, "#")
    found.extend(_wire(old, new))
    return sorted(set(found), key=lambda b: (b.file, b.line, b.subject, b.reason))


class _Walk:
    """Compares one channel's payload (or result) schema, old against new."""

    def __init__(
        self,
        old: Version,
        new: Version,
        old_channel: ChannelConfig,
        new_channel: ChannelConfig,
        role: str,
        found: list[Breaking],
    ) -> None:
        self.old, self.new = old, new
        self.old_channel, self.new_channel = old_channel, new_channel
        self.role = role
        self.reads = role == "payload"  # True: narrowing breaks; False: widening breaks
        self.found = found
        self.seen: set[tuple[str, str]] = set()
        schemas = (old.schemas, new.schemas)
        picked = [
            s[old_channel.name if i == 0 else new_channel.name] for i, s in enumerate(schemas)
        ]
        self.old_defs = _defs(picked[0].payload if role == "payload" else picked[0].result)
        self.new_defs = _defs(picked[1].payload if role == "payload" else picked[1].result)

    def report(self, pointer: str, reason: str, *, in_old: bool = False) -> None:
        if in_old:
            file, line = self.old.locate(self.old_channel, self.role, pointer)
        else:
            file, line = self.new.locate(self.new_channel, self.role, pointer)
        subject = f"channels.{self.new_channel.name}.{self.role}{pointer}"
        self.found.append(Breaking(file, line, subject, reason))

    def compare(self, old: Any, new: Any, pointer: str) -> None:
        old, new = self.resolve(old, self.old_defs), self.resolve(new, self.new_defs)
        if not isinstance(old, Mapping) or not isinstance(new, Mapping):
            return
        key = (repr(sorted(old.items(), key=str)), repr(sorted(new.items(), key=str)))
        if key in self.seen:  # a recursive definition: compared once
            return
        self.seen.add(key)
        self.types(old, new, pointer)
        self.values(old, new, pointer)
        self.bounds(old, new, pointer)
        self.properties(old, new, pointer)
        self.branches(old, new, pointer)
        for word in ("items", "additionalProperties"):
            if isinstance(old.get(word), Mapping) and isinstance(new.get(word), Mapping):
                self.compare(old[word], new[word], f"{pointer}/{word}")

    def resolve(self, schema: Any, defs: Mapping[str, Any]) -> Any:
        hops = 0
        while isinstance(schema, Mapping) and isinstance(schema.get("$ref"), str) and hops < 50:
            name = schema["$ref"].removeprefix("#/$defs/")
            schema = defs.get(name, {})
            hops += 1
        return schema

    def types(self, old: Mapping[str, Any], new: Mapping[str, Any], pointer: str) -> None:
        before, after = _types(old), _types(new)
        if before is None or after is None:
            if before is None and after is not None and self.reads:
                self.report(pointer, f"type narrowed: any → {_join(after)}")
            elif after is None and before is not None and not self.reads:
                self.report(pointer, f"type widened: {_join(before)} → any")
            return
        lost = {t for t in before if not _accepts(after, t)}
        gained = {t for t in after if not _accepts(before, t)}
        if self.reads and lost:
            self.report(pointer, f"type narrowed: {_join(before)} → {_join(after)}")
        elif not self.reads and gained:
            self.report(pointer, f"type widened: {_join(before)} → {_join(after)}")

    def values(self, old: Mapping[str, Any], new: Mapping[str, Any], pointer: str) -> None:
        before, after = _allowed(old), _allowed(new)
        if before == after:
            return
        if self.reads:
            if after is not None and before is None:
                self.report(pointer, f"now restricted to {_join(after)}")
            elif after is not None and before is not None:
                for value in [v for v in before if v not in after]:
                    self.report(pointer, f"enum value {value!r} removed: producers sending it fail")
        elif before is not None:
            if after is None:
                self.report(pointer, f"no longer restricted to {_join(before)}: readers break")
            else:
                for value in [v for v in after if v not in before]:
                    self.report(pointer, f"new enum value {value!r}: readers may not know it")

    def bounds(self, old: Mapping[str, Any], new: Mapping[str, Any], pointer: str) -> None:
        for word in (*_LOWER, *_UPPER):
            before, after = old.get(word), new.get(word)
            if before == after or isinstance(before, bool) or isinstance(after, bool):
                continue
            lower = word in _LOWER
            if before is None:
                tighter = True
            elif after is None:
                tighter = False
            else:
                tighter = after > before if lower else after < before
            if tighter == self.reads:
                verb = "narrowed" if tighter else "widened"
                self.report(pointer, f"{word} {verb}: {_show(before)} → {_show(after)}")
        for word in _EXACT:
            before, after = old.get(word), new.get(word)
            if before == after:
                continue
            if (self.reads and after is not None) or (not self.reads and before is not None):
                self.report(pointer, f"{word} changed: {_show(before)} → {_show(after)}")

    def properties(self, old: Mapping[str, Any], new: Mapping[str, Any], pointer: str) -> None:
        before, after = old.get("properties"), new.get("properties")
        if not isinstance(before, Mapping) or not isinstance(after, Mapping):
            return
        old_required, new_required = set(old.get("required", [])), set(new.get("required", []))
        for name in before:
            child = f"{pointer}/properties/{_escape(name)}"
            if name not in after:
                if self.reads:
                    self.report(child, "property removed: producers sending it fail", in_old=True)
                elif name in old_required:
                    self.report(child, "required property removed: readers break", in_old=True)
                continue
            if self.reads and name in new_required and name not in old_required:
                self.report(child, "optional property made required: producers leaving it out fail")
            if not self.reads and name in old_required and name not in new_required:
                self.report(child, "required property made optional: readers break")
            self.compare(before[name], after[name], child)
        for name in after:
            if name not in before and self.reads and name in new_required:
                child = f"{pointer}/properties/{_escape(name)}"
                self.report(child, "new required property: producers leaving it out fail")

    def branches(self, old: Mapping[str, Any], new: Mapping[str, Any], pointer: str) -> None:
        for word in ("oneOf", "anyOf"):
            before, after = old.get(word), new.get(word)
            if not isinstance(before, list) or not isinstance(after, list):
                continue
            old_tags = [_branch_tag(b, self.old_defs) for b in before]
            new_tags = [_branch_tag(b, self.new_defs) for b in after]
            for index, tag in enumerate(old_tags):
                if tag not in new_tags:
                    if self.reads:
                        self.report(
                            f"{pointer}/{word}/{index}", f"branch {tag} removed", in_old=True
                        )
                    continue
                new_index = new_tags.index(tag)
                self.compare(before[index], after[new_index], f"{pointer}/{word}/{new_index}")
            if not self.reads:
                for index, tag in enumerate(new_tags):
                    if tag not in old_tags:
                        self.report(f"{pointer}/{word}/{index}", f"new branch {tag}: readers break")


def _wire(old: Version, new: Version) -> list[Breaking]:
    """Proto numbers and types that changed for a field or enum value both versions have."""
    found: list[Breaking] = []
    old_messages = _messages(old.proto)
    for name, (channel, message) in _messages(new.proto).items():
        if name not in old_messages:
            continue
        before = {m.json: m for m in old_messages[name][1].members}
        relative = message.full[len(channel) :]
        for member in message.members:
            was = before.get(member.json)
            if was is None:
                continue
            where: KeyPath = ("channels", _channel_name(new, channel), "messages", relative)
            where = (*where, "fields", member.json)
            if was.number != member.number:
                file, line = new.lock_line(where)
                found.append(
                    Breaking(
                        file,
                        line,
                        f"proto {message.full}.{member.json}",
                        f"proto number changed: {was.number} → {member.number} "
                        "(clients built from the old .proto write into the wrong field)",
                    )
                )
            old_type, new_type = _proto_type(was), _proto_type(member)
            if old_type != new_type:
                file, line = new.lock_line(where)
                found.append(
                    Breaking(
                        file,
                        line,
                        f"proto {message.full}.{member.json}",
                        f"proto type changed: {old_type} → {new_type}",
                    )
                )
        old_enums = {e.name: e for e in old_messages[name][1].enums}
        for enum in message.enums:
            was_enum = old_enums.get(enum.name)
            if was_enum is None:
                continue
            numbers = {value_name: n for n, value_name, _ in was_enum.numbered()}
            for number, value_name, _ in enum.numbered():
                if value_name in numbers and numbers[value_name] != number:
                    key: KeyPath = ("channels", _channel_name(new, channel), "enums")
                    file, line = new.lock_line(
                        (*key, enum.full[len(channel) :], "values", value_name)
                    )
                    found.append(
                        Breaking(
                            file,
                            line,
                            f"proto {enum.full}.{value_name}",
                            f"proto number changed: {numbers[value_name]} → {number}",
                        )
                    )
    return found


def _messages(proto: ProtoFile) -> dict[str, tuple[str, MessageDef]]:
    return {
        m.full: (item.channel.type_prefix, m)
        for item in proto.channels
        for m in item.payload.walk()
    }


def _channel_name(version: Version, prefix: str) -> str:
    return next((c.name for c in version.config.channels if c.class_prefix == prefix), prefix)


def _proto_type(member: FieldDef | ConstDef) -> str:
    if isinstance(member, ConstDef):
        return "reserved (filled in by the server)"
    kind = member.type_name
    return {"list": f"repeated {kind}", "map": f"map<string, {kind}>"}.get(member.shape, kind)


def _defs(schema: Mapping[str, Any] | None) -> Mapping[str, Any]:
    defs = schema.get("$defs", {}) if isinstance(schema, Mapping) else {}
    return defs if isinstance(defs, Mapping) else {}


def _types(schema: Mapping[str, Any]) -> set[str] | None:
    declared = schema.get("type")
    if isinstance(declared, str):
        return {declared}
    if isinstance(declared, list):
        return {str(t) for t in declared}
    return None


def _accepts(types: set[str], kind: str) -> bool:
    return kind in types or (kind == "integer" and "number" in types)


def _allowed(schema: Mapping[str, Any]) -> list[Any] | None:
    if "const" in schema:
        return [schema["const"]]
    enum = schema.get("enum")
    return list(enum) if isinstance(enum, list) else None


def _branch_tag(branch: Any, defs: Mapping[str, Any]) -> str:
    if isinstance(branch, Mapping):
        ref = branch.get("$ref")
        if isinstance(ref, str):
            return ref.rsplit("/", 1)[-1]
        for word in ("title", "type"):
            value = branch.get(word)
            if isinstance(value, str):
                return value
    return repr(branch)


def _join(values: Any) -> str:
    return " | ".join(sorted(repr(v) if not isinstance(v, str) else v for v in values))


def _show(value: Any) -> str:
    return "none" if value is None else repr(value) if isinstance(value, str) else str(value)


def _escape(key: str) -> str:
    return key.replace("~", "~0").replace("/", "~1")


def _pointer_parts(pointer: str) -> list[str | int]:
    """`#/properties/a~1b/oneOf/0` → ["properties", "a/b", "oneOf", 0] (a key path)."""
    text = pointer.removeprefix("#").strip("/")
    parts: list[str | int] = []
    for raw in text.split("/") if text else []:
        part = raw.replace("~1", "/").replace("~0", "~")
        after_list = bool(parts) and parts[-1] in ("oneOf", "anyOf", "allOf", "enum", "required")
        parts.append(int(part) if part.isdigit() and after_list else part)
    return parts
