"""The channels as an AsyncAPI 3.0.0 document: `asyncapi.yaml` in the generated package.

One AsyncAPI channel per channelkit channel, addressed by its Redis stream key; a `send`
operation (enqueue: HTTP, gRPC and the generated producers) and a `receive` operation (the
workers) on each; one message per channel whose payload is the channel's payload schema.

Payload schemas are written in JSON Schema 2020-12, while AsyncAPI 3.0's default schema
format is the AsyncAPI Schema Object, a superset of JSON Schema draft 07. We convert rather
than wrap them in a Multi Format Schema Object with
`schemaFormat: application/schema+json;version=draft-2020-12`: the official AsyncAPI 3.0
JSON Schema accepts any `schemaFormat` string but then checks nothing inside the schema, and
AsyncAPI tools (parser, Studio, generator) reject formats they do not know, 2020-12 among
them. Converted, every payload schema is checked by the official document schema and read
by every tool. The conversion is small because `generator.schemas` already refuses the
2020-12 keywords without a draft 07 equivalent:
- `$defs` become `components.schemas` and `#/$defs/X` refs become `#/components/schemas/X`;
- a `$ref` with sibling keywords (ignored beside `$ref` in draft 07) moves into `allOf`;
- the OpenAPI-style `discriminator: {propertyName: p}` becomes AsyncAPI's `discriminator: p`;
- `$schema` is dropped (the format is AsyncAPI Schema, not 2020-12).
"""

from __future__ import annotations

import copy
import json
from collections.abc import Iterator
from typing import Any

import yaml

from generator.config import ChannelConfig, ChannelsConfig
from generator.schemas import ChannelSchemas

__all__ = ["render_asyncapi"]

ASYNCAPI_VERSION = "3.0.0"
# Not the project folder's name: output must not depend on where the project is checked out
# (CI clones it into another folder; the determinism test copies it elsewhere).
TITLE = "Channelkit"
# runtime.engine.client.DEFAULT_PREFIX and runtime.engine.keys.CONSUMER_GROUP; not imported,
# so that the generator does not load the runtime (redis, taskiq) to write a YAML file.
DEFAULT_PREFIX = "channelkit"
CONSUMER_GROUP = "channelkit"
CONTENT_TYPE = "application/json"
SERVER = "redis"

_DEFS_REF = "#/$defs/"
_SCHEMAS_REF = "#/components/schemas/"
# Keywords whose values are data, not schemas: copied as they are.
_DATA_KEYWORDS = frozenset({"const", "enum", "default", "examples"})

# One bundled schema (a channel's payload or result): its `$defs` by name.
_Bundle = tuple[str, dict[str, Any]]


class _Dumper(yaml.SafeDumper):
    """Safe YAML without anchors and aliases: equal sub-trees are written out each time."""

    def ignore_aliases(self, data: Any) -> bool:
        return True


def render_asyncapi(config: ChannelsConfig, schemas: dict[str, ChannelSchemas]) -> str:
    """The AsyncAPI document as YAML, without the generated-file header."""
    document = _document(config, schemas)
    return yaml.dump(
        document,
        Dumper=_Dumper,
        sort_keys=False,
        allow_unicode=True,
        default_flow_style=False,
        width=100,
    )


def stream_key(channel: str, prefix: str = DEFAULT_PREFIX) -> str:
    """runtime.engine.keys.ChannelKeys(prefix, channel).stream."""
    return f"{prefix}:{{{channel}}}:stream"


