"""Schema files that several channels use get one model module, not one copy per channel.

When two or more channels' `payload` or `result` is `{$ref: <file>}` (the whole file), the
file's models are generated once, in `<package>/models/shared/<file stem>.py`, and each
channel's models package imports them. The top-level class is named after the file
(`delivery_result.json` → `DeliveryResult`); each channel keeps its own name for it as an
alias (`EmailResult is DeliveryResult`), so `from generated.models.email import EmailResult`
works whether or not the schema is shared, and all the channels return one class.

`shared` is a reserved channel name (generator.config.RESERVED_NAMES) for this folder.
"""

from __future__ import annotations

import keyword
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from generator.config import ChannelsConfig
from generator.schemas import ChannelSchemas, SchemaSource

__all__ = ["SHARED_FOLDER", "SharedModel", "find_shared_models"]

SHARED_FOLDER = "shared"


@dataclass(frozen=True, slots=True)
class SharedModel:
    module: str  # relative to <package>.models, e.g. shared.delivery_result
    class_name: str  # DeliveryResult
    schema: dict[str, Any]  # bundled, with not-null markers (what the models are made from)
    source: SchemaSource
    shown: str  # the schema file, relative to the project: schema/delivery_result.json
    users: tuple[tuple[str, str], ...]  # (channel, "payload" or "result"), sorted

    @property
    def path(self) -> str:
        """The module's file, relative to <package>/models."""
        return self.module.replace(".", "/") + ".py"

    @property
    def used_by(self) -> str:
        """`the email, push and sms results`, `the email payload and the sms result`."""
        phrases = []
        for role in ("payload", "result"):
            channels = [channel for channel, used_as in self.users if used_as == role]
            if channels:
                plural = "s" if len(channels) > 1 else ""
                phrases.append(f"the {_listed(channels)} {role}{plural}")
        return " and ".join(phrases)


def _listed(items: list[str]) -> str:
    return items[0] if len(items) == 1 else f"{', '.join(items[:-1])} and {items[-1]}"


def find_shared_models(
    config: ChannelsConfig, schemas: dict[str, ChannelSchemas]
) -> dict[Path, SharedModel]:
    """The schema files used whole by two or more channel schemas, by file."""
    uses: dict[Path, list[tuple[str, str, dict[str, Any], SchemaSource]]] = {}
    for channel in config.channels:
        found = schemas[channel.name]
        for role, source, schema in (
            ("payload", found.payload_source, found.payload_for_models),
            ("result", found.result_source, found.result_for_models),
        ):
            if source is not None and source.file is not None and schema is not None:
                uses.setdefault(source.file, []).append((channel.name, role, schema, source))
    root = config.root.resolve()
    shared: dict[Path, SharedModel] = {}
    taken: set[str] = set()
    for file in sorted(uses, key=lambda f: _shown(f, root)):
        users = uses[file]
        if len(users) < 2:
            continue
        stem = _identifier(file.stem)
        name = stem
        counter = 2
        while name in taken:
            name = f"{stem}_{counter}"
            counter += 1
        taken.add(name)
        _, _, schema, source = users[0]
        shared[file] = SharedModel(
            module=f"{SHARED_FOLDER}.{name}",
            class_name="".join(part.capitalize() for part in name.split("_") if part),
            schema=schema,
            source=source,
            shown=_shown(file, root),
            users=tuple(sorted((channel, role) for channel, role, _, _ in users)),
        )
    return shared


def _identifier(stem: str) -> str:
    """A module name from a file stem: `delivery-result.v2` → `delivery_result_v2`."""
    name = re.sub(r"\W+", "_", stem.lower()).strip("_") or "schema"
    if name[0].isdigit() or keyword.iskeyword(name) or name in ("none", "true", "false"):
        name = f"schema_{name}"
    return name


def _shown(file: Path, root: Path) -> str:
    return file.relative_to(root).as_posix() if file.is_relative_to(root) else file.as_posix()