def _document(config: ChannelsConfig, schemas: dict[str, ChannelSchemas]) -> dict[str, Any]:
    source = config.path.name
    components = _ComponentSchemas(config, schemas)
    channels: dict[str, Any] = {}
    operations: dict[str, Any] = {}
    messages: dict[str, Any] = {}
    for channel in config.channels:
        message = _message_name(channel)
        channels[channel.name] = _channel(channel, message, components)
        messages[message] = _message(channel, schemas[channel.name])
        ref = {"$ref": f"#/channels/{channel.name}"}
        message_ref = {"$ref": f"#/channels/{channel.name}/messages/{message}"}
        operations[f"enqueue_{channel.name}"] = {
            "action": "send",
            "channel": ref,
            "summary": f"Enqueue a job on the {channel.name} channel.",
            "description": (
                f"HTTP, gRPC and the generated producer add the job to the stream (XADD). "
                f"A job with a delay waits in the sorted set "
                f"`{DEFAULT_PREFIX}:{{{channel.name}}}:delayed` until it is due."
            ),
            "messages": [message_ref],
        }
        operations[f"process_{channel.name}"] = {
            "action": "receive",
            "channel": ref,
            "summary": f"Run the jobs of the {channel.name} channel.",
            "description": (
                f"Workers read the stream in the consumer group `{CONSUMER_GROUP}` and call "
                f"`{channel.handler_module}:{channel.handler_function}` with the payload."
            ),
            "messages": [message_ref],
        }
    return {
        "asyncapi": ASYNCAPI_VERSION,
        "info": {
            "title": TITLE,
            "version": "1.0.0",
            "description": (
                f"The job queues (channels) of this project, generated from {source} by "
                "channelkit. Each channel is a Redis stream: producers add jobs to it, workers "
                "of its consumer group run them. A stream entry has one field, `data`: a "
                "taskiq message (JSON) whose `kwargs.payload` is the message payload below."
            ),
        },
        "defaultContentType": CONTENT_TYPE,
        "servers": {
            SERVER: {
                "host": "localhost:6379",
                "protocol": "redis",
                "description": (
                    "The Redis that holds the channels. `runtime serve` connects to REDIS_URL "
                    "(redis://, rediss:// for TLS, unix://) and starts an embedded Redis when "
                    f"it is unset. Keys start with CHANNELKIT_KEY_PREFIX (`{DEFAULT_PREFIX}` "
                    "unless set), as in the channel addresses here."
                ),
            }
        },
        "channels": channels,
        "operations": dict(sorted(operations.items())),
        "components": {
            "schemas": dict(sorted(components.schemas.items())),
            "messages": dict(sorted(messages.items())),
        },
    }


def _message_name(channel: ChannelConfig) -> str:
    return f"{channel.class_prefix}Job"


def _channel(channel: ChannelConfig, message: str, components: _ComponentSchemas) -> dict[str, Any]:
    out: dict[str, Any] = {"address": stream_key(channel.name)}
    if channel.description:
        out["description"] = channel.description
    out["messages"] = {message: {"$ref": f"#/components/messages/{message}"}}
    # `{name}` in the address is a channel address expression: declared, with its one value.
    out["parameters"] = {
        channel.name: {
            "description": "The channel's Redis Cluster hash tag: always the channel name.",
            "enum": [channel.name],
            "default": channel.name,
        }
    }
    out["servers"] = [{"$ref": f"#/servers/{SERVER}"}]
    out["x-channelkit"] = _settings(channel, components)
    return out


def _message(channel: ChannelConfig, schemas: ChannelSchemas) -> dict[str, Any]:
    out: dict[str, Any] = {
        "name": _message_name(channel),
        "title": f"{channel.class_prefix} job",
        "contentType": CONTENT_TYPE,
    }
    summary = schemas.payload.get("description")
    if isinstance(summary, str) and summary.strip():
        out["description"] = summary.strip()
    out["payload"] = {"$ref": f"{_SCHEMAS_REF}{channel.class_prefix}Payload"}
    out["x-channelkit"] = {"task_name": f"channelkit.{channel.name}", "stream_field": "data"}
    return out


def _settings(channel: ChannelConfig, components: _ComponentSchemas) -> dict[str, Any]:
    """What channels.yaml says of the channel besides its schemas, durations in ms."""
    out: dict[str, Any] = {
        "handler": f"{channel.handler_module}:{channel.handler_function}",
        "concurrency": channel.concurrency,
    }
    if channel.limiter is not None:
        limiter: dict[str, Any] = {
            "max": channel.limiter.max,
            "duration_ms": channel.limiter.duration_ms,
        }
        if channel.limiter.key is not None:
            limiter["key"] = channel.limiter.key
        out["limiter"] = limiter
    backoff: dict[str, Any] = {"type": channel.backoff.type, "delay_ms": channel.backoff.delay_ms}
    if channel.backoff.max_delay_ms is not None:
        backoff["max_delay_ms"] = channel.backoff.max_delay_ms
    backoff["jitter"] = channel.backoff.jitter
    out["retry"] = {"attempts": channel.retry_attempts, "backoff": backoff}
    out["stalled"] = {
        "interval_ms": channel.stalled_interval_ms,
        "max_count": channel.stalled_max_count,
    }
    out["keep"] = {
        "completed": _retention(channel.keep_completed.count, channel.keep_completed.age_ms),
        "failed": _retention(channel.keep_failed.count, channel.keep_failed.age_ms),
        "events": channel.keep_events,
    }
    out["batch_max"] = channel.batch_max
    if (channel.name, "result") in components.roots:
        out["result"] = {"$ref": f"{_SCHEMAS_REF}{components.roots[channel.name, 'result']}"}
    return out


def _retention(count: int | None, age_ms: int | None) -> dict[str, int]:
    out: dict[str, int] = {}
    if count is not None:
        out["count"] = count
    if age_ms is not None:
        out["age_ms"] = age_ms
    return out


class _ComponentSchemas:
    """Every payload and result schema, and every definition they use, as named
    AsyncAPI Schema Objects.

    A payload or result is `<Prefix>Payload` / `<Prefix>Result`, like its generated class.
    A definition keeps its name when every channel that has one of that name has the same
    one (the reference app's `Recipient`, shared by several payloads, is written once);
    otherwise each channel's gets its own name, `<Prefix><Payload|Result><Name>`.
    """

    def __init__(self, config: ChannelsConfig, schemas: dict[str, ChannelSchemas]) -> None:
        bundles: dict[tuple[str, str], dict[str, Any]] = {}
        for channel in config.channels:
            channel_schemas = schemas[channel.name]
            bundles[channel.name, "payload"] = channel_schemas.payload
            if channel_schemas.result is not None:
                bundles[channel.name, "result"] = channel_schemas.result
        prefixes = {channel.name: channel.class_prefix for channel in config.channels}
        self.roots = {
            (name, field): f"{prefixes[name]}{field.capitalize()}" for name, field in bundles
        }
        names = _definition_names(bundles, prefixes, set(self.roots.values()))
        self.schemas: dict[str, Any] = {}
        for key, bundled in bundles.items():
            rename = names[key]
            defs = bundled.get("$defs", {})
            body = {k: v for k, v in bundled.items() if k != "$defs"}
            self.schemas[self.roots[key]] = _convert(body, rename)
            for name, definition in defs.items():
                self.schemas[rename[name]] = _convert(definition, rename)


def _definition_names(
    bundles: dict[tuple[str, str], dict[str, Any]],
    prefixes: dict[str, str],
    taken: set[str],
) -> dict[tuple[str, str], dict[str, str]]:
    """For each bundle, its `$defs` name → its component name."""
    fingerprints: dict[str, set[str]] = {}
    for bundled in bundles.values():
        for name, definition in bundled.get("$defs", {}).items():
            fingerprints.setdefault(name, set()).add(json.dumps(definition, sort_keys=True))
    conflicted = {name for name, found in fingerprints.items() if len(found) > 1}
    conflicted |= taken & set(fingerprints)
    # A definition that refers to a renamed one differs per bundle once converted.
    changed = True
    while changed:
        changed = False
        for bundled in bundles.values():
            defs = bundled.get("$defs", {})
            for name, definition in defs.items():
                if name not in conflicted and conflicted & set(_refs(definition)):
                    conflicted.add(name)
                    changed = True
    used = set(taken) | (set(fingerprints) - conflicted)
    names: dict[tuple[str, str], dict[str, str]] = {}
    for (channel, field), bundled in bundles.items():
        rename: dict[str, str] = {}
        for name in bundled.get("$defs", {}):
            if name not in conflicted:
                rename[name] = name
                continue
            base = f"{prefixes[channel]}{field.capitalize()}{name}"
            unique, counter = base, 2
            while unique in used:
                unique, counter = f"{base}{counter}", counter + 1
            used.add(unique)
            rename[name] = unique
        names[channel, field] = rename
    return names


def _refs(node: Any) -> Iterator[str]:
    """The `$defs` names a schema refers to."""
    if isinstance(node, list):
        for item in node:
            yield from _refs(item)
    elif isinstance(node, dict):
        for key, value in node.items():
            if key == "$ref" and isinstance(value, str) and value.startswith(_DEFS_REF):
                yield value.removeprefix(_DEFS_REF)
            elif key not in _DATA_KEYWORDS:
                yield from _refs(value)


def _convert(node: Any, rename: dict[str, str]) -> Any:
    """A bundled JSON Schema 2020-12 node → an AsyncAPI Schema Object (see the docstring)."""
    if isinstance(node, list):
        return [_convert(item, rename) for item in node]
    if not isinstance(node, dict):
        return node
    out: dict[str, Any] = {}
    ref: str | None = None
    for key, value in node.items():
        if key in ("$schema", "$defs"):
            continue
        if key == "$ref" and isinstance(value, str):
            ref = f"{_SCHEMAS_REF}{rename[value.removeprefix(_DEFS_REF)]}"
        elif key in ("properties", "patternProperties") and isinstance(value, dict):
            out[key] = {name: _convert(sub, rename) for name, sub in value.items()}
        elif key in _DATA_KEYWORDS:
            out[key] = copy.deepcopy(value)
        elif key == "discriminator" and isinstance(value, dict):
            if isinstance(value.get("propertyName"), str):
                out[key] = value["propertyName"]
        else:
            out[key] = _convert(value, rename)
    if ref is None:
        return out
    if not out:
        return {"$ref": ref}
    return {**out, "allOf": [{"$ref": ref}]}
